"""`make demo`: the house-price scenario end to end, through the headwater CLI, in under two minutes.

1. ``headwater db init`` in the demo home, ``.headwater/demo/`` (SQLite metadata, task logs,
   the Parquet lake, the model registry's artifacts, the topics of the embedded log);
2. ``headwater dags test house_prices``: ingest, validate (bad rows quarantined), hold out the
   newest sales, train, register, promote only past the champion;
3. ``headwater stream run house_prices.stream_app:app`` in the background;
4. ``headwater stream replay`` of the held-out listings (no price) into ``houses`` at a steady rate;
5. wait until every listing is priced or dead-lettered, stop the app, print the summary.

Rerunning is safe: the lake stages are complete, the DAG trains nothing on data it already
trained on (``--force`` retrains, and the new version only becomes champion if it beats the
current one), and each run counts only its own replay: listings an interrupted run (Ctrl-C)
replayed but no app read are skipped, not priced into the next run's figures. ``--fresh``
starts from an empty home; ``--shift 1.5`` replays the listings with ``sqft_living`` x 1.5 to
see a drift alert (``--drift-window``/``--drift-every`` size the app's drift window, for a
replay smaller than the default 1,000 records).
Every process the demo starts is stopped, on success, failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HOME = ROOT / ".headwater" / "demo"
sys.path.insert(0, str(HERE))  # the house_prices package


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="retrain even if this data was trained on already")
    parser.add_argument("--fresh", action="store_true", help=f"delete the demo home ({HOME}) first")
    parser.add_argument("--rate", default="1000/s", help="replay rate of the new listings (default 1000/s)")
    parser.add_argument("--home", type=Path, default=HOME, help="the headwater home to use")
    parser.add_argument("--shift", type=float, default=None, metavar="FACTOR",
                        help="multiply sqft_living of the replayed listings by FACTOR (e.g. 1.5) to see drift alerts")
    parser.add_argument("--source", type=Path, default=None,
                        help="another CSV of the same columns (default: the full King County data)")
    parser.add_argument("--drift-window", type=positive, default=None, metavar="N",
                        help="records in the drift window (default 1000; a numeric feature is judged from 147 on)")
    parser.add_argument("--drift-every", type=positive, default=None, metavar="N",
                        help="judge the drift window every N records (default 500)")
    args = parser.parse_args(argv)

    from house_prices import report, scenario
    from house_prices.stream_app import SOURCE_TOPIC
    from rich.console import Console

    # Piped (CI, a log), Rich would assume 80 columns and squeeze the tables.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 130)
    started = time.monotonic()
    if args.fresh:
        shutil.rmtree(args.home, ignore_errors=True)
    home = scenario.Home(args.home)
    # The app reads them from its environment (see house_prices.stream_app).
    for name, value in (("HOUSE_PRICING_DRIFT_WINDOW", args.drift_window), ("HOUSE_PRICING_DRIFT_EVERY",
                                                                            args.drift_every)):
        if value is not None:
            home.extra_env[name] = str(value)
    app = None
    try:
        step(console, "Create (or upgrade) the metadata database", "db init")
        home.cli("db", "init")
        before = report.registry_state(home.registry())

        params: dict[str, Any] = {"source": str(args.source.resolve())} if args.source else {}
        if args.force:
            params["force_train"] = True
        conf = ["--conf", json.dumps(params)] if params else []
        step(console, "Run the house_prices DAG once", " ".join(["dags test house_prices", *conf]))
        t0 = time.monotonic()
        dag = home.cli("dags", "test", "house_prices", *conf)
        dag_seconds = time.monotonic() - t0
        console.print(dag.stdout.rstrip(), markup=False)

        broker = home.broker()
        scenario.ensure_topics(broker)
        skipped = scenario.skip_unpriced(broker)
        if skipped:
            console.print(f"[yellow]skipped {skipped:,} listings an earlier, interrupted run replayed but no app "
                          "read[/]: this run prices only its own replay")
        since = scenario.Offsets.now(broker)
        folders = home.lake(params)
        listings = folders["prepared"] / "listings.parquet"
        expected = report.count_rows(listings)
        if args.shift is not None:
            listings = report.shifted(listings, args.shift, args.home)

        step(console, "Start the stream app", "stream run house_prices.stream_app:app --metrics-port PORT")
        port = scenario.free_port()
        app = home.start("stream", "run", "house_prices.stream_app:app", "--metrics-port", str(port),
                         log=args.home / "house_pricing.log")
        console.print(f"[dim]Prometheus metrics of the app at http://127.0.0.1:{port}/metrics[/]")

        step(console, f"Replay the {expected:,} held-out listings into '{SOURCE_TOPIC}'",
             f"stream replay {listings.relative_to(args.home)} --topic {SOURCE_TOPIC} --key zipcode --rate {args.rate}")
        t0 = time.monotonic()
        replayed = home.cli("stream", "replay", str(listings), "--topic", SOURCE_TOPIC, "--key", "zipcode",
                            "--rate", args.rate)
        console.print(replayed.stdout.strip(), markup=False)

        with console.status("waiting until every listing is priced...") as status:
            done = scenario.wait_until_scored(
                broker, since, expected, app=app, timeout=90,
                on_progress=lambda n: status.update(f"priced or dead-lettered: {n:,} / {expected:,}"))
        stream_seconds = time.monotonic() - t0
        try:
            metrics = scenario.scrape(port)
        except OSError as exc:  # the summary does not need them; say why they are missing
            metrics = [f"(metrics not read: {exc})"]
        code = scenario.stop(app)
        console.print((args.home / "house_pricing.log").read_text().strip().splitlines()[-1], markup=False)
        if done < expected:
            console.print(f"[red]only {done:,} of {expected:,} listings came out in time (app exit code {code}); "
                          f"see {args.home / 'house_pricing.log'}[/]")
            return 1

        report.summary(console, home, params, metrics=metrics, since=since, before=before, dag_seconds=dag_seconds,
                       stream_seconds=stream_seconds, total_seconds=time.monotonic() - started)
        return 0
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except RuntimeError as exc:  # a CLI step failed: its output says why
        console.print(f"[red]demo step failed[/]: {exc}", markup=False)
        return 1
    finally:
        if app is not None:
            scenario.stop(app)


def positive(text: str) -> int:
    """An argparse type: a whole number of records >= 1 (argparse turns the error into a usage line)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of records")
    return value


def step(console: Any, title: str, command: str) -> None:
    console.print(f"\n[bold]== {title}[/]\n[dim]$ headwater {command}[/]")


if __name__ == "__main__":
    sys.exit(main())
