"""Sensors: tasks that wait for something (a file, a time, another DAG's task) to become true.

A sensor's :meth:`BaseSensorOperator.poke` answers "is it there yet?". How the
waiting happens depends on ``mode``:

* ``"poke"``: the sensor holds its worker slot and pokes every ``poke_interval``
  seconds until ``poke`` is true or ``timeout`` has passed.
* ``"reschedule"``: the sensor pokes once per try. When the answer is no, it
  raises :class:`~headwater.errors.TaskReschedule` and the scheduler queues it
  again after ``poke_interval``, freeing the slot meanwhile. The timeout counts
  from the first poke, which the runtime passes as ``sensor_started_at``.

When the timeout passes the sensor raises
:class:`~headwater.errors.SensorTimeoutError`; the runtime fails the task without
retrying, or skips it when ``soft_fail`` is set.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import inspect
import math
import os
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from headwater.clock import ensure_utc
from headwater.errors import DagDefinitionError, SensorTimeoutError, TaskFailNoRetryError, TaskReschedule
from headwater.orchestration.baseoperator import BaseOperator
from headwater.orchestration.dag import to_timedelta
from headwater.orchestration.operators import determine_kwargs
from headwater.orchestration.spec import TaskSpec
from headwater.orchestration.states import RunState, TaskState

if TYPE_CHECKING:
    from headwater.orchestration.context import Context
    from headwater.store.base import MetadataStore

MODES = ("poke", "reschedule")


@dataclasses.dataclass(frozen=True, slots=True)
class PokeReturnValue:
    """What ``poke`` may return instead of a bool: done or not, and a result for downstream tasks."""

    is_done: bool
    xcom_value: Any = None

    def __bool__(self) -> bool:
        return self.is_done


def _seconds(value: object, what: str) -> float:
    delta = to_timedelta(value, what, allow_none=False)
    assert delta is not None  # allow_none=False
    return delta.total_seconds()


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g}s"
    if seconds < 7200:
        return f"{seconds / 60:.3g}min"
    return f"{seconds / 3600:.3g}h"


class BaseSensorOperator(BaseOperator):
    """Base of every sensor: subclasses implement :meth:`poke` and may override :meth:`describe`.

    ``poke_interval`` and ``timeout`` are seconds or ``timedelta``s. With
    ``exponential_backoff`` the wait doubles after each poke, up to ``max_wait``
    when given.
    """

    def __init__(
        self,
        *,
        poke_interval: dt.timedelta | float = 60,
        timeout: dt.timedelta | float = dt.timedelta(days=7),
        soft_fail: bool = False,
        mode: str = "poke",
        exponential_backoff: bool = False,
        max_wait: dt.timedelta | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.poke_interval = _seconds(poke_interval, f"poke_interval of sensor {self.task_id!r}")
        self.timeout = _seconds(timeout, f"timeout of sensor {self.task_id!r}")
        self.max_wait = None if max_wait is None else _seconds(max_wait, f"max_wait of sensor {self.task_id!r}")
        if mode not in MODES:
            raise DagDefinitionError(
                f"sensor {self.task_id!r} has mode {mode!r}",
                hint="use mode='poke' (hold the worker slot) or mode='reschedule' (free it between pokes)",
            )
        self.mode = mode
        self.soft_fail = bool(soft_fail)
        self.exponential_backoff = bool(exponential_backoff)

    @abstractmethod
    def poke(self, context: Context) -> bool | PokeReturnValue:
        """True (or a done :class:`PokeReturnValue`) once the awaited condition holds."""

    def describe(self) -> str:
        """What the sensor waits for, in a few words, for timeout messages."""
        return f"{type(self).__name__}.poke() to return true"

    def to_spec(self) -> TaskSpec:
        return dataclasses.replace(
            super().to_spec(),
            is_sensor=True,
            sensor_mode=self.mode,
            poke_interval=self.poke_interval,
            sensor_timeout=self.timeout,
            soft_fail=self.soft_fail,
        )

    # -- waiting
    def next_wait(self, pokes: int) -> float:
        """Seconds to wait after poke number ``pokes`` (1-based) came back false."""
        wait = self.poke_interval
        if self.exponential_backoff:
            wait = self.poke_interval * 2 ** min(max(0, pokes - 1), 60)
        if self.max_wait is not None:
            wait = min(wait, self.max_wait)
        return wait

    def _timeout_error(self, waited: float, pokes: int) -> SensorTimeoutError:
        return SensorTimeoutError(
            f"sensor {self.task_id!r} waited {_human(waited)} ({pokes} poke{'s' if pokes != 1 else ''}) "
            f"for {self.describe()} and timed out (timeout {_human(self.timeout)})",
            hint="raise the sensor's timeout, check that what it waits for will happen, "
            "or set soft_fail=True to skip instead of failing",
        )

    def execute(self, context: Context) -> Any:
        """Poke until done (``poke`` mode) or poke once and ask to be rescheduled (``reschedule`` mode)."""
        if self.mode == "reschedule":
            return self._poke_once(context)
        return self._poke_until_done(context)

    def _poke_until_done(self, context: Context) -> Any:
        started = time.monotonic()
        pokes = 0
        while True:
            result = self.poke(context)
            pokes += 1
            if result:
                return result.xcom_value if isinstance(result, PokeReturnValue) else None
            waited = time.monotonic() - started
            remaining = self.timeout - waited
            if remaining <= 0:
                raise self._timeout_error(waited, pokes)
            # Never sleep past the deadline: the last poke happens right at it.
            time.sleep(min(self.next_wait(pokes), remaining))

    def _poke_once(self, context: Context) -> Any:
        result = self.poke(context)
        if result:
            return result.xcom_value if isinstance(result, PokeReturnValue) else None
        now = time.time()
        started = _sensor_started_at(context)
        started_ts = now if started is None else min(started.timestamp(), now)
        waited = now - started_ts
        pokes = self._pokes_so_far(waited)
        if waited >= self.timeout:
            raise self._timeout_error(waited, pokes)
        deadline = started_ts + self.timeout
        raise TaskReschedule(min(now + self.next_wait(pokes), deadline))

    def _pokes_so_far(self, waited: float) -> int:
        """About how many pokes fit in ``waited`` seconds; a reschedule knows no count of its own."""
        if self.poke_interval <= 0:
            return 1
        if not self.exponential_backoff:
            return 1 + int(waited // self.poke_interval)
        # Waits of p, 2p, 4p... sum to p * (2**n - 1) after n pokes.
        return 1 + int(math.log2(waited / self.poke_interval + 1))


def _sensor_started_at(context: Mapping[str, Any]) -> dt.datetime | None:
    """When the first poke of this sensor try happened; None on the first poke."""
    value = context.get("sensor_started_at")
    if value is None:
        value = getattr(context.get("ti"), "sensor_started_at", None)
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return ensure_utc(value) if isinstance(value, dt.datetime) else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TimeDeltaSensor(BaseSensorOperator):
    """Waits until ``delta`` after the end of the run's data interval (Airflow's semantics)."""

    def __init__(self, *, delta: dt.timedelta | float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delta = to_timedelta(delta, f"delta of sensor {self.task_id!r}", allow_none=False)
        self._target: dt.datetime | None = None

    def describe(self) -> str:
        when = self._target.isoformat() if self._target else f"data_interval_end + {self.delta}"
        return f"the time {when}"

    def poke(self, context: Context) -> bool:
        assert self.delta is not None
        self._target = ensure_utc(context["data_interval_end"]) + self.delta
        return _now() >= self._target


class DateTimeSensor(BaseSensorOperator):
    """Waits until ``target_time``: a datetime or a templated ISO 8601 string (naive is UTC)."""

    template_fields: Sequence[str] = ("target_time",)

    def __init__(self, *, target_time: str | dt.datetime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(target_time, dt.datetime):
            target_time = ensure_utc(target_time).isoformat()
        if not isinstance(target_time, str):
            raise DagDefinitionError(
                f"target_time of sensor {self.task_id!r} must be a datetime or a string, got {target_time!r}"
            )
        self.target_time = target_time

    def describe(self) -> str:
        return f"the time {self.target_time}"

    def poke(self, context: Context) -> bool:
        try:
            target = ensure_utc(dt.datetime.fromisoformat(str(self.target_time)))
        except ValueError:
            raise TaskFailNoRetryError(
                f"sensor {self.task_id!r}: target_time {self.target_time!r} is not an ISO 8601 time",
                hint="write it like 2024-01-31T06:00:00+00:00 or {{ data_interval_end }}",
            ) from None
        return _now() >= target


class FileSensor(BaseSensorOperator):
    """Waits for a file (or a glob pattern to match one) to exist.

    ``filepath`` is templated. A matching folder counts when it holds a file
    (at any depth, as in Airflow). URLs such as ``s3://bucket/key*`` are checked
    through fsspec.
    """

    template_fields: Sequence[str] = ("filepath",)

    def __init__(self, *, filepath: str | os.PathLike[str], recursive: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filepath = os.fspath(filepath)
        self.recursive = bool(recursive)

    def describe(self) -> str:
        return f"a file matching {self.filepath}"

    def poke(self, context: Context) -> bool:
        path = str(self.filepath)
        if "://" in path:
            return self._poke_url(path)
        for match in glob.iglob(os.path.expanduser(path), recursive=self.recursive):
            if os.path.isfile(match):
                self.log.info("found %s", match)
                return True
            for _, _, files in os.walk(match):
                if files:
                    self.log.info("found files in %s", match)
                    return True
        return False

    def _poke_url(self, url: str) -> bool:
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(url)
        if glob.has_magic(path):
            return bool(fs.glob(path))
        return bool(fs.exists(path))


class ExternalTaskSensor(BaseSensorOperator):
    """Waits for a task (or, with ``external_task_id=None``, the whole run) of another DAG.

    The other run is the one with this run's logical date, moved back by
    ``execution_delta`` or computed by ``execution_date_fn(logical_date)`` (or
    ``execution_date_fn(logical_date, context)``). Reaching one of
    ``failed_states`` fails the sensor without retries.
    """

    template_fields: Sequence[str] = ("external_dag_id", "external_task_id")

    def __init__(
        self,
        *,
        external_dag_id: str,
        external_task_id: str | None = None,
        allowed_states: Iterable[str] | None = None,
        failed_states: Iterable[str] | None = None,
        execution_delta: dt.timedelta | None = None,
        execution_date_fn: Callable[..., dt.datetime] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if execution_delta is not None and execution_date_fn is not None:
            raise DagDefinitionError(
                f"sensor {self.task_id!r} sets both execution_delta and execution_date_fn",
                hint="pass only one of them",
            )
        self.external_dag_id = external_dag_id
        self.external_task_id = external_task_id
        valid = [s.value for s in (TaskState if external_task_id is not None else RunState)]
        self.allowed_states = self._states(allowed_states or ["success"], "allowed_states", valid)
        self.failed_states = self._states(failed_states or [], "failed_states", valid)
        both = set(self.allowed_states) & set(self.failed_states)
        if both:
            raise DagDefinitionError(
                f"sensor {self.task_id!r} lists {sorted(both)} in both allowed_states and failed_states"
            )
        self.execution_delta = to_timedelta(execution_delta, f"execution_delta of sensor {self.task_id!r}")
        self.execution_date_fn = execution_date_fn
        self._store: MetadataStore | None = None
        self._looking_at = ""

    def _states(self, states: Iterable[str], what: str, valid: list[str]) -> list[str]:
        if isinstance(states, str):
            raise DagDefinitionError(f"{what} of sensor {self.task_id!r} must be a list, not one string")
        out = [str(s) for s in states]
        bad = [s for s in out if s not in valid]
        if bad:
            kind = "task" if self.external_task_id is not None else "DAG run"
            raise DagDefinitionError(
                f"{what} of sensor {self.task_id!r} has unknown {kind} states {bad}",
                hint=f"valid {kind} states: {', '.join(valid)}",
            )
        return out

    def describe(self) -> str:
        what = self._looking_at or (
            f"task {self.external_task_id!r} of DAG {self.external_dag_id!r}"
            if self.external_task_id
            else f"DAG {self.external_dag_id!r}"
        )
        return f"{what} to be in state {' or '.join(self.allowed_states)}"

    def external_logical_date(self, context: Context) -> dt.datetime:
        """The logical date of the external run to look at."""
        logical = ensure_utc(context["logical_date"])
        if self.execution_delta is not None:
            return logical - self.execution_delta
        if self.execution_date_fn is not None:
            takes_context = len(inspect.signature(self.execution_date_fn).parameters) >= 2
            fn = self.execution_date_fn
            return ensure_utc(fn(logical, context) if takes_context else fn(logical))
        return logical

    def _open_store(self, context: Context) -> MetadataStore:
        if self._store is None:
            ti = context.get("ti")
            url = (
                context.get("db_url")
                or getattr(ti, "db_url", None)
                or getattr(getattr(ti, "workload", None), "db_url", "")
            )
            if not url:
                raise TaskFailNoRetryError(
                    f"sensor {self.task_id!r} cannot see the metadata database: the try has no db_url",
                    hint="run it through the scheduler or 'headwater dags test', which pass the database",
                )
            # Imported here: authoring code does not depend on the store, only this poke does.
            from headwater.store.sql import open_store

            self._store = open_store(url)
        return self._store

    def execute(self, context: Context) -> Any:
        try:
            return super().execute(context)
        finally:
            if self._store is not None:
                self._store.close()
                self._store = None

    def poke(self, context: Context) -> bool:
        store = self._open_store(context)
        when = self.external_logical_date(context)
        run = store.find_run(self.external_dag_id, when)
        run_name = f"the run of DAG {self.external_dag_id!r} at {when.isoformat()}"
        if run is None:
            self._looking_at = run_name
            self.log.info("waiting: no %s yet", run_name)
            return False
        if self.external_task_id is None:
            state: str = run.state.value
            self._looking_at = f"{run_name} ({run.run_id})"
        else:
            ti = store.get_task_instance(self.external_dag_id, run.run_id, self.external_task_id)
            self._looking_at = f"task {self.external_task_id!r} in {run_name} ({run.run_id})"
            if ti is None:
                raise TaskFailNoRetryError(
                    f"sensor {self.task_id!r}: DAG {self.external_dag_id!r} has no task "
                    f"{self.external_task_id!r} in run {run.run_id!r}",
                    hint="check external_task_id",
                )
            state = ti.state.value
        if state in self.failed_states:
            raise TaskFailNoRetryError(
                f"sensor {self.task_id!r}: {self._looking_at} is {state}, one of the failed_states",
                hint="clear or re-run the external task, then clear this sensor",
            )
        self.log.info("%s is %s", self._looking_at, state)
        return state in self.allowed_states


class PythonSensor(BaseSensorOperator):
    """Waits until ``python_callable(*op_args, **op_kwargs)`` returns something true.

    Context values the callable names as parameters (``ds``, ``ti``...) are passed
    too; all of them when it takes ``**kwargs``.
    """

    template_fields: Sequence[str] = ("op_args", "op_kwargs", "templates_dict")

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        templates_dict: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not callable(python_callable):
            raise DagDefinitionError(
                f"python_callable of sensor {self.task_id!r} must be callable, got {python_callable!r}"
            )
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})
        self.templates_dict = dict(templates_dict) if templates_dict is not None else None

    def describe(self) -> str:
        name = getattr(self.python_callable, "__name__", repr(self.python_callable))
        return f"{name}() to return true"

    def poke(self, context: Context) -> bool | PokeReturnValue:
        if self.templates_dict is not None:
            context = {**context, "templates_dict": self.templates_dict}
        kwargs = determine_kwargs(self.python_callable, self.op_args, {**context, **self.op_kwargs})
        result = self.python_callable(*self.op_args, **kwargs)
        if isinstance(result, PokeReturnValue):
            return result
        return bool(result)


class DecoratedSensorOperator(PythonSensor):
    """What ``@task.sensor`` creates: the decorated function is the poke.

    ``@task.sensor(poke_interval=30, timeout=3600, mode="reschedule")`` takes every
    sensor argument; returning a :class:`PokeReturnValue` passes a result on.
    """

    custom_operator_name = "@task.sensor"
