"""ML scoring benchmark: a 100-tree gradient-boosting house-price model scoring JSON records.

    .venv/bin/python bench/ml.py [--runs 3] [--parts a,c,d] [--quick] [--model hgb|lgbm]

(a) the naive per-record path against (b) the micro-batched path, in the same process of
each run, records/s per core and their ratio; (c) the stream app
``stream(src, Json()).predict("house_prices@champion").to(sink)`` on the embedded log end
to end; (d) ``headwater serve`` started through the real CLI: p50/p99 latency of
``POST /predict`` with one record and with a list of 1,000, sequential requests from one
kept-alive httpx client after a warm-up.

The model: scikit-learn's HistGradientBoostingRegressor, 100 trees (no early stopping),
on the log price, trained with the house feature set of the tests (14 input fields, 15
features, the zip code one-hot encoded) on ``examples/house_prices/data/kc_house_data.csv``
when present, else on synthetic houses; registered in a home under ``bench/.work/ml``.
``--model lgbm`` trains LightGBM's LGBMRegressor (100 trees, 31 leaves) instead, the
kind of model the house-price scenario registers.
Records are the data set's rows (the input fields and an id) as JSON, cycled to size.
(a), (b) and (c) run in fresh processes (``ml_worker.py``) pinned to one thread of math
libraries; runs are interleaved. Results: ``bench/results/ml-<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.ml.house_features

import ml_report
from harness import child_env, median, run_quiet
from orchestration import _headwater_version, machine

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work" / "ml"
RESULTS = BENCH / "results"
WORKER = BENCH / "ml_worker.py"
KC = ROOT / "examples" / "house_prices" / "data" / "kc_house_data.csv"
PYTHON = sys.executable
REF = "house_prices@champion"
PARTITIONS = 4


# -- set-up -----------------------------------------------------------------------------


def train_model(home: Path, model: str = "hgb") -> dict[str, Any]:
    """Train and register the model as champion in a fresh home; what was trained."""
    import polars as pl
    from sklearn.ensemble import HistGradientBoostingRegressor

    from headwater.ml.registry_sql import open_registry
    from headwater.ml.train import train
    from headwater.settings import Settings
    from tests.ml.house_features import house_features, synthetic_houses

    shutil.rmtree(home, ignore_errors=True)
    data = pl.read_csv(KC) if KC.exists() else synthetic_houses(20_000, seed=0)
    source = "kc_house_data.csv" if KC.exists() else "synthetic houses"
    if model == "lgbm":  # the house-price scenario's model kind (examples/house_prices/training.py), 100 trees here
        from lightgbm import LGBMRegressor

        estimator: Any = LGBMRegressor(n_estimators=100, num_leaves=31, random_state=0, n_jobs=1, verbose=-1)
    else:
        estimator = HistGradientBoostingRegressor(max_iter=100, early_stopping=False, random_state=0)
    result = train(data, target="price", features=house_features(), estimator=estimator, seed=0,
                   target_transform="log1p", importance_sample=500, importance_repeats=1)
    registry = open_registry(Settings.from_env({"HEADWATER_HOME": str(home)}))
    mv = result.register(registry, "house_prices", author="bench")
    registry.promote("house_prices", mv.version, who="bench", reason="benchmark model")
    trees = int(getattr(result.estimator, "n_iter_", None) or result.estimator.n_estimators_)
    return {"label": mv.ref, "trees": trees, "features": len(result.feature_names),
            "inputs": len(house_features().input_schema), "rows": data.height, "source": source,
            "test_rmse": result.metrics["test"]["rmse"],
            "description": (f"{type(estimator).__name__}, {trees} trees, {len(result.feature_names)} features from "
                            f"{len(house_features().input_schema)} JSON fields, trained on {data.height:,} rows of "
                            f"{source} (log price)")}


def write_values(path: Path, n: int) -> None:
    """``n`` JSON records (the model's input fields and an id), one a line, cycling the data set."""
    import polars as pl

    from tests.ml.house_features import INPUTS, synthetic_houses

    data = pl.read_csv(KC) if KC.exists() else synthetic_houses(20_000, seed=0)
    rows = data.select(list(INPUTS)).to_dicts()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [orjson.dumps({"id": i, **rows[i % len(rows)]}) for i in range(n)]
    path.write_bytes(b"\n".join(lines))


def seed_log(log_path: Path, values: Path, n: int) -> dict[str, int]:
    """The app's source topic on the embedded log (keyed by id, 4 partitions); its end offsets."""
    from headwater.stream.broker import TopicPartition
    from headwater.stream.log import EmbeddedBroker

    shutil.rmtree(log_path, ignore_errors=True)
    broker = EmbeddedBroker(log_path)
    broker.create_topic("houses", PARTITIONS)
    producer = broker.producer()
    lines = values.read_bytes().split(b"\n")[:n]
    for start in range(0, n, 10_000):
        chunk = lines[start:start + 10_000]
        producer.produce_batch("houses", chunk, [str(start + i).encode() for i in range(len(chunk))])
    producer.flush()
    producer.close()
    ends = broker.end_offsets([TopicPartition("houses", p) for p in range(PARTITIONS)])
    return {str(tp.partition): end for tp, end in ends.items()}


# -- (a), (b), (c): workers -------------------------------------------------------------------


def call_worker(spec: dict[str, Any], log: Path, timeout: float = 1800) -> dict[str, Any]:
    out = Path(spec["out"])
    out.unlink(missing_ok=True)
    env = child_env(POLARS_MAX_THREADS="1")
    try:
        done = run_quiet([PYTHON, str(WORKER), json.dumps(spec)], env=env, cwd=WORK, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0 or not out.exists():
        return {"ok": False, "error": f"exit {done.returncode}: {(done.stdout + done.stderr)[-1500:]}"}
    result: dict[str, Any] = json.loads(out.read_text())
    result["ok"] = True
    return result


def run_paths(base: dict[str, Any], sizes: dict[str, int], index: int) -> dict[str, Any]:
    spec = {**base, "kind": "paths", "n": sizes["paths"], "n_record": sizes["record"], "batch": sizes["batch"],
            "out": str(WORK / "result.json")}
    r = call_worker(spec, WORK / "logs" / f"paths-{index}.log")
    if r["ok"]:
        if not r["same_predictions"]:
            return {"ok": False, "error": "(a) and (b) predictions differ"}
        r.update(a_rate_cpu=r["n_record"] / r["a_cpu"], a_rate_wall=r["n_record"] / r["a_wall"],
                 b_rate_cpu=r["n"] / r["b_cpu"], b_rate_wall=r["n"] / r["b_wall"])
        r.update(ratio_cpu=r["b_rate_cpu"] / r["a_rate_cpu"], ratio_wall=r["b_rate_wall"] / r["a_rate_wall"])
    return r


def run_app(base: dict[str, Any], sizes: dict[str, int], ends: dict[str, int], index: int) -> dict[str, Any]:
    from headwater.stream.broker import TopicPartition
    from headwater.stream.log import EmbeddedBroker

    broker = EmbeddedBroker(WORK / "log")
    sink = f"scored-r{index}-{time.time_ns()}"
    broker.create_topic(sink, PARTITIONS)
    spec = {**base, "kind": "app", "backend": "log", "log_path": str(WORK / "log"), "source": "houses",
            "sink": sink, "ends": ends, "app": f"bench-ml-{index}", "group": f"bench-ml-{time.time_ns()}",
            "batch": sizes["batch"], "out": str(WORK / "result.json")}
    r = call_worker(spec, WORK / "logs" / f"app-{index}.log")
    written = sum(broker.end_offsets([TopicPartition(sink, p) for p in range(PARTITIONS)]).values())
    broker.delete_topic(sink)
    if r["ok"]:
        if written != sizes["app"] or r.get("dead"):
            return {"ok": False, "error": f"{written} records scored of {sizes['app']}, {r.get('dead')} dead"}
        r.update(c_rate_cpu=r["n"] / r["cpu"], c_rate_wall=r["n"] / r["wall"], c_cpu=r["cpu"])
    return r


# -- (d): REST ------------------------------------------------------------------------------


class Served:
    """``headwater serve`` through the real CLI, on a free port of 127.0.0.1."""

    def __init__(self, home: Path, log: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = child_env(HEADWATER_HOME=str(home), POLARS_MAX_THREADS="1")
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([PYTHON, "-m", "headwater", "serve", REF, "--port", str(self.port),
                                      "--reload-interval", "0"], env=env, cwd=WORK, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, client: Any, timeout: float = 120) -> None:
        import httpx2 as httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"headwater serve exited {self.proc.returncode}")
            try:
                if client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("headwater serve did not answer /health in time")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def _percentiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return q[49], q[98]


def run_rest(client: Any, values: list[bytes], sizes: dict[str, int]) -> dict[str, Any]:
    """Sequential requests over one kept-alive connection; latency from send to the whole answer read."""
    ones = values[: sizes["rest_one"]]
    lists = [b"[" + b",".join(values[i * 1000:(i + 1) * 1000]) + b"]" for i in range(sizes["rest_list"])]
    for body in ones[:200] + lists[:10]:  # warm-up: first requests pay imports and allocations
        client.post("/predict", content=body).raise_for_status()
    one_ms, list_ms = [], []
    for body in ones:
        t0 = time.perf_counter()
        response = client.post("/predict", content=body)
        one_ms.append((time.perf_counter() - t0) * 1e3)
        if response.status_code != 200:
            return {"ok": False, "error": f"one record: {response.status_code} {response.text[:300]}"}
    for body in lists:
        t0 = time.perf_counter()
        response = client.post("/predict", content=body)
        list_ms.append((time.perf_counter() - t0) * 1e3)
        if response.status_code != 200 or len(response.json()) != 1000:
            return {"ok": False, "error": f"list: {response.status_code} {response.text[:300]}"}
    d1_p50, d1_p99 = _percentiles(one_ms)
    dl_p50, dl_p99 = _percentiles(list_ms)
    return {"ok": True, "d1_p50": d1_p50, "d1_p99": d1_p99, "dl_p50": dl_p50, "dl_p99": dl_p99,
            "dl_rate": 1000 * len(list_ms) / (sum(list_ms) / 1e3), "d1_max": max(one_ms)}


# -- main -------------------------------------------------------------------------------------


METRICS = ("a_rate_cpu", "a_rate_wall", "b_rate_cpu", "b_rate_wall", "ratio_cpu", "ratio_wall", "c_rate_cpu",
           "c_rate_wall", "c_cpu", "d1_p50", "d1_p99", "dl_p50", "dl_p99", "dl_rate")


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if r.get("ok")]
    med: dict[str, Any] = {k: median([r[k] for r in good if r.get(k) is not None]) for k in METRICS}
    steps = [r["b_steps"] for r in good if r.get("b_steps")]
    if steps:
        med["b_steps"] = {k: statistics.median(s[k] for s in steps) for k in steps[0]}
    return med


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="runs of each part (median reported); default 3")
    parser.add_argument("--parts", default="a,c,d", help="comma-separated subset of a,c,d ((a) measures (b) too)")
    parser.add_argument("--quick", action="store_true", help="one run on few records: check the harness")
    parser.add_argument("--model", choices=("hgb", "lgbm"), default="hgb",
                        help="hgb: scikit-learn's HistGradientBoostingRegressor (default); lgbm: LightGBM's "
                             "LGBMRegressor, the house-price scenario's kind (results file ml-<date>-lgbm)")
    args = parser.parse_args(argv)
    args.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not args.parts <= {"a", "b", "c", "d"}:
        parser.error("--parts takes a subset of a,c,d")
    if args.quick:
        args.runs = 1
    return args


