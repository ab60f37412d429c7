"""Task groups (Airflow's ``TaskGroup`` and ``@task_group``): named boxes of tasks.

Inside ``with TaskGroup("extract"):`` every task created gets the group's id as a
prefix (``extract.load``; ``prefix_group_id=False`` turns it off), the group's
``default_args`` over the DAG's, and membership recorded in the DAG's spec so a UI
can draw the box. Groups nest. ``group >> task`` links the group's leaves (its tasks
with no downstream task inside it) and ``task >> group`` its roots, as in Airflow.
Groups only shape ids and edges at definition time; the scheduler sees plain tasks.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Self

from headwater.errors import DagDefinitionError
from headwater.orchestration.dag import DAG, current_dag

if TYPE_CHECKING:
    from headwater.orchestration.baseoperator import BaseOperator

_GROUP_ID_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_CURRENT_GROUPS: ContextVar[tuple[TaskGroup, ...]] = ContextVar("headwater_task_groups", default=())


def current_group(dag: DAG | None) -> TaskGroup | None:
    """The innermost open ``with TaskGroup`` block of ``dag``, if any."""
    for group in reversed(_CURRENT_GROUPS.get()):
        if group.dag is dag:
            return group
    return None


class DependencyMixin:
    """``>>`` and ``<<`` for anything with ``set_upstream``/``set_downstream`` (tasks and task groups).

    ``a >> b`` returns ``b`` so chains read left to right; ``[a, b] >> x`` lands in
    ``x.__rrshift__`` and returns ``x``.
    """

    def set_upstream(self, other: Any) -> None:
        raise NotImplementedError

    def set_downstream(self, other: Any) -> None:
        raise NotImplementedError

    def __rshift__(self, other: Any) -> Any:
        self.set_downstream(other)
        return other

    def __lshift__(self, other: Any) -> Any:
        self.set_upstream(other)
        return other

    def __rrshift__(self, other: Any) -> Self:
        self.set_upstream(other)
        return self

    def __rlshift__(self, other: Any) -> Self:
        self.set_downstream(other)
        return self


class TaskGroup(DependencyMixin):
    """A named group of tasks in a DAG; use as a context manager.

    ``TaskGroup(group_id, tooltip="", prefix_group_id=True, default_args=None,
    parent_group=None, dag=None)``. The DAG and the parent group default to the
    open ``with`` blocks.
    """

    def __init__(
        self,
        group_id: str,
        tooltip: str = "",
        *,
        prefix_group_id: bool = True,
        default_args: dict[str, Any] | None = None,
        parent_group: TaskGroup | None = None,
        dag: DAG | None = None,
        add_suffix_on_collision: bool = False,
        **ignored_ui_args: Any,
    ) -> None:
        if not isinstance(group_id, str) or not _GROUP_ID_RE.match(group_id):
            raise DagDefinitionError(
                f"group_id {group_id!r} is not valid",
                hint="use letters, digits, '_' and '-' ('.' separates a group from its tasks)",
            )
        unknown = set(ignored_ui_args) - {"ui_color", "ui_fgcolor"}
        if unknown:
            raise DagDefinitionError(
                f"TaskGroup {group_id!r} got an unknown argument {sorted(unknown)[0]!r}",
                hint="TaskGroup accepts: tooltip, prefix_group_id, default_args, parent_group, dag",
            )
        found = dag or (parent_group.dag if parent_group else None) or current_dag()
        if not isinstance(found, DAG):
            raise DagDefinitionError(
                f"TaskGroup {group_id!r} is not in a DAG",
                hint="create it inside 'with DAG(...)' (or a @dag function), or pass dag=",
            )
        if default_args is not None and not isinstance(default_args, dict):
            raise DagDefinitionError(f"default_args of TaskGroup {group_id!r} must be a dict, got {default_args!r}")
        self.dag: DAG = found
        self.parent_group = parent_group if parent_group is not None else current_group(found)
        self.prefix_group_id = bool(prefix_group_id)
        self.tooltip = str(tooltip or "")
        self._label = group_id
        if add_suffix_on_collision:
            self._label = self._free_label(group_id)
        self.group_id = self._full_id(self._label)
        if self.group_id in found.task_groups:
            raise DagDefinitionError(
                f"group_id {self.group_id!r} is used twice in DAG {found.dag_id!r}",
                hint="give each TaskGroup a unique group_id",
            )
        parent_args = self.parent_group.default_args if self.parent_group else {}
        self.default_args: dict[str, Any] = {**parent_args, **(default_args or {})}
        self.task_ids: list[str] = []
        self.children: list[TaskGroup] = []
        if self.parent_group is not None:
            self.parent_group.children.append(self)
        found.task_groups[self.group_id] = self
        self._tokens: list[Token[tuple[TaskGroup, ...]]] = []

    def _full_id(self, label: str) -> str:
        parent = self.parent_group
        return parent.child_id(label) if parent is not None else label

    def _free_label(self, label: str) -> str:
        taken = self.dag.task_groups
        if self._full_id(label) not in taken:
            return label
        n = 1
        while self._full_id(f"{label}__{n}") in taken:
            n += 1
        return f"{label}__{n}"

    def __repr__(self) -> str:
        return f"<TaskGroup: {self.group_id}>"

    def child_id(self, label: str) -> str:
        """The full id of a task or group called ``label`` inside this group (Airflow's rule)."""
        if self.prefix_group_id:
            return f"{self.group_id}.{label}"
        return self.parent_group.child_id(label) if self.parent_group is not None else label

    @property
    def path(self) -> tuple[str, ...]:
        """Group ids from the outermost group down to this one."""
        out: list[str] = []
        group: TaskGroup | None = self
        while group is not None:
            out.append(group.group_id)
            group = group.parent_group
        return tuple(reversed(out))

    # -- membership
    def add(self, task: BaseOperator) -> None:
        """Record ``task`` as a direct member (done when a task is created in the block)."""
        if task.task_id not in self.task_ids:
            self.task_ids.append(task.task_id)

    def all_task_ids(self) -> list[str]:
        """Ids of the tasks in this group and its nested groups."""
        out = list(self.task_ids)
        for child in self.children:
            out.extend(child.all_task_ids())
        return out

    def _tasks(self) -> list[BaseOperator]:
        ids = self.all_task_ids()
        if not ids:
            raise DagDefinitionError(
                f"TaskGroup {self.group_id!r} has no tasks to link",
                hint="create its tasks before setting dependencies on the group",
            )
        return [self.dag.task_dict[tid] for tid in ids if tid in self.dag.task_dict]

    @property
    def roots(self) -> list[BaseOperator]:
        """Tasks of the group with no upstream task inside the group."""
        inside = set(self.all_task_ids())
        return [t for t in self._tasks() if not t.upstream_task_ids & inside]

    @property
    def leaves(self) -> list[BaseOperator]:
        """Tasks of the group with no downstream task inside the group."""
        inside = set(self.all_task_ids())
        return [t for t in self._tasks() if not t.downstream_task_ids & inside]

    def edge_tasks(self, end: str) -> list[BaseOperator]:
        """``roots`` or ``leaves``: the tasks a dependency on the group links (used by ``>>``)."""
        return self.roots if end == "roots" else self.leaves

    # -- context manager
    def __enter__(self) -> TaskGroup:
        self._tokens.append(_CURRENT_GROUPS.set((*_CURRENT_GROUPS.get(), self)))
        return self

    def __exit__(self, *exc: object) -> None:
        _CURRENT_GROUPS.reset(self._tokens.pop())

    # -- dependencies
    def set_upstream(self, other: Any) -> None:
        """``other`` runs before the group's roots."""
        for task in self.roots:
            task.set_upstream(other)

    def set_downstream(self, other: Any) -> None:
        """``other`` runs after the group's leaves."""
        for task in self.leaves:
            task.set_downstream(other)



def task_group(
    python_callable: Callable[..., Any] | None = None,
    *,
    group_id: str | None = None,
    tooltip: str | None = None,
    prefix_group_id: bool = True,
    default_args: dict[str, Any] | None = None,
) -> Any:
    """Declare a function whose tasks form a group: ``@task_group`` or ``@task_group(group_id=...)``.

    Each call opens a new :class:`TaskGroup` (named after the function; later calls
    get ``__1``, ``__2`` ... as in Airflow), runs the function inside it and returns
    what the function returned, or the group when it returned nothing, so the call
    can be linked with ``>>``. The tooltip defaults to the function's docstring.
    """

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def factory(*args: Any, **kwargs: Any) -> Any:
            doc = (function.__doc__ or "").strip().splitlines()
            with TaskGroup(
                group_id or function.__name__,
                tooltip if tooltip is not None else (doc[0] if doc else ""),
                prefix_group_id=prefix_group_id,
                default_args=default_args,
                add_suffix_on_collision=True,
            ) as group:
                result = function(*args, **kwargs)
            return group if result is None else result

        return factory

    if python_callable is not None:
        return wrap(python_callable)
    return wrap
