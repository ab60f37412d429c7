"""Importing DAG files: for the parse subprocess and for workers.

A DAG file is imported as a module under a name derived from its path, with the
DAG registry active, so every DAG it creates is found: module globals, DAGs made
in functions or ``with`` blocks, ``@dag`` functions that were called. Errors name
the file and the line: a syntax or import error is a :class:`DagImportError`; a
bad DAG (cycle, duplicate task) keeps its own error class with the file added.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

from headwater.errors import CycleError, DagDefinitionError, DagImportError, HeadwaterError, UserError
from headwater.orchestration.dag import DAG, collecting_dags
from headwater.orchestration.spec import DagSpec


class DuplicateDagIdError(DagDefinitionError):
    """One DAG file defines two DAGs with the same id; ``lineno`` is the second one's line."""

    def __init__(self, message: str, *, hint: str | None = None, lineno: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.lineno = lineno


@dataclass(slots=True)
class DagImportResult:
    """What importing one DAG file gave: its DAGs and specs, or the error.

    ``kind`` of an error is ``"syntax"``, ``"import"``, ``"cycle"``,
    ``"duplicate"`` or ``"definition"``; ``lineno`` is the line in the file.
    """

    path: str
    dags: list[DAG] = field(default_factory=list)
    specs: list[DagSpec] = field(default_factory=list)
    error: str | None = None
    lineno: int | None = None
    kind: str | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def module_name_for(path: str) -> str:
    """The module name a DAG file is imported under: stable per path, unique between paths."""
    digest = hashlib.sha1(os.path.abspath(path).encode(), usedforsecurity=False).hexdigest()[:16]
    return f"headwater_dag_{digest}"


def _lineno_in(exc: BaseException, path: str) -> int | None:
    """The line of ``path`` where ``exc`` happened (the deepest frame in that file)."""
    if isinstance(exc, SyntaxError) and exc.filename and os.path.abspath(exc.filename) == path:
        return exc.lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == path:
            line = frame.lineno
    return line


def _where(path: str, line: int | None) -> str:
    return f"{path}:{line}" if line else path


def load_dag_file(path: str) -> list[DAG]:
    """Import one DAG file (a fresh import every call) and return the DAGs it defines.

    Raises :class:`DagImportError` for syntax and import errors, and the DAG's own
    :class:`DagDefinitionError` (or :class:`CycleError`) with the file named.
    """
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise DagImportError(f"DAG file {path} does not exist", hint="check the path")
    name = module_name_for(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DagImportError(f"cannot import {path}: not a Python file", hint="DAG files end in .py")
    module = importlib.util.module_from_spec(spec)
    # Like Airflow's DAG folder on sys.path: a DAG file can import helpers next to it.
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.append(folder)
    sys.modules[name] = module
    try:
        with collecting_dags() as created:
            spec.loader.exec_module(module)
    except KeyboardInterrupt:
        sys.modules.pop(name, None)
        raise
    except BaseException as exc:
        sys.modules.pop(name, None)
        raise _import_error(exc, path) from exc
    found: list[DAG] = list(created)
    for value in list(vars(module).values()):
        if isinstance(value, DAG) and not any(value is d for d in found):
            found.append(value)
    seen: dict[str, DAG] = {}
    for dag in found:
        dag.fileloc = path
        first = seen.get(dag.dag_id)
        if first is not None:
            raise DuplicateDagIdError(
                f"{path}: dag_id {dag.dag_id!r} is defined twice (lines {first.lineno} and {dag.lineno})",
                hint="give each DAG its own dag_id",
                lineno=dag.lineno or None,
            )
        seen[dag.dag_id] = dag
    return found


def _import_error(exc: BaseException, path: str) -> HeadwaterError:
    line = _lineno_in(exc, path)
    if isinstance(exc, DagImportError):
        return exc
    if isinstance(exc, SyntaxError):
        where = _where(path, line)
        if exc.filename and os.path.abspath(exc.filename) != path:
            where = f"{where} (in {exc.filename}:{exc.lineno})"
        return DagImportError(f"{where}: syntax error: {exc.msg}", hint="fix the syntax and save the file")
    if isinstance(exc, UserError):
        try:
            return type(exc)(f"{_where(path, line)}: {exc.message}", hint=exc.hint)
        except TypeError:  # a subclass with its own constructor
            pass
    message = exc.message if isinstance(exc, HeadwaterError) else str(exc)
    hint = None
    if isinstance(exc, ModuleNotFoundError):
        hint = f"install {exc.name!r} where headwater runs, or put the module next to the DAG file"
    return DagImportError(f"{_where(path, line)}: {type(exc).__name__}: {message}", hint=hint)


def import_dag_file(path: str, source_hash: str = "") -> DagImportResult:
    """Import one DAG file and describe the outcome; never raises for a broken file."""
    path = os.path.abspath(path)
    started = time.monotonic()
    result = DagImportResult(path=path)
    try:
        result.dags = load_dag_file(path)
        result.specs = [d.to_spec(fileloc=path, source_hash=source_hash) for d in result.dags]
    except HeadwaterError as exc:
        cause = exc.__cause__ or exc
        result.dags, result.specs = [], []
        result.error = str(exc)
        result.lineno = _lineno_in(cause, path)
        if isinstance(exc, DuplicateDagIdError):
            result.kind = "duplicate"
            result.lineno = exc.lineno
        elif isinstance(exc, CycleError):
            result.kind = "cycle"
        elif isinstance(exc, DagDefinitionError):
            result.kind = "definition"
        elif isinstance(cause, SyntaxError):
            result.kind = "syntax"
        else:
            result.kind = "import"
    result.duration = time.monotonic() - started
    return result


_CACHE: dict[str, tuple[tuple[int, int], list[DAG]]] = {}
_CACHE_LOCK = threading.Lock()


def cached_dags(path: str) -> list[DAG]:
    """The DAGs of a file, imported once per file version (mtime and size) in this process."""
    path = os.path.abspath(path)
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise DagImportError(f"DAG file {path} cannot be read: {exc.strerror}", hint="check the path") from exc
    version = (stat.st_mtime_ns, stat.st_size)
    with _CACHE_LOCK:
        cached = _CACHE.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
        dags = load_dag_file(path)
        _CACHE[path] = (version, dags)
        return dags
