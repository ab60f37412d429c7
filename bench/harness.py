"""Measuring one child process: wall time, CPU time and peak memory of its process tree.

* Wall time: ``time.perf_counter()`` from just before ``Popen`` to the return of ``wait()``.
* CPU time: user + system time of the whole tree, from ``getrusage(RUSAGE_CHILDREN)``
  before and after. It counts every descendant that was waited for (the child reaps
  its own workers), so the harness must start no other child meanwhile.
* Peak memory: the largest sum of RSS over the child and its descendants, sampled
  every ~5 ms by a thread. A sum of RSS counts shared pages (the interpreter, forked
  copies) once per process, so it over-counts what the tree really holds.
"""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

SAMPLE_EVERY = 0.005
# Listing a tree's descendants reads every /proc/<pid>/stat; doing it at every sample
# would cost a good share of one of the 2 cores. Refresh the list every 10 samples and
# read only the known processes' RSS in between.
TREE_REFRESH_EVERY = 10


@dataclass
class Sample:
    """One measured run of one command."""

    wall: float
    cpu: float
    peak_rss_mb: float
    returncode: int


class RssSampler(threading.Thread):
    """Samples the summed RSS of a process tree until :meth:`stop`; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        tree: list[psutil.Process] = [root]
        n = 0
        while not self._stop_event.is_set():
            if n % TREE_REFRESH_EVERY == 0:
                try:
                    tree = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    return
            total = 0
            for proc in tree:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            n += 1
            self._stop_event.wait(SAMPLE_EVERY)


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(cmd: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path, timeout: float = 600.0) -> Sample:
    """Run ``cmd`` to its end with output to ``log``; measure it as a whole process tree."""
    cpu_before = _cpu_of_children()
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        sampler = RssSampler(proc.pid)
        sampler.start()
        # A blocking wait(): wait(timeout=...) polls with sleeps of up to 50 ms, which
        # would round every wall time up to the next poll. The timer enforces the limit.
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            returncode = proc.wait()
        finally:
            killer.cancel()
        wall = time.perf_counter() - started
        sampler.stop()
    cpu = _cpu_of_children() - cpu_before
    return Sample(wall=wall, cpu=cpu, peak_rss_mb=sampler.peak / 2**20, returncode=returncode)


def run_quiet(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 1800.0) -> subprocess.CompletedProcess[str]:
    """Run a setup command (not measured); its output is kept for error messages."""
    return subprocess.run(
        list(cmd), env=dict(env) if env is not None else None, cwd=cwd, capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def read_stamps(path: Path) -> dict[str, tuple[float, float]]:
    """``task_id -> (start, end)`` from a stamps file written by ``_shapes.noop``."""
    out: dict[str, tuple[float, float]] = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="ascii").splitlines():
        task_id, start, end = line.split()
        out[task_id] = (float(start), float(end))
    return out


def handoff_latencies(graph: Mapping[str, Sequence[str]], times: Mapping[str, tuple[float, float]]) -> list[float]:
    """For every task with upstream tasks: its start minus the last end among its upstreams.

    On a chain this is "end of one task to start of the next" for each consecutive pair.
    """
    out = []
    for task_id, ups in graph.items():
        if ups and task_id in times and all(u in times for u in ups):
            out.append(times[task_id][0] - max(times[u][1] for u in ups))
    return out


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def child_env(**extra: str) -> dict[str, str]:
    """The harness's environment without variables that would change what is measured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEADWATER_", "PYTHON", "LUIGI_", "DAGSTER_"))}
    env.update(extra)
    return env
