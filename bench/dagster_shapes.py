"""Run one benchmark shape with Dagster, in process: ``python dagster_shapes.py SHAPE``.

Runs in its own venv (``bench/.venvs/dagster``), started by ``orchestration.py``.
One no-op op definition is invoked once per task under the task's name; edges are
``Nothing`` dependencies, so no values pass between ops. ``execute_in_process`` uses
an ephemeral instance: nothing is persisted. Exit status 0 only if the run succeeded.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "dags"))

import _shapes
from dagster import (
    DependencyDefinition,
    GraphDefinition,
    In,
    MultiDependencyDefinition,
    NodeInvocation,
    Nothing,
    op,
)


@op(ins={"after": In(Nothing)})  # type: ignore[untyped-decorator]  # untyped where dagster is not installed
def noop(context) -> None:  # type: ignore[no-untyped-def]  # dagster rejects a string annotation
    _shapes.noop(context.op_handle.name)


def make_job(shape: str):  # type: ignore[no-untyped-def]
    deps = {}
    for task_id, ups in _shapes.graph(shape).items():
        node = NodeInvocation("noop", alias=task_id)
        if ups:
            deps[node] = {"after": MultiDependencyDefinition([DependencyDefinition(u) for u in ups])}
        else:
            deps[node] = {}
    return GraphDefinition(name=_shapes.DAG_IDS[shape], node_defs=[noop], dependencies=deps).to_job()


def main() -> int:
    result = make_job(sys.argv[1]).execute_in_process(raise_on_error=False)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
