"""TaskFlow: plain Python functions as tasks (``@task``) and DAGs (``@dag``).

Calling a ``@task`` function inside a DAG creates a task and returns an
:class:`XComArg`, a reference to its future result. Passing that reference to
another task makes it an upstream dependency; at run time the value is read from
the workload's inputs. The decorators only declare: nothing runs at import.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

from headwater.errors import DagDefinitionError, TaskFailNoRetryError
from headwater.orchestration.baseoperator import BaseOperator
from headwater.orchestration.context import RETURN_KEY
from headwater.orchestration.dag import DAG, current_dag
from headwater.orchestration.operators import BranchPythonOperator, PythonOperator, ShortCircuitOperator
from headwater.orchestration.params import Param
from headwater.orchestration.taskgroup import current_group
from headwater.orchestration.templating import Resolvable

_MISSING = object()

# ``@task.<kind>`` decorators provided by other modules, imported on first use:
# kind -> (module, operator class). The class must accept ``python_callable``,
# ``op_args``, ``op_kwargs`` and ``multiple_outputs`` like PythonOperator.
EXTRA_TASK_KINDS: Mapping[str, tuple[str, str]] = {
    "sensor": ("headwater.orchestration.sensors", "DecoratedSensorOperator"),
}


class XComArg(Resolvable):
    """The future result of a task: ``key`` of its XComs (``return_value`` by default).

    ``arg["name"]`` refers to one key of a task with ``multiple_outputs``.
    ``>>``/``<<`` set dependencies on the producing task.
    """

    def __init__(self, operator: BaseOperator, key: str = RETURN_KEY) -> None:
        self.operator = operator
        self.key = key

    def __repr__(self) -> str:
        return f"XComArg({self.operator.task_id!r}, key={self.key!r})"

    def __getitem__(self, key: str) -> XComArg:
        return XComArg(self.operator, str(key))

    def __iter__(self) -> typing.Iterator[Any]:
        # Without this, __getitem__ would make the object look iterable forever.
        raise TypeError(
            f"the result of task {self.operator.task_id!r} is not known while the DAG is defined; "
            "it cannot be iterated. Pass it to another task instead."
        )

    def __bool__(self) -> bool:
        return True

    def resolve(self, context: Mapping[str, Any]) -> Any:
        value = context["ti"].xcom_pull(task_ids=self.operator.task_id, key=self.key, default=_MISSING)
        if value is _MISSING:
            hint = ""
            if getattr(self.operator, "outputs", None):
                hint = (
                    "; a task whose outputs already exist is 'already complete', does not run and returns "
                    "nothing: read its output targets here instead, or run with --force"
                )
            raise TaskFailNoRetryError(
                f"result {self.key!r} of task {self.operator.task_id!r} was not found for run "
                f"{context['run_id']!r}{hint}"
            )
        return value

    # dependencies go to the producing task
    def set_upstream(self, other: Any) -> None:
        self.operator.set_upstream(other)

    def set_downstream(self, other: Any) -> None:
        self.operator.set_downstream(other)

    def __rshift__(self, other: Any) -> Any:
        self.operator.set_downstream(other)
        return other

    def __lshift__(self, other: Any) -> Any:
        self.operator.set_upstream(other)
        return other

    def __rrshift__(self, other: Any) -> XComArg:
        self.operator.set_upstream(other)
        return self

    def __rlshift__(self, other: Any) -> XComArg:
        self.operator.set_downstream(other)
        return self


class DagParam(Resolvable):
    """A parameter of a ``@dag`` function: at run time, the value of ``params[name]``."""

    def __init__(self, name: str, default: Any) -> None:
        self.name = name
        self.default = default.value if isinstance(default, Param) else default

    def __repr__(self) -> str:
        return f"DagParam({self.name!r})"

    def resolve(self, context: Mapping[str, Any]) -> Any:
        return context["params"].get(self.name, self.default)


def unique_task_id(dag: DAG, task_id: str) -> str:
    """``task_id``, or ``task_id__N`` with the next free N when the DAG already has it (Airflow's rule)."""
    if task_id not in dag.task_dict:
        return task_id
    core = re.sub(r"__\d+$", "", task_id)
    pattern = re.compile(rf"^{re.escape(core)}__(\d+)$")
    used = [int(m.group(1)) for tid in dag.task_dict if (m := pattern.match(tid))]
    return f"{core}__{max(used, default=0) + 1}"


def _returns_dict(function: Callable[..., Any]) -> bool:
    """True when the return annotation is a dict (then ``multiple_outputs`` defaults to True)."""
    try:
        ret = typing.get_type_hints(function).get("return")
    except Exception:  # unresolvable annotations: no inference, as in Airflow
        return False
    origin = typing.get_origin(ret) or ret
    return origin is dict


class _PythonDecoratedOperator(PythonOperator):
    custom_operator_name = "@task"


class _BranchDecoratedOperator(BranchPythonOperator):
    custom_operator_name = "@task.branch"


class _ShortCircuitDecoratedOperator(ShortCircuitOperator):
    custom_operator_name = "@task.short_circuit"


class TaskDecorator:
    """A function declared as a task; calling it creates the task and returns its :class:`XComArg`."""

    def __init__(
        self, function: Callable[..., Any], operator_class: type[BaseOperator], kwargs: dict[str, Any]
    ) -> None:
        if not callable(function):
            raise DagDefinitionError(f"@task decorates functions, got {function!r}")
        functools.update_wrapper(self, function)
        self.function = function
        self.operator_class = operator_class
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"<task {self.function.__name__}>"

    def override(self, **kwargs: Any) -> TaskDecorator:
        """A copy with other task arguments: ``extract.override(task_id="extract_eu", retries=3)(...)``."""
        return TaskDecorator(self.function, self.operator_class, {**self.kwargs, **kwargs})

    def __call__(self, *args: Any, **kwargs: Any) -> XComArg:
        try:
            inspect.signature(self.function).bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise DagDefinitionError(f"task {self.function.__name__!r} called with wrong arguments: {exc}") from None
        options = dict(self.kwargs)
        dag = options.get("dag") or current_dag()
        task_id = options.pop("task_id", None) or self.function.__name__
        if isinstance(dag, DAG):
            # Inside a TaskGroup the operator adds the group prefix; the free id is looked
            # for with the prefix, as the DAG will hold it.
            group = options.get("task_group") or current_group(dag)
            prefix = group.child_id("") if group is not None else ""
            task_id = unique_task_id(dag, prefix + task_id)[len(prefix):]
        multiple_outputs = options.pop("multiple_outputs", None)
        if multiple_outputs is None:
            multiple_outputs = _returns_dict(self.function)
        doc = options.pop("doc_md", None) or inspect.getdoc(self.function)
        operator = self.operator_class(
            task_id=task_id,
            python_callable=self.function,
            op_args=args,
            op_kwargs=kwargs,
            multiple_outputs=multiple_outputs,
            doc_md=doc,
            **options,
        )
        return XComArg(operator)


def _decorator(
    operator_class: type[BaseOperator], python_callable: Callable[..., Any] | None, kwargs: dict[str, Any]
) -> Any:
    if python_callable is not None:
        return TaskDecorator(python_callable, operator_class, kwargs)

    def wrap(function: Callable[..., Any]) -> TaskDecorator:
        return TaskDecorator(function, operator_class, kwargs)

    return wrap


class _TaskDecoratorCollection:
    """``@task``, ``@task(...)``, ``@task.python``, ``@task.branch``, ``@task.short_circuit``."""

    def __call__(self, python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
        return _decorator(_PythonDecoratedOperator, python_callable, kwargs)

    def python(self, python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
        """Same as ``@task``."""
        return _decorator(_PythonDecoratedOperator, python_callable, kwargs)

    def branch(self, python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
        """The function returns the task id(s) to follow (a :class:`BranchPythonOperator`)."""
        return _decorator(_BranchDecoratedOperator, python_callable, kwargs)

    def short_circuit(self, python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
        """A falsy return value skips downstream tasks (a :class:`ShortCircuitOperator`)."""
        return _decorator(_ShortCircuitDecoratedOperator, python_callable, kwargs)

    def __getattr__(self, kind: str) -> Callable[..., Any]:
        if kind.startswith("_") or kind not in EXTRA_TASK_KINDS:
            raise AttributeError(f"there is no @task.{kind} decorator")
        module_name, class_name = EXTRA_TASK_KINDS[kind]
        try:
            operator_class = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            raise DagDefinitionError(f"@task.{kind} is not available in this version of headwater") from None

        def factory(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
            return _decorator(operator_class, python_callable, kwargs)

        return factory


task = _TaskDecoratorCollection()
"""Declare a function as a task: ``@task``, ``@task(retries=2)``, ``@task.branch``, ..."""


def dag(dag_id: str | Callable[..., Any] | None = None, **dag_kwargs: Any) -> Any:
    """Declare a function as a DAG; calling it builds and returns the :class:`DAG`.

    The function's parameters become DAG ``params`` (their defaults, or the values
    the call passes); inside the function they stand for the run's values and can
    be passed to tasks. The DAG id is the function name unless given.
    """
    if callable(dag_id):
        return _dag_factory(dag_id, None, dag_kwargs)

    def wrap(function: Callable[..., Any]) -> Callable[..., DAG]:
        return _dag_factory(function, dag_id, dag_kwargs)

    return wrap


def _dag_factory(function: Callable[..., Any], dag_id: str | None, dag_kwargs: dict[str, Any]) -> Callable[..., DAG]:
    signature = inspect.signature(function)

    @functools.wraps(function)
    def factory(*args: Any, **kwargs: Any) -> DAG:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise DagDefinitionError(f"DAG function {function.__name__!r}: {exc}") from None
        bound.apply_defaults()
        options = dict(dag_kwargs)
        params = dict(options.pop("params", None) or {})
        values = {
            name: value
            for name, value in bound.arguments.items()
            if signature.parameters[name].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        }
        params.update(values)
        options.setdefault("doc_md", inspect.getdoc(function))
        with DAG(dag_id or function.__name__, params=params, **options) as built:
            function(**{name: DagParam(name, value) for name, value in values.items()})
        return built

    return factory