def main(argv: list[str] | None = None) -> int:
    import httpx2 as httpx

    args = parse_args(argv)
    console = Console() if Console().is_terminal else Console(width=170)
    sizes = ({"record": 300, "paths": 20_000, "batch": 10_000, "app": 40_000, "rest_one": 300, "rest_list": 20}
             if args.quick else
             {"record": 3_000, "paths": 200_000, "batch": 10_000, "app": 200_000, "rest_one": 3_000,
              "rest_list": 100})
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    info = machine()
    home = WORK / ("home" if args.model == "hgb" else f"home-{args.model}")
    with console.status("training and registering the model, writing the records"):
        model = train_model(home, args.model)
        values_path = WORK / f"values-{max(sizes['paths'], sizes['app'], sizes['rest_list'] * 1000)}.jsonl"
        if not values_path.exists():
            write_values(values_path, max(sizes["paths"], sizes["app"], sizes["rest_list"] * 1000))
        ends = seed_log(WORK / "log", values_path, sizes["app"]) if "c" in args.parts else {}
    base = {"home": str(home), "ref": REF, "values": str(values_path)}
    values = values_path.read_bytes().split(b"\n")
    runs: list[dict[str, Any]] = []
    served = Served(home, WORK / "logs" / "serve.log") if "d" in args.parts else None
    try:
        client = httpx.Client(base_url=served.url, timeout=60) if served else None
        if served and client:
            served.wait_ready(client)
        steps = [p for p in ("a", "c", "d") if p in args.parts]
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            bar = progress.add_task("measuring", total=len(steps) * args.runs)
            for index in range(args.runs):
                result: dict[str, Any] = {"ok": True, "errors": []}
                for part in steps:
                    progress.update(bar, description=f"run {index + 1}/{args.runs}: ({part})")
                    if part == "a":
                        r = run_paths(base, sizes, index)
                    elif part == "c":
                        r = run_app(base, sizes, ends, index)
                    else:
                        r = run_rest(client, values, sizes)
                    if not r.pop("ok"):
                        result["errors"].append(f"({part}) {r.get('error')}")
                    else:
                        result.update(r)
                    progress.advance(bar)
                runs.append(result)
        if client:
            client.close()
    finally:
        if served:
            served.stop()
    info["loadavg_after"] = os.getloadavg()
    doc = {
        "date": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": info, "runs": args.runs,
        "sizes": sizes, "model": model, "versions": {"headwater": _headwater_version(), **_versions()},
        "results": runs, "median": summarise(runs), "anchors": ml_report.ANCHORS, "goals": ml_report.GOALS,
    }
    folder = WORK if args.quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    model_part = "" if args.model == "hgb" else f"-{args.model}"
    stem = folder / f"ml-{started:%Y-%m-%d}{model_part}{'-quick' if args.quick else ''}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tables = ml_report.build_tables(doc)
    for table in tables:
        console.print(ml_report.to_rich(table))
    stem.with_suffix(".md").write_text(ml_report.to_markdown(tables, doc), encoding="utf-8")
    console.print(f"headwater {doc['versions']['headwater']}; load average before {info['loadavg_before'][0]:.2f}, "
                  f"after {info['loadavg_after'][0]:.2f} (on {info['nproc']} CPUs)")
    console.print(f"results: {stem.with_suffix('.json').relative_to(ROOT)} and .md")
    errors = [e for r in runs for e in r["errors"]]
    for error in errors[:10]:
        console.print(f"[red]failed:[/] {error[-500:]}")
    return 1 if errors else 0


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("polars", "scikit-learn", "lightgbm", "numpy", "msgspec", "orjson", "fastapi", "uvicorn", "httpx2"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


if __name__ == "__main__":
    sys.exit(main())
