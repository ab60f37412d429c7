"""Orchestration benchmark: headwater against Luigi and Dagster on the same no-op DAG shapes.

    .venv/bin/python bench/orchestration.py [--runs 5] [--shapes a,b,c,d] [--skip-peers] [--quick]

Every figure is a whole process (start-up included), measured as a process tree
(see ``harness.py``), median of ``--runs`` runs. The runs of all cases are
interleaved (run 1 of every case, then run 2, ...) so that a change of load on the
shared machine hits every framework alike; the ratios of one invocation are what
to compare. Luigi and Dagster are installed in venvs of their own under
``bench/.venvs/``; headwater's state lives under ``bench/.work/``. Results go to
``bench/results/orchestration-<date>.json`` and ``.md``. BENCHMARKS.md says more.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "dags"))

import _shapes
import report
from harness import Sample, child_env, handoff_latencies, measure, median, read_stamps, run_quiet

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DAGS = BENCH / "dags"
WORK = BENCH / ".work"
VENVS = BENCH / ".venvs"
RESULTS = BENCH / "results"
PYTHON = sys.executable
LOGICAL_DATE = "2024-01-01"
ALL_SHAPES = tuple(_shapes.DAG_IDS)
PEERS = {"luigi": "luigi==3.*", "dagster": "dagster==1.*"}
# Hand-off latency means something where a task waits for one upstream (the chain) or
# for all of one wide layer (the join). In the layered shape a breadth-first framework
# runs the whole next layer first, so "start minus upstream end" measures the layer.
LATENCY_SHAPES = ("b", "c")


class SetupError(Exception):
    """A case cannot be measured (an install or a preparation step failed)."""


@dataclass
class Case:
    """One way of running the shapes; a row of the tables."""

    key: str
    label: str
    shapes: tuple[str, ...]
    # (shape, run folder) -> the command to measure, after any unmeasured setup.
    prepare: Callable[[str, Path], list[str]]
    headwater_home: bool = False


@dataclass
class CaseResult:
    """All runs of one case on one shape, and their medians."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    median: dict[str, float | None] = field(default_factory=dict)
    failures: int = 0


# -- preparing the cases ---------------------------------------------------------------


def headwater_cmd(dags: Path, *args: str) -> list[str]:
    return [PYTHON, "-m", "headwater", "--dags", str(dags), *args]


def prepare_headwater(shape: str) -> tuple[Path, Path]:
    """A DAG folder holding only this shape's DAG, and a HEADWATER_HOME with the schema
    created and that folder parsed; each run gets a fresh copy of the home.

    One DAG per folder, as Luigi and Dagster load only the shape they run: what else
    sits in the folder must not change the figures (the scheduler reads every DAG).
    """
    dags = WORK / f"dags-{shape}"
    shutil.rmtree(dags, ignore_errors=True)
    dags.mkdir(parents=True)
    for name in ("_shapes.py", "_build.py", f"{_shapes.DAG_IDS[shape]}.py"):
        shutil.copy2(DAGS / name, dags / name)
    template = WORK / f"home-template-{shape}"
    shutil.rmtree(template, ignore_errors=True)
    done = run_quiet(headwater_cmd(dags, "dags", "list"), env=child_env(HEADWATER_HOME=str(template)), cwd=WORK)
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-2000:]
        raise SetupError(f"`headwater dags list` failed (exit {done.returncode}): {output}")
    return dags, template


def fresh_home(template: Path, run_dir: Path) -> Path:
    home = run_dir / "home"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(template, home)
    return home


def headwater_cases(shapes: list[str], workers: int) -> list[Case]:
    prepared = {s: prepare_headwater(s) for s in shapes}

    def dags_test(shape: str, run_dir: Path) -> list[str]:
        dags, template = prepared[shape]
        fresh_home(template, run_dir)
        return headwater_cmd(dags, "dags", "test", _shapes.DAG_IDS[shape], LOGICAL_DATE)

    def scheduler(shape: str, run_dir: Path) -> list[str]:
        dags, template = prepared[shape]
        home = fresh_home(template, run_dir)
        env = child_env(HEADWATER_HOME=str(home))
        done = run_quiet(headwater_cmd(dags, "dags", "trigger", _shapes.DAG_IDS[shape], "--date", LOGICAL_DATE),
                         env=env, cwd=run_dir)
        if done.returncode != 0:
            raise SetupError(f"`headwater dags trigger` failed: {(done.stdout + done.stderr)[-2000:]}")
        return headwater_cmd(dags, "scheduler", "--until-idle", "--executor", "local", "--parallelism", str(workers))

    return [
        Case("headwater_test", "headwater dags test (inline)", ALL_SHAPES, dags_test, True),
        Case("headwater_scheduler", f"headwater scheduler --until-idle (local, {workers} workers)", ALL_SHAPES,
             scheduler, True),
    ]


