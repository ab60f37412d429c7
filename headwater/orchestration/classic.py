"""Luigi-style class tasks: parameters, ``requires()``, ``output()``, ``run()``.

::

    class Extract(Task):
        date = DateParameter()

        def output(self):
            return LocalTarget(f"data/raw/{self.date}.csv")

        def run(self):
            with self.output().open("w") as f:
                f.write(download(self.date))

    class Load(Task):
        date = DateParameter()

        def requires(self):
            return Extract(date=self.date)

        def run(self):
            load(self.input().path)

:func:`build_dag` turns the graph below a root task into an ordinary headwater
:class:`~headwater.orchestration.dag.DAG` with one operator per task, so classic
tasks are scheduled, retried and logged like any other. The runtime skips a task
whose outputs all exist ("already complete"), as Luigi's scheduler does.

Workers rebuild the same DAG with :func:`load_dag` from the task class's
location and the root's parameters as strings, so task ids are computed only
from the class name and the parameter values: they are the same in every process.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from headwater.errors import DagImportError, UserError
from headwater.orchestration.baseoperator import BaseOperator
from headwater.orchestration.dag import DAG
from headwater.orchestration.parameters import (
    BoolParameter,
    DateParameter,
    DateSecondParameter,
    FloatParameter,
    IntParameter,
    ListParameter,
    Parameter,
)
from headwater.orchestration.targets import Target

if TYPE_CHECKING:
    from headwater.orchestration.context import Context

__all__ = [
    "BoolParameter",
    "ClassicTaskOperator",
    "DateParameter",
    "DateSecondParameter",
    "FloatParameter",
    "IntParameter",
    "ListParameter",
    "Parameter",
    "Task",
    "WrapperTask",
    "build_dag",
    "flatten",
    "load_dag",
    "parse_task_ref",
]

# Luigi's task-id rule: the first 3 parameter values, 16 characters each, then a hash.
_ID_PARAMS = 3
_ID_TRUNCATE = 16
_ID_INVALID = re.compile(r"[^A-Za-z0-9_]")
#: ``DagSpec.fileloc`` of a classic DAG: this prefix, then ``"module:Class"``.
CLASSIC_PREFIX = "classic:"


class _Register(type):
    """Metaclass that hands out one instance per (class, parameter values), as Luigi's ``Register``.

    ``A(x=1) is A(x=1)``: a graph where two tasks require the same upstream task
    holds that task once.
    """

    _instances: ClassVar[dict[tuple[type, tuple[tuple[str, str], ...]], Any]] = {}

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        values = cls._resolve_params(args, kwargs)  # type: ignore[attr-defined]
        params = cls._params()  # type: ignore[attr-defined]
        key = (cls, tuple((name, params[name].serialize(v)) for name, v in values.items()))
        instance = _Register._instances.get(key)
        if instance is None:
            instance = super().__call__(**values)
            _Register._instances[key] = instance
        return instance

    @staticmethod
    def clear_instance_cache() -> None:
        """Forget every task instance (tests use it between cases)."""
        _Register._instances.clear()


class Task(metaclass=_Register):
    """A Luigi-style task: parameters as class attributes, ``requires``/``output``/``run`` methods.

    ``retries``, ``retry_delay`` (seconds), ``priority`` and ``pool`` are optional
    class attributes passed to the operator that runs the task.
    """

    retries: ClassVar[int] = 0
    retry_delay: ClassVar[float] = 300.0
    priority: ClassVar[int] = 0
    pool: ClassVar[str | None] = None
    #: Prefix of the family name, for tasks with the same class name in two modules.
    task_namespace: ClassVar[str | None] = None

    def __init__(self, **values: Any) -> None:
        # Called only by _Register, with every parameter already checked.
        self.param_kwargs: dict[str, Any] = values
        for name, value in values.items():
            setattr(self, name, value)
        self.task_id = self._make_task_id()

    # -- parameters
    @classmethod
    def _params(cls) -> dict[str, Parameter]:
        """Parameters of the class and its bases, in definition order."""
        found: dict[str, Parameter] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Parameter):
                    found[name] = value
                elif name in found:
                    del found[name]  # a subclass overrode the parameter with a plain value
        return dict(sorted(found.items(), key=lambda item: item[1].order))

    @classmethod
    def get_params(cls) -> list[tuple[str, Parameter]]:
        """``(name, parameter)`` pairs in definition order."""
        return list(cls._params().items())

    @classmethod
    def _resolve_params(cls, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        params = cls._params()
        names = list(params)
        if len(args) > len(names):
            raise UserError(
                f"{cls.__name__} takes {len(names)} positional parameters but {len(args)} were given",
                hint=_valid_hint(cls),
            )
        given: dict[str, Any] = dict(zip(names, args, strict=False))
        for name, value in kwargs.items():
            if name not in params:
                raise UserError(
                    f"{cls.__name__} has no parameter {name!r}{_did_you_mean(name, names)}",
                    hint=_valid_hint(cls),
                )
            if name in given:
                raise UserError(f"{cls.__name__} got parameter {name!r} twice", hint=_valid_hint(cls))
            given[name] = value
        values: dict[str, Any] = {}
        for name, param in params.items():
            if name in given:
                values[name] = param.normalize(given[name])
            elif param.required:
                raise UserError(f"{cls.__name__} is missing the required parameter {name!r}", hint=_valid_hint(cls))
            else:
                values[name] = param.default
        return values

    @classmethod
    def from_str_params(cls, params: Mapping[str, str]) -> Task:
        """Build an instance from string values, as written by :meth:`to_str_params`."""
        known = cls._params()
        parsed: dict[str, Any] = {}
        for name, text in params.items():
            if name not in known:
                raise UserError(
                    f"{cls.__name__} has no parameter {name!r}{_did_you_mean(name, list(known))}",
                    hint=_valid_hint(cls),
                )
            parsed[name] = known[name].parse(text)
        result: Task = cls(**parsed)
        return result

    def to_str_params(self) -> dict[str, str]:
        """Parameter values as strings; :meth:`from_str_params` reads them back."""
        params = self._params()
        return {name: params[name].serialize(value) for name, value in self.param_kwargs.items()}

    # -- identity
    @classmethod
    def get_task_family(cls) -> str:
        """The class name, prefixed by ``task_namespace`` when set."""
        if cls.task_namespace:
            return f"{cls.task_namespace}.{cls.__name__}"
        return cls.__name__

    @property
    def task_family(self) -> str:
        return self.get_task_family()

    def _params_hash(self) -> str:
        text = json.dumps(self.to_str_params(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def _make_task_id(self) -> str:
        family = _ID_INVALID.sub("_", self.get_task_family())
        strs = self.to_str_params()
        if not strs:
            # One instance per class: the family alone is unique and easier to read.
            return family
        summary = "_".join(value[:_ID_TRUNCATE] for value in list(strs.values())[:_ID_PARAMS])
        return f"{family}_{_ID_INVALID.sub('_', summary)}_{self._params_hash()}"

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.to_str_params().items())
        return f"{type(self).__name__}({shown})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and type(other) is type(self) and other.task_id == self.task_id

    def __hash__(self) -> int:
        return hash((type(self).__qualname__, self.task_id))

    # -- the graph
    def requires(self) -> Any:
        """The tasks this one needs: a task, a list/tuple of tasks, a dict of tasks, or nothing."""
        return []

    def output(self) -> Any:
        """What this task produces: a target, a list/tuple or dict of targets, or nothing."""
        return []

    def input(self) -> Any:
        """The outputs of :meth:`requires`, in the same shape (a dict stays a dict)."""
        return _outputs_of(self.requires())

    def deps(self) -> list[Task]:
        """The required tasks as a flat list without repeats."""
        seen: dict[str, Task] = {}
        for dep in flatten(self.requires()):
            if not isinstance(dep, Task):
                raise UserError(
                    f"{self.task_id}.requires() returned {dep!r}, which is not a Task",
                    hint="requires() returns task instances, e.g. Extract(date=self.date)",
                )
            seen.setdefault(dep.task_id, dep)
        return list(seen.values())

    def complete(self) -> bool:
        """True when every output exists. A task without outputs is never complete (Luigi's rule)."""
        outputs = self.output_targets()
        return bool(outputs) and all(target.exists() for target in outputs)

    def output_targets(self) -> list[Target]:
        """The outputs as a flat list of targets."""
        targets = flatten(self.output())
        for target in targets:
            if not isinstance(target, Target):
                raise UserError(
                    f"{self.task_id}.output() returned {target!r}, which is not a Target",
                    hint="return a LocalTarget or FsspecTarget (or a list or dict of them)",
                )
        return targets

    def run(self) -> None:
        """Do the work and write the outputs. The default does nothing."""


class WrapperTask(Task):
    """A task that only groups others: complete when everything it requires is complete."""

    def complete(self) -> bool:
        return all(dep.complete() for dep in self.deps())


def flatten(struct: Any) -> list[Any]:
    """Tasks or targets from a single value, a list/tuple/iterable, or the values of a dict."""
    if struct is None:
        return []
    if isinstance(struct, Mapping):
        return [item for value in struct.values() for item in flatten(value)]
    if isinstance(struct, str | bytes) or not isinstance(struct, Iterable):
        return [struct]
    return [item for value in struct for item in flatten(value)]


def _outputs_of(struct: Any) -> Any:
    if isinstance(struct, Task):
        return struct.output()
    if isinstance(struct, Mapping):
        return {key: _outputs_of(value) for key, value in struct.items()}
    if isinstance(struct, list | tuple):
        return type(struct)(_outputs_of(value) for value in struct)
    if isinstance(struct, Iterable) and not isinstance(struct, str | bytes):
        return [_outputs_of(value) for value in struct]
    return struct


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _valid_hint(cls: type[Task]) -> str:
    params = cls.get_params()
    if not params:
        return f"{cls.__name__} takes no parameters"
    shown = ", ".join(f"{name} ({p.type_name}{'' if p.required else ', optional'})" for name, p in params)
    return f"valid parameters of {cls.__name__}: {shown}"


def walk(root: Task, *, prune_complete: bool = False) -> Iterator[Task]:
    """Every task from ``root`` down through :meth:`Task.requires`, each once, root first.

    With ``prune_complete`` the requirements of a complete task are not visited:
    once its outputs exist, what it needed does not matter (Luigi's rule).
    """
    seen: set[str] = set()
    stack = [root]
    while stack:
        task = stack.pop()
        if task.task_id in seen:
            continue
        seen.add(task.task_id)
        yield task
        if prune_complete and task.complete():
            continue
        stack.extend(reversed(task.deps()))


# -- locating task classes ---------------------------------------------------


def _import_module(ref: str) -> Any:
    """Import a dotted module name or a ``.py`` file path."""
    if ref.endswith(".py") or os.sep in ref:
        path = os.path.abspath(ref)
        if not os.path.isfile(path):
            raise DagImportError(f"task file {ref!r} does not exist", hint="give a path to a .py file")
        # A stable name per file: importing it twice must give the same classes.
        name = "headwater_classic_" + hashlib.sha256(path.encode()).hexdigest()[:12]
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise DagImportError(f"cannot import task file {ref!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise DagImportError(f"importing task file {ref!r} failed: {type(exc).__name__}: {exc}") from exc
        return module
    # Like `python -m`: modules in the working directory can be named.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(ref)
    except ModuleNotFoundError as exc:
        if exc.name and ref.startswith(exc.name):
            raise DagImportError(
                f"no module named {ref!r}",
                hint="run from the folder that holds it, set PYTHONPATH, or give a path like tasks.py:MyTask",
            ) from exc
        raise DagImportError(f"importing module {ref!r} failed: {exc}") from exc
    except Exception as exc:
        raise DagImportError(f"importing module {ref!r} failed: {type(exc).__name__}: {exc}") from exc


def _task_classes(module: Any) -> dict[str, type[Task]]:
    return {
        name: value
        for name, value in vars(module).items()
        if inspect.isclass(value) and issubclass(value, Task) and value not in (Task, WrapperTask)
    }


def _split_ref(ref: str) -> tuple[str, str]:
    """``"pkg.mod:Class"``, ``"path/file.py:Class"`` or ``"pkg.mod.Class"`` into module and class."""
    if ":" in ref:
        module, _, name = ref.rpartition(":")
    else:
        module, _, name = ref.rpartition(".")
    if not module or not name:
        raise UserError(
            f"task reference {ref!r} names no module",
            hint="write module.TaskClass, module:TaskClass or path/to/file.py:TaskClass",
        )
    return module, name


def find_task_class(ref: str) -> type[Task]:
    """Import and return the task class a reference names; suggests close names when it is not there."""
    module_ref, name = _split_ref(ref)
    module = _import_module(module_ref)
    classes = _task_classes(module)
    found = getattr(module, name, None)
    if inspect.isclass(found) and issubclass(found, Task):
        return found
    if found is not None:
        raise UserError(f"{name!r} in {module_ref!r} is not a headwater Task class")
    raise UserError(
        f"no task class {name!r} in {module_ref!r}{_did_you_mean(name, list(classes))}",
        hint=f"task classes there: {', '.join(sorted(classes)) or 'none'}",
    )


def task_ref(cls: type[Task]) -> str:
    """The ``"module:Class"`` (or ``"file.py:Class"``) reference :func:`load_dag` finds ``cls`` by."""
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if cls.__module__ == "__main__" or cls.__module__.startswith("headwater_classic_"):
        if not file:
            raise UserError(f"task class {cls.__name__} has no file a worker could import")
        return f"{os.path.abspath(file)}:{cls.__qualname__}"
    return f"{cls.__module__}:{cls.__qualname__}"


def parse_task_ref(ref: str, params: Sequence[str]) -> Task:
    """The task a command line names: ``headwater run module.TaskClass --date 2024-01-01``.

    ``params`` are ``--name value`` pairs (or ``--name=value``); dashes in names
    are read as underscores, and a bool parameter alone (``--full``) means true.
    """
    cls = find_task_class(ref)
    known = cls._params()
    values: dict[str, str] = {}
    tokens = list(params)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise UserError(
                f"unexpected argument {token!r} for {cls.__name__}",
                hint="give parameters as --name value; " + _valid_hint(cls),
            )
        name, eq, inline = token[2:].partition("=")
        name = name.replace("-", "_")
        if name not in known:
            raise UserError(
                f"{cls.__name__} has no parameter {name!r}{_did_you_mean(name, list(known))}",
                hint=_valid_hint(cls),
            )
        if eq:
            values[name] = inline
            i += 1
        elif isinstance(known[name], BoolParameter) and (i + 1 == len(tokens) or tokens[i + 1].startswith("--")):
            values[name] = "true"
            i += 1
        elif i + 1 < len(tokens):
            values[name] = tokens[i + 1]
            i += 2
        else:
            raise UserError(f"parameter --{name} of {cls.__name__} needs a value", hint=_valid_hint(cls))
    return cls.from_str_params(values)


# -- running the graph as a DAG -----------------------------------------------


class _CompleteCheck(Target):
    """Stands for a task whose ``complete()`` is its own, so the runtime's output check asks it."""

    def __init__(self, task: Task) -> None:
        self.path = task.task_id
        self.task = task

    def exists(self) -> bool:
        return self.task.complete()

    def open(self, mode: str = "r") -> Any:
        raise UserError(f"task {self.task.task_id} decides completeness itself; it has no file to open")

    def render(self, context: Mapping[str, Any]) -> Target:
        return self


class ClassicTaskOperator(BaseOperator):
    """Runs one Luigi-style task: its outputs are the operator's outputs, ``execute`` calls ``run()``."""

    def __init__(self, *, task: Task, **kwargs: Any) -> None:
        kwargs.setdefault("task_id", task.task_id)
        kwargs.setdefault("retries", task.retries)
        kwargs.setdefault("retry_delay", task.retry_delay)
        if task.pool:
            kwargs.setdefault("pool", task.pool)
        kwargs.setdefault("do_xcom_push", False)
        # Kept with the operator's other Airflow-only arguments; the scheduler has no priorities yet.
        kwargs.setdefault("priority_weight", task.priority)
        # A task that overrides complete() (a row count, a marker in a database)
        # is asked itself; otherwise its targets are checked one by one.
        overridden = type(task).complete is not Task.complete
        outputs: list[Target] = [_CompleteCheck(task)] if overridden else task.output_targets()
        super().__init__(outputs=outputs or None, **kwargs)
        self.classic_task = task

    @property
    def operator_name(self) -> str:
        return self.classic_task.task_family

    def execute(self, context: Context) -> Any:
        self.classic_task.run()
        return None


def classic_dag_id(root: Task) -> str:
    """``classic.<Family>``, plus a hash of the root's parameters when it has any."""
    family = ".".join(_ID_INVALID.sub("_", part) for part in root.get_task_family().split("."))
    if not root.param_kwargs:
        return f"classic.{family}"
    return f"classic.{family}.{root._params_hash()}"


def build_dag(root: Task, *, force: bool = False) -> DAG:
    """A DAG with one :class:`ClassicTaskOperator` per task reachable from ``root`` by ``requires()``.

    Without ``force`` the requirements of a task that is already complete are
    left out, as Luigi does: once an output exists, what produced its inputs is not
    needed (and may have been deleted). With ``force`` every task is in the DAG.
    Tasks already complete stay in it and are reported "already complete" by the
    runtime unless the run is forced.

    The DAG's ``fileloc`` is ``"classic:"`` and the root class's reference, and its
    ``params`` are the root's parameters as strings (:meth:`Task.to_str_params`).
    A run of it must carry those parameters as its ``conf``: the scheduler passes
    ``conf`` to the worker as ``Workload.classic_params``, and :func:`load_dag`
    needs both to rebuild the graph.
    """
    tasks = list(walk(root, prune_complete=not force))
    dag = DAG(
        classic_dag_id(root),
        description=f"{root!r} and what it requires",
        schedule=None,
        params=root.to_str_params(),
        tags=["classic"],
    )
    try:
        # The scheduler reads the "classic:" prefix as Workload.kind == "classic".
        dag.fileloc = CLASSIC_PREFIX + task_ref(type(root))
    except UserError:
        dag.fileloc = ""  # defined in an interactive session: runnable only in this process
    ops: dict[str, ClassicTaskOperator] = {}
    # Upstream tasks first, so the DAG lists them in the order they run.
    for task in reversed(tasks):
        ops[task.task_id] = ClassicTaskOperator(task=task, dag=dag)
    for task in tasks:
        for dep in task.deps():
            if dep.task_id in ops:
                ops[dep.task_id] >> ops[task.task_id]
    return dag


def load_dag(fileloc: str, classic_params: Mapping[str, str]) -> DAG:
    """Rebuild in a worker the DAG :func:`build_dag` made.

    ``fileloc`` is ``"module:Class"`` or ``"file.py:Class"``; ``classic_params`` the
    root's parameters as strings.
    Every task is included (``force``), so whichever task the scheduler asks for is
    found even when the DAG was built with complete tasks pruned.
    """
    cls = find_task_class(fileloc.removeprefix(CLASSIC_PREFIX))
    return build_dag(cls.from_str_params(classic_params), force=True)
