"""The ``DAG`` object users write: a named graph of tasks with scheduling facts.

A DAG is built by importing a user's file. Two pieces of per-import state live in
context variables, never in module globals, so that nothing leaks between imports
or threads:

* the stack of DAGs opened with ``with DAG(...)``: tasks created inside the block
  join the innermost one;
* the registry of the current import: while the DAG loader imports a file, every
  DAG created is appended to it, so DAGs built inside functions or ``with`` blocks
  are found even when no module global refers to them.
"""

from __future__ import annotations

import datetime as dt
import difflib
import enum
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from headwater.clock import ensure_utc
from headwater.errors import DagDefinitionError, TaskNotFoundError
from headwater.orchestration.params import MASK, Param, params_schema, resolve_dag_params
from headwater.orchestration.spec import DagSpec

if TYPE_CHECKING:
    from headwater.orchestration.baseoperator import BaseOperator
    from headwater.orchestration.taskgroup import TaskGroup

MAX_ID_LENGTH = 250
DEFAULT_OWNER = "headwater"
_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Unset(enum.Enum):
    UNSET = "unset"


UNSET = _Unset.UNSET
"""Marks an argument the user did not pass (``None`` is a meaningful schedule)."""

ScheduleArg = str | dt.timedelta | None

# Airflow DAG arguments that only affect its web UI: accepted and kept in ``airflow_args``.
IGNORED_AIRFLOW_DAG_ARGS = frozenset(
    {"default_view", "orientation", "access_control", "owner_links", "dag_display_name", "auto_register"}
)
# Airflow DAG arguments with a different spelling or no equivalent here: argument -> what to do.
UNSUPPORTED_AIRFLOW_DAG_ARGS: dict[str, str] = {
    "concurrency": "use max_active_tasks= (Airflow renamed concurrency to it)",
    "timetable": "use schedule= with a cron expression, a preset or a timedelta",
    "on_failure_callback": "DAG-level callbacks are not run; set on_failure_callback in default_args",
    "on_success_callback": "DAG-level callbacks are not run; set on_success_callback in default_args",
    "sla_miss_callback": "SLAs are not supported",
    "render_template_as_native_obj": "templates always render to strings",
    "jinja_environment_kwargs": "the Jinja environment is fixed (StrictUndefined, keep_trailing_newline)",
}

_CURRENT_DAGS: ContextVar[tuple[DAG, ...]] = ContextVar("headwater_current_dags", default=())
_IMPORT_REGISTRY: ContextVar[list[DAG] | None] = ContextVar("headwater_dag_registry", default=None)