def ensure_venv(name: str, requirement: str) -> tuple[Path, str]:
    """The venv's python and the installed version; install on first use (or if the pin changed)."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    marker = venv / ".bench-requirement"
    if not (python.exists() and marker.exists() and marker.read_text() == requirement):
        shutil.rmtree(venv, ignore_errors=True)
        VENVS.mkdir(parents=True, exist_ok=True)
        steps = [[sys.executable, "-m", "venv", str(venv)],
                 [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", requirement]]
        for cmd in steps:
            done = run_quiet(cmd)
            if done.returncode != 0:
                raise SetupError(f"`{' '.join(cmd)}` failed (exit {done.returncode}): {done.stderr[-2000:]}")
        marker.write_text(requirement)
    done = run_quiet([str(python), "-c", f"import importlib.metadata as m; print(m.version({name!r}))"])
    if done.returncode != 0:
        raise SetupError(f"{name} is not importable in {venv}: {done.stderr[-2000:]}")
    return python, done.stdout.strip()


def peer_cases(versions: dict[str, str], errors: dict[str, str], workers: int) -> list[Case]:
    cases: list[Case] = []
    try:
        luigi_py, versions["luigi"] = ensure_venv("luigi", PEERS["luigi"])
    except SetupError as exc:
        errors["luigi"] = str(exc)
    else:
        def luigi_cmd(n: int) -> Callable[[str, Path], list[str]]:
            return lambda shape, run_dir: [str(luigi_py), str(BENCH / "luigi_shapes.py"), shape, str(n)]

        v = versions["luigi"]
        cases.append(Case("luigi_1", f"Luigi {v} (local scheduler, 1 worker)", ALL_SHAPES, luigi_cmd(1)))
        cases.append(Case(f"luigi_{workers}", f"Luigi {v} (local scheduler, {workers} workers)", ("c", "d"),
                          luigi_cmd(workers)))
    try:
        dagster_py, versions["dagster"] = ensure_venv("dagster", PEERS["dagster"])
    except SetupError as exc:
        errors["dagster"] = str(exc)
    else:
        cases.append(Case("dagster", f"Dagster {versions['dagster']} (execute_in_process)", ALL_SHAPES,
                          lambda shape, run_dir: [str(dagster_py), str(BENCH / "dagster_shapes.py"), shape]))
    return cases


# -- running ---------------------------------------------------------------------------


def db_latencies(home: Path, shape: str) -> list[float]:
    """Hand-off latencies from headwater's metadata DB: start of a task's last try minus
    the last end of its upstream tasks' last tries."""
    from headwater.store.sql import open_store

    store = open_store(f"sqlite:///{home / 'headwater.db'}")
    try:
        dag_id = _shapes.DAG_IDS[shape]
        runs = store.list_runs(dag_id, limit=1)
        if not runs:
            return []
        times: dict[str, tuple[float, float]] = {}
        for task_id in _shapes.graph(shape):
            tries = store.list_tries(dag_id, runs[0].run_id, task_id)
            if tries and tries[-1].start_date and tries[-1].end_date:
                times[task_id] = (tries[-1].start_date.timestamp(), tries[-1].end_date.timestamp())
        return handoff_latencies(_shapes.graph(shape), times)
    finally:
        store.close()


def run_once(case: Case, shape: str, index: int) -> dict[str, Any]:
    run_dir = WORK / "runs" / f"{case.key}-{shape}"
    run_dir.mkdir(parents=True, exist_ok=True)
    stamps = run_dir / "stamps.txt"
    stamps.unlink(missing_ok=True)
    setup_started = time.perf_counter()
    cmd = case.prepare(shape, run_dir)
    setup = time.perf_counter() - setup_started
    extra = {_shapes.STAMPS_ENV: str(stamps)}
    if case.headwater_home:
        extra["HEADWATER_HOME"] = str(run_dir / "home")
    sample: Sample = measure(cmd, env=child_env(**extra), cwd=run_dir, log=run_dir / f"output-{index}.log")
    graph = _shapes.graph(shape)
    times = read_stamps(stamps)
    ok = sample.returncode == 0 and len(times) == len(graph)
    lat = median(handoff_latencies(graph, times)) if shape in LATENCY_SHAPES else None
    out: dict[str, Any] = asdict(sample) | {
        "ok": ok, "tasks_run": len(times), "setup_wall": setup,
        "latency_ms": None if lat is None else lat * 1000,
    }
    if case.headwater_home and ok and shape in LATENCY_SHAPES:
        db_lat = median(db_latencies(run_dir / "home", shape))
        out["db_latency_ms"] = None if db_lat is None else db_lat * 1000
    if not ok:
        out["log"] = str(run_dir / f"output-{index}.log")
    return out


