"""The benchmark's DAG shapes and no-op task body, shared by every framework measured.

Standard library only: the Luigi and Dagster scripts import this file from their own
venvs, and headwater's DAG files import it from the DAG folder (the loader puts the
folder on ``sys.path``; the leading ``_`` keeps discovery from parsing it as a DAG file).

Shapes, all deterministic:

* ``a``: one task;
* ``b``: a chain of 100 dependent tasks;
* ``c``: 500 independent tasks, then one join task that depends on all of them;
* ``d``: 10 layers of 100 tasks; task ``j`` of a layer depends on tasks ``j`` and
  ``j+1`` of the previous layer, and also on ``(37j+11) mod 100`` when ``j`` is even
  (2 or 3 upstream tasks each).
"""

from __future__ import annotations

import os
import time

DAG_IDS = {"a": "one_task", "b": "chain_100", "c": "fan_in_500", "d": "layered_1000"}
STAMPS_ENV = "BENCH_STAMPS"

CHAIN_LENGTH = 100
FAN_IN_WIDTH = 500
LAYERS = 10
LAYER_WIDTH = 100


def graph(shape: str) -> dict[str, list[str]]:
    """Task id -> ids of its upstream tasks, in an order where upstream tasks come first."""
    if shape == "a":
        return {"t0": []}
    if shape == "b":
        ids = [f"t{i:03d}" for i in range(CHAIN_LENGTH)]
        return {tid: ([ids[i - 1]] if i else []) for i, tid in enumerate(ids)}
    if shape == "c":
        wide: dict[str, list[str]] = {f"t{i:03d}": [] for i in range(FAN_IN_WIDTH)}
        return {**wide, "join": list(wide)}
    if shape == "d":
        out: dict[str, list[str]] = {}
        for layer in range(LAYERS):
            for j in range(LAYER_WIDTH):
                ups: list[str] = []
                if layer:
                    picks = [j, (j + 1) % LAYER_WIDTH]
                    if j % 2 == 0:
                        picks.append((37 * j + 11) % LAYER_WIDTH)
                    ups = [f"l{layer - 1}_t{p:02d}" for p in dict.fromkeys(picks)]
                out[f"l{layer}_t{j:02d}"] = ups
        return out
    raise ValueError(f"unknown shape {shape!r}: use one of {', '.join(DAG_IDS)}")


def sinks(shape: str) -> list[str]:
    """Tasks nothing depends on: what a pull-based framework (Luigi) is asked to build."""
    g = graph(shape)
    used = {u for ups in g.values() for u in ups}
    return [t for t in g if t not in used]


def noop(task_id: str) -> None:
    """The task body: nothing, but when ``$BENCH_STAMPS`` names a file, append
    ``task_id start end`` (``time.time()`` at the body's start and end) to it."""
    start = time.time()
    path = os.environ.get(STAMPS_ENV)
    if path:
        end = time.time()
        # One small O_APPEND write per task: lines from parallel workers do not interleave.
        with open(path, "a", encoding="ascii") as f:
            f.write(f"{task_id} {start:.6f} {end:.6f}\n")
