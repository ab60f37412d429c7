"""``BaseOperator``: one task of a DAG, its arguments, and its dependencies.

Arguments work as in Airflow 2: everything is passed by keyword; an argument the
task does not set is taken from the DAG's ``default_args`` (only arguments the
operator's ``__init__`` accepts are taken); an unknown argument is an error with
a suggestion. Dependencies are set with ``>>``/``<<`` (operators, lists, and
TaskFlow ``XComArg``s on either side), :func:`chain` and :func:`cross_downstream`.
A dependency that would close a cycle is rejected at once, naming the cycle.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import itertools
import logging
import re
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from weakref import WeakKeyDictionary

from headwater.errors import CycleError, DagDefinitionError
from headwater.orchestration.dag import (
    DAG,
    DEFAULT_OWNER,
    current_dag,
    suggest,
    to_timedelta,
    to_utc,
    validate_id,
)
from headwater.orchestration.spec import DEFAULT_POOL, TaskSpec
from headwater.orchestration.states import TriggerRule
from headwater.orchestration.taskgroup import DependencyMixin, current_group

if TYPE_CHECKING:
    from headwater.orchestration.context import Context

TASK_LOGGER = "headwater.task"

# Airflow arguments that only affect its UI or its e-mail/queue features; they are
# accepted (so Airflow code runs unchanged) and kept in ``airflow_args``, not used.
IGNORED_AIRFLOW_ARGS = frozenset(
    {
        "email",
        "email_on_failure",
        "email_on_retry",
        "queue",
        "priority_weight",
        "weight_rule",
        "executor_config",
        "doc",
        "doc_rst",
        "doc_json",
        "doc_yaml",
        "task_display_name",
        "run_as_user",
    }
)

_PARAMS_CACHE: WeakKeyDictionary[type, frozenset[str]] = WeakKeyDictionary()
_F = TypeVar("_F", bound=Callable[..., None])


def accepted_arguments(cls: type) -> frozenset[str]:
    """Names every ``__init__`` in ``cls``'s operator hierarchy accepts by keyword."""
    cached = _PARAMS_CACHE.get(cls)
    if cached is not None:
        return cached
    names: set[str] = set(IGNORED_AIRFLOW_ARGS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or not (isinstance(klass, type) and issubclass(klass, BaseOperator)):
            continue
        init = getattr(init, "__wrapped__", init)
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self":
                names.add(p.name)
    result = frozenset(names)
    _PARAMS_CACHE[cls] = result
    return result


def _apply_defaults(init: _F) -> _F:
    """Wrap an operator ``__init__`` so ``default_args`` fill the arguments not passed.

    Only the outermost ``__init__`` call (the class the user instantiated) merges
    defaults; ``super().__init__`` calls pass straight through. When the outermost
    call returns, XComArgs found in template fields become upstream dependencies.
    """

    @functools.wraps(init)
    def wrapper(self: BaseOperator, *args: Any, **kwargs: Any) -> None:
        outermost = not self.__dict__.get("_hw_in_init", False)
        group = None
        if outermost:
            self.__dict__["_hw_in_init"] = True
            dag = kwargs.get("dag") or current_dag()
            defaults: dict[str, Any] = dict(dag.default_args) if isinstance(dag, DAG) else {}
            group = kwargs.pop("task_group", None) or current_group(dag if isinstance(dag, DAG) else None)
            if group is not None:
                # Inside ``with TaskGroup``: the group's default_args win over the DAG's, and
                # the id gets the group's prefix (``extract.load``).
                defaults.update(group.default_args)
                if isinstance(kwargs.get("task_id"), str):
                    kwargs["task_id"] = group.child_id(kwargs["task_id"])
            defaults.update(kwargs.pop("default_args", None) or {})
            accepted = accepted_arguments(type(self))
            for key, value in defaults.items():
                if key in accepted and key not in kwargs and key != "dag":
                    kwargs[key] = value
        try:
            init(self, *args, **kwargs)
        except TypeError as exc:
            if outermost and _MISSING_RE.search(str(exc)):
                raise _missing_argument_error(type(self), kwargs, str(exc)) from None
            raise
        finally:
            if outermost:
                self.__dict__["_hw_in_init"] = False
        if outermost:
            if group is not None and self._dag is group.dag:
                group.add(self)
            self._set_xcomarg_dependencies()

    return wrapper  # type: ignore[return-value]


_MISSING_RE = re.compile(r"missing \d+ required (?:keyword-only |positional )?arguments?: (.*)$")


def _missing_argument_error(cls: type, kwargs: dict[str, Any], message: str) -> DagDefinitionError:
    """Python's "missing required argument" as a DagDefinitionError, with suggestions for misspelt ones."""
    match = _MISSING_RE.search(message)
    missing = match.group(1) if match else message
    accepted = accepted_arguments(cls)
    unknown = [k for k in kwargs if k not in accepted]
    hints = "".join(suggest(k, accepted) for k in unknown)
    extra = f" Unknown argument{'s' if len(unknown) > 1 else ''}: {', '.join(map(repr, unknown))}." if unknown else ""
    return DagDefinitionError(
        f"{cls.__name__} {kwargs.get('task_id', '')!r} is missing required argument {missing}.{extra}{hints}"
    )


class BaseOperator(DependencyMixin):
    """Base of every task. Subclasses implement :meth:`execute`.

    ``template_fields`` names attributes rendered with Jinja before ``execute``;
    a string value ending with one of ``template_ext`` is read as a template file
    found next to the DAG file. ``outputs`` are Luigi-style targets (objects with
    ``exists()`` and ``render(context)``): when all exist the task is complete and
    is not run again unless forced.
    """

    template_fields: Sequence[str] = ()
    template_ext: Sequence[str] = ()
    # Name shown for the operator (TaskFlow tasks show "@task"); None: the class name.
    custom_operator_name: ClassVar[str | None] = None
    # EmptyOperator sets this; the scheduler may then mark it done without a worker.
    is_empty_operator: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _apply_defaults(cls.__dict__["__init__"])  # type: ignore[method-assign]

    def __init__(
        self,
        *,
        task_id: str,
        dag: DAG | None = None,
        owner: str = DEFAULT_OWNER,
        retries: int = 0,
        retry_delay: dt.timedelta | float = dt.timedelta(minutes=5),
        retry_exponential_backoff: bool = False,
        max_retry_delay: dt.timedelta | float | None = None,
        execution_timeout: dt.timedelta | float | None = None,
        trigger_rule: TriggerRule | str = TriggerRule.ALL_SUCCESS,
        pool: str | None = None,
        pool_slots: int = 1,
        depends_on_past: bool = False,
        start_date: dt.datetime | None = None,
        end_date: dt.datetime | None = None,
        params: dict[str, Any] | None = None,
        outputs: Any = None,
        doc_md: str | None = None,
        do_xcom_push: bool = True,
        multiple_outputs: bool = False,
        on_execute_callback: Callable[..., Any] | list[Callable[..., Any]] | None = None,
        on_success_callback: Callable[..., Any] | list[Callable[..., Any]] | None = None,
        on_failure_callback: Callable[..., Any] | list[Callable[..., Any]] | None = None,
        on_retry_callback: Callable[..., Any] | list[Callable[..., Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.task_id = validate_id(task_id, "task_id")
        self.airflow_args = {k: kwargs.pop(k) for k in list(kwargs) if k in IGNORED_AIRFLOW_ARGS}
        if kwargs:
            self._reject_kwargs(kwargs)
        self.owner = str(owner)
        self.retries = self._non_negative_int(retries, "retries")
        self.retry_delay = to_timedelta(retry_delay, f"retry_delay of task {task_id!r}", allow_none=False)
        self.retry_exponential_backoff = bool(retry_exponential_backoff)
        self.max_retry_delay = to_timedelta(max_retry_delay, f"max_retry_delay of task {task_id!r}")
        self.execution_timeout = to_timedelta(execution_timeout, f"execution_timeout of task {task_id!r}")
        self.trigger_rule = self._check_trigger_rule(trigger_rule)
        self.pool = pool or DEFAULT_POOL
        self.pool_slots = self._non_negative_int(pool_slots, "pool_slots")
        if self.pool_slots < 1:
            raise DagDefinitionError(f"pool_slots of task {task_id!r} must be at least 1, got {pool_slots!r}")
        self.depends_on_past = bool(depends_on_past)
        self.start_date = to_utc(start_date, f"start_date of task {task_id!r}")
        self.end_date = to_utc(end_date, f"end_date of task {task_id!r}")
        if params is not None and not isinstance(params, dict):
            raise DagDefinitionError(f"params of task {task_id!r} must be a dict, got {params!r}")
        self.params: dict[str, Any] = dict(params or {})
        self.outputs: list[Any] = self._check_outputs(outputs)
        self.doc_md = doc_md
        self.do_xcom_push = bool(do_xcom_push)
        self.multiple_outputs = bool(multiple_outputs)
        self.on_execute_callback = on_execute_callback
        self.on_success_callback = on_success_callback
        self.on_failure_callback = on_failure_callback
        self.on_retry_callback = on_retry_callback
        self._upstream: dict[str, BaseOperator] = {}
        self._downstream: dict[str, BaseOperator] = {}
        self._dag: DAG | None = None
        dag = dag if dag is not None else current_dag()
        if dag is not None:
            if not isinstance(dag, DAG):
                raise DagDefinitionError(f"dag of task {task_id!r} must be a DAG, got {dag!r}")
            dag.add_task(self)

    # -- argument checks
    def _reject_kwargs(self, kwargs: dict[str, Any]) -> None:
        names = sorted(kwargs)
        accepted = sorted(accepted_arguments(type(self)) - IGNORED_AIRFLOW_ARGS)
        hints = "".join(suggest(n, accepted) for n in names)
        plural = "s" if len(names) > 1 else ""
        raise DagDefinitionError(
            f"{type(self).__name__} {self.task_id!r} got unknown argument{plural} "
            f"{', '.join(repr(n) for n in names)}.{hints}",
            hint=f"{type(self).__name__} accepts: {', '.join(accepted)}",
        )

    def _non_negative_int(self, value: object, what: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DagDefinitionError(f"{what} of task {self.task_id!r} must be a whole number >= 0, got {value!r}")
        return value

    def _check_trigger_rule(self, value: object) -> TriggerRule:
        if isinstance(value, TriggerRule):
            return value
        try:
            return TriggerRule(str(value))
        except ValueError:
            valid = ", ".join(r.value for r in TriggerRule)
            raise DagDefinitionError(
                f"task {self.task_id!r} has an invalid trigger_rule {value!r}."
                f"{suggest(str(value), [r.value for r in TriggerRule])}",
                hint=f"valid trigger rules: {valid}",
            ) from None

    def _check_outputs(self, outputs: Any) -> list[Any]:
        if outputs is None:
            return []
        items = list(outputs) if isinstance(outputs, list | tuple) else [outputs]
        for item in items:
            if not callable(getattr(item, "exists", None)):
                raise DagDefinitionError(
                    f"outputs of task {self.task_id!r} must be targets (objects with exists()), got {item!r}",
                    hint="use e.g. LocalTarget('data/{{ ds }}.csv')",
                )
        return items

    def _set_xcomarg_dependencies(self) -> None:
        """Make tasks whose results feed this one's templated arguments its upstream tasks."""
        for field_name in self.template_fields:
            for op in _find_xcomarg_operators(getattr(self, field_name, None)):
                if op is not self:
                    self.set_upstream(op)

    # -- identity
    @property
    def dag(self) -> DAG:
        """The DAG of this task; an error if it has none yet."""
        if self._dag is None:
            raise DagDefinitionError(
                f"task {self.task_id!r} is not in a DAG",
                hint="create it inside 'with DAG(...)', pass dag=, or link it to a task of a DAG",
            )
        return self._dag

    @dag.setter
    def dag(self, dag: DAG) -> None:
        if self._dag is not None and self._dag is not dag:
            raise DagDefinitionError(
                f"task {self.task_id!r} is already in DAG {self._dag.dag_id!r}; it cannot move to {dag.dag_id!r}"
            )
        dag.add_task(self)

    def has_dag(self) -> bool:
        return self._dag is not None

    @property
    def dag_id(self) -> str:
        return self._dag.dag_id if self._dag is not None else f"adhoc_{self.owner}"

    @property
    def operator_name(self) -> str:
        return self.custom_operator_name or type(self).__name__

    @property
    def log(self) -> logging.Logger:
        """The task logger; while a try runs its records go to the try's log file."""
        return logging.getLogger(TASK_LOGGER)

    def __repr__(self) -> str:
        return f"<Task({type(self).__name__}): {self.task_id}>"

    # -- running
    @abstractmethod
    def execute(self, context: Context) -> Any:
        """Do the task's work; the return value becomes the ``return_value`` XCom."""

    def skip_tasks(self, context: Context, task_ids: Iterable[str]) -> None:
        """Ask the scheduler to skip ``task_ids`` of this run once this try succeeds."""
        context["ti"].skip(task_ids)

    # -- dependencies
    @property
    def upstream_list(self) -> list[BaseOperator]:
        return list(self._upstream.values())

    @property
    def downstream_list(self) -> list[BaseOperator]:
        return list(self._downstream.values())

    @property
    def upstream_task_ids(self) -> set[str]:
        return set(self._upstream)

    @property
    def downstream_task_ids(self) -> set[str]:
        return set(self._downstream)

    def get_flat_relative_ids(self, *, upstream: bool = False) -> set[str]:
        """Ids of all tasks upstream (or downstream) of this one, directly or not."""
        seen: set[str] = set()
        stack = [self]
        while stack:
            task = stack.pop()
            for rel in (task._upstream if upstream else task._downstream).values():
                if rel.task_id not in seen:
                    seen.add(rel.task_id)
                    stack.append(rel)
        return seen

    def set_upstream(self, other: Any) -> None:
        """Make ``other`` (a task, an XComArg, a TaskGroup or a list of them) run before this task."""
        for op in operators_of(other, end="leaves"):
            _add_edge(op, self)

    def set_downstream(self, other: Any) -> None:
        """Make ``other`` (a task, an XComArg, a TaskGroup or a list of them) run after this task."""
        for op in operators_of(other, end="roots"):
            _add_edge(self, op)

    # -- spec
    def to_spec(self) -> TaskSpec:
        """The plain-data scheduling facts of this task."""
        return TaskSpec(
            task_id=self.task_id,
            operator=self.operator_name,
            upstream=tuple(self._upstream),
            trigger_rule=self.trigger_rule,
            retries=self.retries,
            retry_delay=_seconds(self.retry_delay) or 0.0,
            retry_exponential_backoff=self.retry_exponential_backoff,
            max_retry_delay=_seconds(self.max_retry_delay),
            execution_timeout=_seconds(self.execution_timeout),
            pool=self.pool,
            pool_slots=self.pool_slots,
            depends_on_past=self.depends_on_past,
            owner=self.owner,
            start_date=self.start_date,
            end_date=self.end_date,
            has_outputs=bool(self.outputs),
            is_empty=self.is_empty_operator
            and not self.outputs
            and self.on_execute_callback is None
            and self.on_success_callback is None,
            doc=self.doc_md,
        )


def _seconds(value: dt.timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def operators_of(value: Any, *, end: str = "roots") -> list[BaseOperator]:
    """The tasks named by a task, an XComArg, a TaskGroup, or a (nested) list/tuple/set of them.

    A TaskGroup stands for its ``roots`` when it is the downstream side of a
    dependency and for its ``leaves`` when it is the upstream side (``end``).
    """
    if isinstance(value, BaseOperator):
        return [value]
    edge_tasks = getattr(value, "edge_tasks", None)
    if callable(edge_tasks):
        return list(edge_tasks(end))
    op = getattr(value, "operator", None)
    if isinstance(op, BaseOperator):
        return [op]
    if isinstance(value, list | tuple | set | frozenset):
        out: list[BaseOperator] = []
        for item in value:
            out.extend(operators_of(item, end=end))
        return out
    raise DagDefinitionError(
        f"cannot set a dependency on {type(value).__name__} {value!r}",
        hint="dependencies link tasks, TaskFlow results, or lists of them",
    )


def _find_xcomarg_operators(value: Any) -> list[BaseOperator]:
    """Tasks whose XComArgs appear anywhere inside ``value`` (lists, tuples, dicts)."""
    if isinstance(value, BaseOperator):
        return []
    op = getattr(value, "operator", None)
    if isinstance(op, BaseOperator) and callable(getattr(value, "resolve", None)):
        return [op]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple | set | frozenset):
        out: list[BaseOperator] = []
        for item in value:
            out.extend(_find_xcomarg_operators(item))
        return out
    return []


def _join_dags(a: BaseOperator, b: BaseOperator) -> None:
    """Put two tasks being linked in the same DAG, or refuse if they are in different ones."""
    if a._dag is not None and b._dag is not None and a._dag is not b._dag:
        raise DagDefinitionError(
            f"cannot link task {a.task_id!r} of DAG {a._dag.dag_id!r} with task {b.task_id!r} of DAG {b._dag.dag_id!r}",
            hint="a task can only depend on tasks of its own DAG",
        )
    dag = a._dag or b._dag
    if dag is None:
        return
    # A task without a DAG joins the DAG of the first task it is linked with, and so
    # do the DAG-less tasks already linked to it.
    stack = [t for t in (a, b) if t._dag is None]
    while stack:
        task = stack.pop()
        if task._dag is None:
            dag.add_task(task)
            stack.extend(t for t in (*task._upstream.values(), *task._downstream.values()) if t._dag is None)


def _add_edge(up: BaseOperator, down: BaseOperator) -> None:
    """Record ``up >> down``, refusing an edge that closes a cycle."""
    if up is down:
        raise CycleError(
            f"task {up.task_id!r} cannot depend on itself: {up.task_id} >> {up.task_id}",
            hint="remove the dependency of the task on itself",
        )
    if up._downstream.get(down.task_id) is down:
        return
    for rel, other in ((up._downstream, down), (down._upstream, up)):
        if other.task_id in rel and rel[other.task_id] is not other:
            raise DagDefinitionError(f"two different tasks are named {other.task_id!r}", hint="rename one of them")
    path = _path(down, up)
    if path:
        cycle = " >> ".join(t.task_id for t in [*path, down])
        raise CycleError(
            f"dependency {up.task_id} >> {down.task_id} would create a cycle: {cycle}",
            hint="remove one of the dependencies in the cycle",
        )
    _join_dags(up, down)
    up._downstream[down.task_id] = down
    down._upstream[up.task_id] = up


def _path(start: BaseOperator, goal: BaseOperator) -> list[BaseOperator]:
    """A downstream path from ``start`` to ``goal`` (both included), or ``[]``."""
    if not start._downstream:
        return []
    parents: dict[int, BaseOperator | None] = {id(start): None}
    stack = [start]
    while stack:
        task = stack.pop()
        if task is goal:
            path: list[BaseOperator] = []
            node: BaseOperator | None = task
            while node is not None:
                path.append(node)
                node = parents[id(node)]
            return path[::-1]
        for nxt in task._downstream.values():
            if id(nxt) not in parents:
                parents[id(nxt)] = task
                stack.append(nxt)
    return []


def chain(*tasks: Any) -> None:
    """Link each element to the next: ``chain(a, [b, c], d)`` is ``a >> [b, c] >> d``.

    Two consecutive lists must have the same length and are linked pairwise
    (``chain([a, b], [c, d])`` is ``a >> c`` and ``b >> d``), as in Airflow.
    """
    for up, down in itertools.pairwise(tasks):
        up_is_list = isinstance(up, list | tuple)
        down_is_list = isinstance(down, list | tuple)
        if up_is_list and down_is_list:
            if len(up) != len(down):
                raise DagDefinitionError(
                    f"chain() got lists of different lengths next to each other ({len(up)} and {len(down)})",
                    hint="consecutive lists are linked pairwise and must be equally long; "
                    "use cross_downstream() to link every task of one list to every task of the other",
                )
            for u, d in zip(up, down, strict=True):
                for op in operators_of(u, end="leaves"):
                    op.set_downstream(d)
        else:
            for op in operators_of(up, end="leaves"):
                op.set_downstream(down)


def cross_downstream(from_tasks: Sequence[Any], to_tasks: Any) -> None:
    """Make every task of ``to_tasks`` depend on every task of ``from_tasks``."""
    for op in operators_of(list(from_tasks), end="leaves"):
        op.set_downstream(to_tasks)


# BaseOperator's own __init__ is wrapped here (subclasses are wrapped by
# __init_subclass__) so operators that do not define __init__ get default_args too.
BaseOperator.__init__ = _apply_defaults(BaseOperator.__init__)  # type: ignore[method-assign]
