"""The context of one task try: what templates see and what ``execute`` receives.

Like Airflow's, the context is a plain dict (``ds``, ``ti``, ``params``, ``dag_run``,
...). Its ``ti`` is a :class:`RuntimeTaskInstance`: it pushes XComs into the try's
result and pulls upstream XComs first from the workload's ``inputs`` (what the
scheduler sent along) and only then from the metadata store, opened lazily.
"""

from __future__ import annotations

import datetime as dt
import json
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headwater.clock import ensure_utc
from headwater.orchestration.params import Param
from headwater.orchestration.xcom_codec import decode_xcom

if TYPE_CHECKING:
    from headwater.executor.base import Workload
    from headwater.orchestration.baseoperator import BaseOperator
    from headwater.orchestration.dag import DAG
    from headwater.store.base import MetadataStore

Context = dict[str, Any]
"""The template/execute context (a dict, as in Airflow)."""

RETURN_KEY = "return_value"


def parse_time(value: str) -> dt.datetime:
    """An ISO 8601 string from a :class:`RunInfo` as an aware UTC datetime."""
    return ensure_utc(dt.datetime.fromisoformat(value))


@dataclass(frozen=True, slots=True)
class DagRunInfo:
    """The DAG run a try belongs to, as templates and tasks see it (``context["dag_run"]``)."""

    dag_id: str
    run_id: str
    logical_date: dt.datetime
    data_interval_start: dt.datetime
    data_interval_end: dt.datetime
    run_type: str = "manual"
    conf: dict[str, Any] = field(default_factory=dict)

    @property
    def execution_date(self) -> dt.datetime:
        """Airflow's older name for :attr:`logical_date`."""
        return self.logical_date

    @property
    def external_trigger(self) -> bool:
        return self.run_type == "manual"


