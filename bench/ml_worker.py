"""One measured case of the ML scoring benchmark, in a process of its own.

    python bench/ml_worker.py '<spec as JSON>'

``bench/ml.py`` starts this script once per run of a case, with math libraries pinned to
one thread (``pin_math_threads`` before Polars loads), and reads the JSON it writes to
``spec["out"]``. Times are ``time.perf_counter`` (wall) and ``getrusage(RUSAGE_SELF)``
(CPU: user + system of every thread of this process) around the timed part only: loading
the model and reading the records file are not timed.

* ``paths``: (a) the naive per-record path on ``n_record`` records (decode one with
  orjson, a one-row frame, validate, features + predict for one row, encode one) and
  (b) the micro-batched path on ``n`` records in batches of ``batch`` (the stream's
  ``Json`` decoder to a frame, validate, one ``Scorer.score``, ``encode_frame``), in this
  order in the same process, with the time of each step of (b). The first ``n_record``
  predictions of both paths are compared bit for bit.
* ``app``: (c) a stream app ``stream(src, Json()).predict(ref).to(sink)`` on the embedded
  log, timed from the first poll that gave records to the commit covering the last input
  record (``stream_worker.TimedBroker``); the model is loaded before (start-up, not scoring).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.ml.house_features: the feature module


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _scorer(spec: Mapping[str, Any]) -> Any:
    from headwater.ml.registry_sql import open_registry
    from headwater.ml.scoring import load_scorer
    from headwater.settings import Settings

    return load_scorer(open_registry(Settings.from_env({"HEADWATER_HOME": spec["home"]})), spec["ref"])


def _values(spec: Mapping[str, Any]) -> list[bytes]:
    return Path(spec["values"]).read_bytes().split(b"\n")[: spec["n"]]


def paths(spec: Mapping[str, Any]) -> dict[str, Any]:
    import numpy as np
    import orjson
    import polars as pl

    from headwater.stream.serde import Json

    scorer = _scorer(spec)
    values = _values(spec)
    label = scorer.label

    # (a) record by record, as a plain Python service would.
    n_a = min(spec["n_record"], len(values))
    loads, dumps = orjson.loads, orjson.dumps
    naive_out: list[float] = []
    scorer.score(pl.DataFrame([loads(values[0])]))  # warm-up: first-call costs are not per record
    t0, c0 = time.perf_counter(), cpu_now()
    for value in values[:n_a]:
        record = loads(value)
        frame = pl.DataFrame([record])
        if scorer.validate(frame)[0] is not None:
            continue
        prediction = float(scorer.score(frame)[0])
        dumps({**record, "prediction": prediction, "model_version": label})
        naive_out.append(prediction)
    a_wall, a_cpu = time.perf_counter() - t0, cpu_now() - c0

    # (b) micro-batches: the stream's decoder, one validate and one predict per batch.
    serde = Json()
    batch = spec["batch"]
    steps = {"decode": 0.0, "validate": 0.0, "score": 0.0, "encode": 0.0}
    batched_first: Any = None
    encoded = 0
    serde.try_decode_frame(values[:batch])  # warm-up: learns the record shape, as a running app has
    t0, c0 = time.perf_counter(), cpu_now()
    for start in range(0, len(values), batch):
        chunk = values[start:start + batch]
        s0 = time.perf_counter()
        decoded = serde.try_decode_frame(chunk)
        frame = decoded if decoded is not None else pl.from_dicts(serde.decode_rows(chunk)[0])
        s1 = time.perf_counter()
        bad = scorer.validate(frame).is_not_null()
        if bad.any():
            frame = frame.filter(~bad)
        s2 = time.perf_counter()
        predictions = scorer.score(frame)
        s3 = time.perf_counter()
        out = serde.encode_frame(frame.with_columns(pl.Series("prediction", predictions),
                                                    pl.lit(label, dtype=pl.String).alias("model_version")))
        s4 = time.perf_counter()
        encoded += len(out)
        if batched_first is None:
            batched_first = predictions
        for key, took in zip(steps, (s1 - s0, s2 - s1, s3 - s2, s4 - s3), strict=True):
            steps[key] += took
    b_wall, b_cpu = time.perf_counter() - t0, cpu_now() - c0
    same = bool(np.array_equal(np.asarray(naive_out[:len(batched_first)]), batched_first[:len(naive_out)]))
    return {"n_record": n_a, "a_wall": a_wall, "a_cpu": a_cpu, "a_scored": len(naive_out),
            "n": len(values), "b_wall": b_wall, "b_cpu": b_cpu, "b_out": encoded, "b_steps": steps,
            "same_predictions": same}


def app(spec: Mapping[str, Any]) -> dict[str, Any]:
    from stream_worker import TimedBroker, Window, _ends, open_broker

    from headwater.ml.registry_sql import open_registry
    from headwater.settings import Settings
    from headwater.stream import Json, StreamApp
    from headwater.stream.predict import Predict

    registry = open_registry(Settings.from_env({"HEADWATER_HOME": spec["home"]}))
    window = Window()
    stream_app = StreamApp(spec["app"], group_id=spec["group"], max_batch_records=spec["batch"],
                           max_batch_latency=0.1)
    # The step .predict(ref) adds, built here to load its model before the timed window: a
    # running app has its model; loading it (imports, artifact) is start-up, as Kafka's group join.
    step = Predict(f"predict:{spec['ref']}", spec["ref"], registry=registry, output="predicted_price")
    step.follower.current()
    stream_app.stream(spec["source"], value=Json()).then(step).to(spec["sink"])
    broker = TimedBroker(open_broker(spec), window, _ends(spec), stream_app.stop)
    stream_app.run(broker, handle_signals=False)
    m = stream_app.metrics
    return window.result(m.records_in, out=m.records_out, dead=m.records_dead_lettered, batches=m.batches)


KINDS = {"paths": paths, "app": app}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    from headwater.stream import pin_math_threads

    pin_math_threads()  # before Polars and scikit-learn load: one core's worth of threads
    result = KINDS[spec["kind"]](spec)
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
