"""How fast the house_pricing app prices listings: the whole pipeline on the embedded log, in one process.

Needs a trained home (run ``make demo`` first). The held-out listings are repeated to
``--records`` JSON records in a fresh embedded log (a temporary folder; producing them is not
timed), then the app (LightGBM imported beforehand; checks, two enrichments, features and LightGBM, drift
monitor, JSON out) runs until it has read them all; the figures are records / wall seconds,
with and without the model load the app does on its first batch (timed apart)::

    .venv/bin/python examples/house_prices/bench_stream.py [--home .headwater/demo] [--records 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=HERE.parents[1] / ".headwater" / "demo")
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    os.environ["HEADWATER_HOME"] = str(args.home)

    import polars as pl

    from headwater.ml import open_registry
    from headwater.ml.scoring import load_scorer
    from headwater.settings import Settings
    from headwater.stream.log.broker import EmbeddedBroker
    from headwater.stream.threads import pin_math_threads
    from house_prices import scenario
    from house_prices.stream_app import PRICED_TOPIC, SOURCE_TOPIC, TOPICS, build

    pin_math_threads(1)  # as `headwater stream run` does: one core per app process
    home = scenario.Home(args.home)
    registry = open_registry(Settings.from_env())
    champion = registry.resolve("house_prices@champion")
    listings = pl.read_parquet(home.lake()["prepared"] / "listings.parquet").to_dicts()
    encoded = [(json.dumps(r).encode(), str(r["zipcode"]).encode()) for r in listings]

    with tempfile.TemporaryDirectory() as folder:
        broker = EmbeddedBroker(Path(folder) / "topics")
        for topic in TOPICS:
            broker.create_topic(topic, 1)
        producer = broker.producer()
        for i in range(args.records):
            value, key = encoded[i % len(encoded)]
            producer.produce(SOURCE_TOPIC, value, key)
        producer.flush()
        producer.close()

        app = build(champion, registry=registry, max_batch_records=10_000)
        load_scorer(registry, champion)  # imports LightGBM and scikit-learn (seconds): start-up, not scoring
        t0 = time.perf_counter()
        load_scorer(registry, champion)  # what the app pays again on its first batch: read and parse the model
        loading = time.perf_counter() - t0
        started = time.perf_counter()
        app.run(broker, stop_when_idle=True, handle_signals=False)
        seconds = time.perf_counter() - started
        out = scenario.end_offset(broker, PRICED_TOPIC)
        broker.close()
    print(f"house_pricing priced {out:,} of {args.records:,} records in {seconds:.2f} s: "
          f"{out / seconds:,.0f} records/s (one process, micro-batches of up to 10,000; model {champion.ref}); "
          f"{out / (seconds - loading):,.0f} records/s without the model load on the first batch ({loading:.2f} s)")


if __name__ == "__main__":
    main()
