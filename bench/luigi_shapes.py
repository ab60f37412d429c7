"""Run one benchmark shape with Luigi: ``python luigi_shapes.py SHAPE WORKERS``.

Runs in its own venv (``bench/.venvs/luigi``), started by ``orchestration.py``.
Tasks have no outputs, so no state is persisted: a task is complete once it has
run in this build (the local scheduler tracks that), like the anchor measurement.
Exit status 0 only if every task ran.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "dags"))

import _shapes
import luigi


class Noop(luigi.Task):  # type: ignore[misc]  # luigi ships no type hints
    """One no-op task of the shape; ``requires`` follows the shape's edges."""

    shape = luigi.Parameter()
    name = luigi.Parameter()

    def requires(self):  # type: ignore[no-untyped-def]
        return [Noop(shape=self.shape, name=u) for u in _GRAPH[self.shape][self.name]]

    def complete(self) -> bool:
        # Without outputs, completeness is only known to the scheduler; returning
        # False here avoids Luigi's "task without outputs" warning on every task.
        return False

    def run(self) -> None:
        _shapes.noop(self.name)


_GRAPH: dict[str, dict[str, list[str]]] = {}


def main() -> int:
    shape, workers = sys.argv[1], int(sys.argv[2])
    _GRAPH[shape] = _shapes.graph(shape)
    # With several workers each task runs in a forked child, whose complete() of its
    # dependencies cannot see the parent's knowledge: let the scheduler vouch for them.
    luigi.configuration.get_config().set("worker", "check_unfulfilled_deps", "false")
    ok = luigi.build(
        [Noop(shape=shape, name=s) for s in _shapes.sinks(shape)], local_scheduler=True, workers=workers
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
