"""Builds a headwater DAG of one benchmark shape from ``_shapes`` (no-op PythonOperators)."""

from __future__ import annotations

import datetime as dt

import _shapes

from headwater import DAG, PythonOperator


def build(shape: str) -> DAG:
    """The DAG of ``shape``: unscheduled, so only triggers and ``dags test`` run it."""
    dag = DAG(
        _shapes.DAG_IDS[shape],
        schedule=None,
        start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        tags=["bench"],
    )
    tasks: dict[str, PythonOperator] = {}
    for task_id, ups in _shapes.graph(shape).items():
        tasks[task_id] = PythonOperator(
            task_id=task_id, python_callable=_shapes.noop, op_args=[task_id], dag=dag
        )
        if ups:
            tasks[task_id].set_upstream([tasks[u] for u in ups])
    return dag