def validate_id(value: object, what: str) -> str:
    """Return ``value`` if it is a valid DAG or task id, else raise :class:`DagDefinitionError`."""
    if not isinstance(value, str) or not value:
        raise DagDefinitionError(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise DagDefinitionError(f"{what} {value[:40]!r}... is {len(value)} characters long (max {MAX_ID_LENGTH})")
    if not _ID_RE.match(value):
        bad = sorted({c for c in value if not (c.isascii() and (c.isalnum() or c in "_.-"))})
        raise DagDefinitionError(
            f"{what} {value!r} contains characters that are not allowed: {', '.join(repr(c) for c in bad)}",
            hint="use only letters, digits, '_', '.' and '-'",
        )
    return value


def current_dag() -> DAG | None:
    """The innermost DAG opened with ``with DAG(...)`` in this context, if any."""
    stack = _CURRENT_DAGS.get()
    return stack[-1] if stack else None


@contextmanager
def collecting_dags() -> Iterator[list[DAG]]:
    """Record every DAG created inside the block (used by the DAG loader)."""
    found: list[DAG] = []
    token = _IMPORT_REGISTRY.set(found)
    try:
        yield found
    finally:
        _IMPORT_REGISTRY.reset(token)


def suggest(name: str, candidates: Iterable[str]) -> str:
    """A " Did you mean ...?" suffix naming the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def to_utc(value: object, what: str) -> dt.datetime | None:
    """Check a user's datetime argument; naive datetimes are taken as UTC."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return ensure_utc(value)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    raise DagDefinitionError(f"{what} must be a datetime, got {type(value).__name__} {value!r}")


def to_timedelta(value: object, what: str, *, allow_none: bool = True) -> dt.timedelta | None:
    """Accept a ``timedelta`` or a number of seconds (as Airflow does)."""
    if value is None and allow_none:
        return None
    if isinstance(value, dt.timedelta):
        delta = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        delta = dt.timedelta(seconds=value)
    else:
        raise DagDefinitionError(f"{what} must be a timedelta or a number of seconds, got {value!r}")
    if delta.total_seconds() < 0:
        raise DagDefinitionError(f"{what} must not be negative, got {value!r}")
    return delta


def _caller_location() -> tuple[str, int]:
    """File and line of the first frame outside the headwater package (where the user wrote the DAG)."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        inside = os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep)
        if not inside and not filename.startswith("<frozen"):
            return filename, frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return "", 0


class DAG:
    """A directed acyclic graph of tasks and when to run it (Airflow 2's ``DAG``).

    ``schedule`` (or its older name ``schedule_interval``, not both) is a cron
    expression, a preset such as ``"@daily"``, a ``timedelta``, ``"@once"`` or
    ``None`` (manual runs only); left unset it is one day, as in Airflow 2.
    ``default_args`` apply to every task that does not set the argument itself.
    Use as a context manager so tasks created in the block join the DAG.
    """

    def __init__(
        self,
        dag_id: str,
        description: str | None = None,
        *,
        schedule: ScheduleArg | _Unset = UNSET,
        schedule_interval: ScheduleArg | _Unset = UNSET,
        start_date: dt.datetime | None = None,
        end_date: dt.datetime | None = None,
        catchup: bool = False,
        default_args: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        max_active_runs: int = 16,
        max_active_tasks: int = 16,
        is_paused_upon_creation: bool = False,
        doc_md: str | None = None,
        dagrun_timeout: dt.timedelta | None = None,
        template_searchpath: str | Iterable[str] | None = None,
        user_defined_macros: dict[str, Any] | None = None,
        user_defined_filters: dict[str, Callable[..., Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.dag_id = validate_id(dag_id, "dag_id")
        self.airflow_args = {k: kwargs.pop(k) for k in list(kwargs) if k in IGNORED_AIRFLOW_DAG_ARGS}
        if kwargs:
            self._reject_kwargs(kwargs)
        from headwater.orchestration.schedules import normalize_schedule

        if schedule is not UNSET and schedule_interval is not UNSET:
            raise DagDefinitionError(
                f"DAG {dag_id!r} sets both schedule and schedule_interval",
                hint="pass only schedule= (schedule_interval is its older name)",
            )
        raw = schedule if schedule is not UNSET else schedule_interval
        self.schedule: str | None = normalize_schedule(dt.timedelta(days=1) if raw is UNSET else raw)
        if default_args is not None and not isinstance(default_args, dict):
            raise DagDefinitionError(f"default_args of DAG {dag_id!r} must be a dict, got {default_args!r}")
        self.default_args: dict[str, Any] = dict(default_args or {})
        self.description = description
        self.start_date = to_utc(
            start_date if start_date is not None else self.default_args.get("start_date"), "start_date"
        )
        self.end_date = to_utc(end_date if end_date is not None else self.default_args.get("end_date"), "end_date")
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise DagDefinitionError(
                f"DAG {dag_id!r} ends ({self.end_date.isoformat()}) before it starts ({self.start_date.isoformat()})"
            )
        self.catchup = bool(catchup)
        if params is not None and not isinstance(params, dict):
            raise DagDefinitionError(f"params of DAG {dag_id!r} must be a dict, got {params!r}")
        # ``params`` holds plain values (what templates and tasks see, as Airflow's ParamsDict
        # gives); ``param_specs`` the Param behind each one. A bad default fails the import here.
        self.params: dict[str, Any]
        self.param_specs: dict[str, Param]
        self.params, self.param_specs = resolve_dag_params(dag_id, params or {})
        if isinstance(tags, str):
            raise DagDefinitionError(f"tags of DAG {dag_id!r} must be a list of strings, not one string")
        self.tags: list[str] = [str(t) for t in tags or ()]
        self.max_active_runs = _positive_int(max_active_runs, "max_active_runs", dag_id)
        self.max_active_tasks = _positive_int(max_active_tasks, "max_active_tasks", dag_id)
        self.is_paused_upon_creation = bool(is_paused_upon_creation)
        self.doc_md = doc_md
        self.dagrun_timeout = to_timedelta(dagrun_timeout, "dagrun_timeout")
        if isinstance(template_searchpath, str):
            template_searchpath = [template_searchpath]
        self.template_searchpath: list[str] = list(template_searchpath or ())
        self.user_defined_macros: dict[str, Any] = dict(user_defined_macros or {})
        self.user_defined_filters: dict[str, Callable[..., Any]] = dict(user_defined_filters or {})
        self.task_dict: dict[str, BaseOperator] = {}
        self.task_groups: dict[str, TaskGroup] = {}  # group_id -> group (see taskgroup.py)
        self.fileloc, self.lineno = _caller_location()
        self._tokens: list[Token[tuple[DAG, ...]]] = []
        registry = _IMPORT_REGISTRY.get()
        if registry is not None:
            registry.append(self)

    def _reject_kwargs(self, kwargs: dict[str, Any]) -> None:
        import inspect

        known = [p for p in inspect.signature(DAG.__init__).parameters if p not in ("self", "kwargs")]
        name = sorted(kwargs)[0]
        if name in UNSUPPORTED_AIRFLOW_DAG_ARGS:
            raise DagDefinitionError(
                f"DAG {self.dag_id!r}: argument {name!r} is not supported",
                hint=UNSUPPORTED_AIRFLOW_DAG_ARGS[name],
            )
        raise DagDefinitionError(
            f"DAG {self.dag_id!r} got an unknown argument {name!r}.{suggest(name, known)}",
            hint=f"DAG accepts: {', '.join(known)}",
        )

    # -- context manager
    def __enter__(self) -> DAG:
        self._tokens.append(_CURRENT_DAGS.set((*_CURRENT_DAGS.get(), self)))
        return self

    def __exit__(self, *exc: object) -> None:
        _CURRENT_DAGS.reset(self._tokens.pop())

    def __repr__(self) -> str:
        return f"<DAG: {self.dag_id}>"

    # -- tasks
    @property
    def schedule_interval(self) -> str | None:
        """Airflow's older name for :attr:`schedule` (the normalised value)."""
        return self.schedule

    @property
    def tasks(self) -> list[BaseOperator]:
        """Tasks in the order they were added."""
        return list(self.task_dict.values())

    @property
    def task_ids(self) -> list[str]:
        return list(self.task_dict)

    @property
    def owner(self) -> str:
        """The task owners joined by ", " (as Airflow shows it), else the default owner."""
        owners = sorted({t.owner for t in self.task_dict.values()})
        if owners:
            return ", ".join(owners)
        return str(self.default_args.get("owner", DEFAULT_OWNER))

    def has_task(self, task_id: str) -> bool:
        return task_id in self.task_dict

    def get_task(self, task_id: str) -> BaseOperator:
        """The task with this id; :class:`TaskNotFoundError` (with a suggestion) otherwise."""
        try:
            return self.task_dict[task_id]
        except KeyError:
            raise TaskNotFoundError(
                f"DAG {self.dag_id!r} has no task {task_id!r}.{suggest(task_id, self.task_dict)}",
                hint=f"tasks are: {', '.join(self.task_dict) or '(none)'}",
            ) from None

    def add_task(self, task: BaseOperator) -> None:
        """Add ``task`` (called by the task itself; users pass ``dag=`` or use ``with``)."""
        existing = self.task_dict.get(task.task_id)
        if existing is task:
            return
        if existing is not None:
            raise DagDefinitionError(
                f"task_id {task.task_id!r} is used twice in DAG {self.dag_id!r}",
                hint="give each task a unique task_id",
            )
        if self.schedule not in (None, "@once") and self.start_date is None and task.start_date is None:
            raise DagDefinitionError(
                f"DAG {self.dag_id!r} has schedule {self.schedule!r} but neither it nor task "
                f"{task.task_id!r} has a start_date",
                hint="pass start_date= to the DAG (or in default_args), or schedule=None for manual runs",
            )
        self.task_dict[task.task_id] = task
        task._dag = self

    def add_tasks(self, tasks: Iterable[BaseOperator]) -> None:
        for task in tasks:
            self.add_task(task)

    @property
    def roots(self) -> list[BaseOperator]:
        """Tasks without upstream tasks."""
        return [t for t in self.task_dict.values() if not t.upstream_task_ids]

    @property
    def leaves(self) -> list[BaseOperator]:
        """Tasks without downstream tasks."""
        return [t for t in self.task_dict.values() if not t.downstream_task_ids]

    def topological_sort(self) -> list[BaseOperator]:
        """Tasks with each one after all of its upstream tasks, stable by definition order."""
        indegree = {tid: len(t.upstream_task_ids) for tid, t in self.task_dict.items()}
        ready = [tid for tid, n in indegree.items() if n == 0]
        order: list[BaseOperator] = []
        while ready:
            task = self.task_dict[ready.pop(0)]
            order.append(task)
            for down in task.downstream_list:
                indegree[down.task_id] -= 1
                if indegree[down.task_id] == 0:
                    ready.append(down.task_id)
        return order

    # -- specs
    def to_spec(self, fileloc: str = "", source_hash: str = "") -> DagSpec:
        """The plain-data scheduling facts of this DAG (what the scheduler stores)."""
        try:
            json.dumps(self.params)
        except (TypeError, ValueError) as exc:
            raise DagDefinitionError(
                f"params of DAG {self.dag_id!r} must be JSON values: {exc}",
                hint="use strings, numbers, booleans, lists and dicts in params",
            ) from None
        import dataclasses

        groups_of = {tid: group.path for group in self.task_groups.values() for tid in group.task_ids}
        return DagSpec(
            dag_id=self.dag_id,
            tasks={
                tid: dataclasses.replace(task.to_spec(), groups=groups_of[tid]) if tid in groups_of else task.to_spec()
                for tid, task in self.task_dict.items()
            },
            fileloc=fileloc or self.fileloc,
            description=self.description,
            schedule=self.schedule,
            start_date=self.start_date,
            end_date=self.end_date,
            catchup=self.catchup,
            max_active_runs=self.max_active_runs,
            max_active_tasks=self.max_active_tasks,
            tags=tuple(self.tags),
            owner=self.owner,
            # Secret defaults stay in the DAG file: the stored spec (served to the CLI and
            # the web UI) only says there is one.
            params={k: MASK if self.param_specs[k].secret and v not in (None, "") else v
                    for k, v in self.params.items()},
            params_schema=params_schema(self.param_specs),
            task_groups={
                gid: {"tooltip": g.tooltip, "parent": g.parent_group.group_id if g.parent_group else None}
                for gid, g in self.task_groups.items()
            },
            is_paused_upon_creation=self.is_paused_upon_creation,
            source_hash=source_hash,
            dagrun_timeout=self.dagrun_timeout.total_seconds() if self.dagrun_timeout else None,
        )


def _positive_int(value: object, what: str, dag_id: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise DagDefinitionError(f"{what} of DAG {dag_id!r} must be a positive integer, got {value!r}")
    return value