def summarise(result: CaseResult) -> None:
    good = [r for r in result.runs if r["ok"]]
    result.failures = len(result.runs) - len(good)
    for key in ("wall", "cpu", "peak_rss_mb", "latency_ms", "db_latency_ms"):
        values = [r[key] for r in good if r.get(key) is not None]
        result.median[key] = median(values)


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)), "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(), "platform": platform.platform(),
        "loadavg_before": os.getloadavg(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs of each case (median reported); default 5")
    parser.add_argument("--shapes", default="a,b,c,d", help="comma-separated subset of a,b,c,d")
    parser.add_argument("--skip-peers", action="store_true", help="measure headwater only")
    parser.add_argument("--quick", action="store_true", help="one run of each case, to check the harness")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the parallel cases")
    args = parser.parse_args(argv)
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in args.shapes if s not in _shapes.DAG_IDS]
    if unknown:
        parser.error(f"unknown shape(s) {', '.join(unknown)}: use a subset of {','.join(_shapes.DAG_IDS)}")
    if args.quick:
        args.runs = 1
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: keep the tables' rows on one line
        console = Console(width=160)
    WORK.mkdir(parents=True, exist_ok=True)
    versions = {"headwater": _headwater_version()}
    errors: dict[str, str] = {}
    started = dt.datetime.now(dt.UTC)
    info = machine()

    with console.status("preparing: headwater home" + ("" if args.skip_peers else ", Luigi and Dagster venvs")):
        cases: list[Case] = []
        try:
            cases += headwater_cases(args.shapes, args.workers)
        except SetupError as exc:
            errors["headwater"] = str(exc)
        if not args.skip_peers:
            cases += peer_cases(versions, errors, args.workers)
    for name, message in errors.items():
        console.print(f"[red]{name} cannot be measured:[/] {message}")

    todo = [(c, s) for c in cases for s in c.shapes if s in args.shapes]
    results: dict[str, dict[str, CaseResult]] = {c.key: {} for c in cases}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        bar = progress.add_task("measuring", total=len(todo) * args.runs)
        for index in range(args.runs):
            for case, shape in todo:
                progress.update(bar, description=f"run {index + 1}/{args.runs}: {case.label}, shape {shape}")
                result = results[case.key].setdefault(shape, CaseResult())
                try:
                    result.runs.append(run_once(case, shape, index))
                except SetupError as exc:
                    result.runs.append({"ok": False, "error": str(exc)})
                progress.advance(bar)
    for by_shape in results.values():
        for result in by_shape.values():
            summarise(result)

    info["loadavg_after"] = os.getloadavg()
    doc = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": info, "runs": args.runs, "shapes": args.shapes, "workers": args.workers,
        "versions": versions, "errors": errors,
        "cases": {c.key: c.label for c in cases},
        "results": {k: {s: asdict(r) for s, r in v.items()} for k, v in results.items()},
        "anchors": report.ANCHORS, "goals": report.GOALS,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"orchestration-{started:%Y-%m-%d}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tables = report.build_tables(doc)
    for table in tables:
        console.print(report.to_rich(table))
    stem.with_suffix(".md").write_text(report.to_markdown(tables, doc), encoding="utf-8")
    console.print(f"headwater {versions['headwater']}; load average before {info['loadavg_before'][0]:.2f}, "
                  f"after {info['loadavg_after'][0]:.2f} (on {info['nproc']} CPUs)")
    console.print(f"results: {stem.with_suffix('.json').relative_to(ROOT)} and .md")
    failed = sum(r.failures for v in results.values() for r in v.values())
    if failed:
        console.print(f"[red]{failed} run(s) failed[/]: see the logs named in the JSON")
    return 1 if failed or errors.get("headwater") else 0


def _headwater_version() -> str:
    """The package version and the commit measured (``+dirty``: uncommitted changes in headwater/)."""
    from importlib.metadata import version

    head = run_quiet(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT)
    if head.returncode != 0:
        return version("headwater")
    dirty = run_quiet(["git", "status", "--porcelain", "--", "headwater"], cwd=ROOT).stdout.strip()
    return f"{version('headwater')} ({head.stdout.strip()}{'+dirty' if dirty else ''})"


if __name__ == "__main__":
    sys.exit(main())