class RuntimeTaskInstance:
    """The ``ti`` of the context: identity of the try, XCom push/pull, and skip requests."""

    def __init__(self, task: BaseOperator, workload: Workload) -> None:
        self.task = task
        self.workload = workload
        self.dag_id = workload.key.dag_id
        self.task_id = workload.key.task_id
        self.run_id = workload.key.run_id
        self.try_number = workload.key.try_number
        self.max_tries = workload.max_tries
        self.map_index = -1
        self.operator = task.operator_name
        self.sensor_started_at = parse_time(workload.sensor_started_at) if workload.sensor_started_at else None
        self.pushed: dict[str, Any] = {}
        self.skipped: list[str] = []
        self._store: MetadataStore | None = None

    def __repr__(self) -> str:
        return f"<TaskInstance: {self.dag_id}.{self.task_id} {self.run_id} [try {self.try_number}]>"

    @property
    def key(self) -> str:
        return f"{self.dag_id}__{self.task_id}__{self.run_id}__{self.try_number}"

    def xcom_push(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` as a result of this try (sent with the task's event)."""
        self.pushed[str(key)] = value

    def xcom_pull(
        self,
        task_ids: str | Iterable[str] | None = None,
        key: str = RETURN_KEY,
        dag_id: str | None = None,
        run_id: str | None = None,
        default: Any = None,
    ) -> Any:
        """Read results of other tasks: one value for one task id, a list for several.

        Looks in the workload's ``inputs`` first (for this run), then in the metadata
        store. A missing result is ``default``.
        """
        dag_id = dag_id or self.dag_id
        run_id = run_id or self.run_id
        if task_ids is None:
            found = self._find(None, key, dag_id, run_id)
            return found[0] if found else default
        if isinstance(task_ids, str):
            found = self._find(task_ids, key, dag_id, run_id)
            return found[0] if found else default
        out = []
        for tid in task_ids:
            found = self._find(tid, key, dag_id, run_id)
            out.append(found[0] if found else default)
        return out

    def _find(self, task_id: str | None, key: str, dag_id: str, run_id: str) -> list[Any]:
        """``[value]`` when found, ``[]`` when not (a stored ``None`` is a value)."""
        same_run = dag_id == self.dag_id and run_id == self.run_id
        if same_run:
            if task_id in (None, self.task_id) and key in self.pushed:
                return [self.pushed[key]]
            for tid, values in self.workload.inputs.items():
                if task_id in (None, tid) and key in values:
                    return [decode_xcom(values[key])]
        store = self._open_store()
        if store is None:
            return []
        records = store.get_xcoms(dag_id, run_id, task_ids=None if task_id is None else [task_id], key=key)
        return [decode_xcom(records[0].value)] if records else []

    def _open_store(self) -> MetadataStore | None:
        if self._store is None and self.workload.db_url:
            # Imported here: the store (SQLAlchemy) is only needed when a task pulls a
            # result the scheduler did not send along.
            from headwater.store.sql import open_store

            self._store = open_store(self.workload.db_url)
        return self._store

    def skip(self, task_ids: Iterable[str]) -> None:
        """Ask for ``task_ids`` to be skipped in this run once the try succeeds."""
        for tid in task_ids:
            if tid not in self.skipped:
                self.skipped.append(tid)

    def close(self) -> None:
        """Release the metadata store, if one was opened."""
        if self._store is not None:
            self._store.close()
            self._store = None


def ds_add(ds: str, days: int) -> str:
    """Add (or subtract) days to a ``YYYY-MM-DD`` date: ``ds_add("2024-01-01", 5)``."""
    return (dt.date.fromisoformat(ds) + dt.timedelta(days=days)).isoformat()


def ds_format(ds: str, input_format: str, output_format: str) -> str:
    """Reformat a date string: ``ds_format("2024-01-05", "%Y-%m-%d", "%d/%m/%Y")``."""
    return dt.datetime.strptime(ds, input_format).strftime(output_format)  # noqa: DTZ007 - a date, no zone


def make_macros(extra: Mapping[str, Any] | None = None) -> types.SimpleNamespace:
    """The ``macros`` namespace of templates (Airflow's common macros)."""
    import random
    import time
    import uuid

    values: dict[str, Any] = {
        "datetime": dt.datetime,
        "timedelta": dt.timedelta,
        "date": dt.date,
        "time": time,
        "uuid": uuid,
        "random": random,
        "json": json,
        "ds_add": ds_add,
        "ds_format": ds_format,
    }
    values.update(extra or {})
    return types.SimpleNamespace(**values)


def build_context(task: BaseOperator, dag: DAG, workload: Workload, ti: RuntimeTaskInstance) -> Context:
    """The context of one try (without ``outputs``: the runtime adds them once rendered).

    ``params`` are the DAG's, overridden by the task's, by the workload's, and last
    by the run's ``conf`` (Airflow's order).
    """
    run = workload.run
    logical = parse_time(run.logical_date)
    dag_run = DagRunInfo(
        dag_id=dag.dag_id,
        run_id=run.run_id,
        logical_date=logical,
        data_interval_start=parse_time(run.data_interval_start),
        data_interval_end=parse_time(run.data_interval_end),
        run_type=run.run_type,
        conf=dict(run.conf),
    )
    # The workload's params come from the stored spec, where secret defaults are "***":
    # those are skipped so the DAG file's real value stands. Task-level Params give their value.
    secrets = {name for name, p in dag.param_specs.items() if p.secret}
    task_params = {k: v.value if isinstance(v, Param) else v for k, v in task.params.items()}
    from_spec = {k: v for k, v in workload.params.items() if k not in secrets}
    params = {**dag.params, **task_params, **from_spec, **run.conf}
    ds = logical.strftime("%Y-%m-%d")
    context: Context = {
        "dag": dag,
        "task": task,
        "ti": ti,
        "task_instance": ti,
        "run_id": run.run_id,
        "dag_run": dag_run,
        "ds": ds,
        "ds_nodash": ds.replace("-", ""),
        "ts": logical.isoformat(),
        "ts_nodash": logical.strftime("%Y%m%dT%H%M%S"),
        "ts_nodash_with_tz": logical.isoformat().replace("-", "").replace(":", ""),
        "logical_date": logical,
        "execution_date": logical,
        "data_interval_start": dag_run.data_interval_start,
        "data_interval_end": dag_run.data_interval_end,
        "yesterday_ds": ds_add(ds, -1),
        "tomorrow_ds": ds_add(ds, 1),
        "params": params,
        "try_number": ti.try_number,
        "task_instance_key_str": f"{dag.dag_id}__{task.task_id}__{ds.replace('-', '')}",
        "macros": make_macros(),
        "outputs": [],
        "test_mode": run.run_type == "test",
    }
    # Airflow puts a DAG's user_defined_macros at the top level of the context.
    context.update(dag.user_defined_macros)
    return context
