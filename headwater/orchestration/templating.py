"""Rendering a task's template fields with Jinja2, as Airflow does.

Strings containing ``{{`` or ``{%`` are rendered against the try's context; a
string ending with one of the operator's ``template_ext`` is the name of a
template file, looked up next to the DAG file and in the DAG's
``template_searchpath``. Lists, tuples, sets and dicts are rendered item by item;
TaskFlow results (:class:`Resolvable`) are replaced by their values. Undefined
variables are errors (``StrictUndefined``), reported with the task, the field and
the variable. Jinja2 is imported only when something needs rendering.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from headwater.errors import TemplateError

if TYPE_CHECKING:
    import jinja2

    from headwater.orchestration.baseoperator import BaseOperator

MAX_RENDERED_CHARS = 10_000
_UNDEFINED_RE = re.compile(r"'([^']+)' is undefined")


class Resolvable(ABC):
    """A value known only at run time (a TaskFlow result, a ``@dag`` parameter)."""

    @abstractmethod
    def resolve(self, context: Mapping[str, Any]) -> Any:
        """The value for the try whose context is given."""


def needs_rendering(text: str) -> bool:
    """True when ``text`` holds Jinja syntax."""
    return "{{" in text or "{%" in text


def _ds(value: Any) -> str:
    return str(value.strftime("%Y-%m-%d"))


def _ds_nodash(value: Any) -> str:
    return str(value.strftime("%Y%m%d"))


def _ts(value: Any) -> str:
    return str(value.isoformat())


def _ts_nodash(value: Any) -> str:
    return str(value.strftime("%Y%m%dT%H%M%S"))


class TemplateRenderer:
    """Renders values for one task against one context."""

    def __init__(self, task: BaseOperator, context: Mapping[str, Any]) -> None:
        self.task = task
        self.context = context
        self._env: jinja2.Environment | None = None

    @property
    def searchpath(self) -> list[str]:
        """Folders searched for template files: the DAG file's, then ``template_searchpath``."""
        paths: list[str] = []
        dag = self.task._dag
        if dag is not None:
            if dag.fileloc and os.path.isfile(dag.fileloc):
                paths.append(os.path.dirname(os.path.abspath(dag.fileloc)))
            paths.extend(dag.template_searchpath)
        return paths

    @property
    def env(self) -> jinja2.Environment:
        if self._env is None:
            # Imported here: most tasks have nothing to render and jinja2 costs import time.
            import jinja2

            env = jinja2.Environment(  # noqa: S701 - shell commands and SQL, not HTML
                loader=jinja2.FileSystemLoader(self.searchpath),
                undefined=jinja2.StrictUndefined,
                keep_trailing_newline=True,
                cache_size=0,
            )
            env.filters.update({"ds": _ds, "ds_nodash": _ds_nodash, "ts": _ts, "ts_nodash": _ts_nodash})
            dag = self.task._dag
            if dag is not None:
                env.filters.update(dag.user_defined_filters)
            self._env = env
        return self._env

    def render(self, value: Any, field: str) -> Any:
        """Render ``value`` (of template field ``field``) and everything nested in it."""
        if isinstance(value, str):
            if value.endswith(tuple(self.task.template_ext)):
                return self._render_file(value, field)
            if needs_rendering(value):
                return self._render_string(value, field)
            return value
        if isinstance(value, Resolvable):
            return value.resolve(self.context)
        if isinstance(value, dict):
            return {k: self.render(v, field) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(v, field) for v in value]
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return tuple(self.render(v, field) for v in value)
        if isinstance(value, set | frozenset):
            return type(value)(self.render(v, field) for v in value)
        return value

    def _render_string(self, text: str, field: str) -> str:
        import jinja2

        try:
            return self.env.from_string(text).render(**self.context)
        except jinja2.TemplateError as exc:
            raise self._error(exc, field) from None

    def _render_file(self, name: str, field: str) -> str:
        import jinja2

        try:
            return self.env.get_template(name).render(**self.context)
        except jinja2.TemplateNotFound:
            raise TemplateError(
                f"cannot render field {field!r} of task {self.task.task_id!r}: template file {name!r} "
                f"not found in {self.searchpath}",
                hint="put the file next to the DAG file or in the DAG's template_searchpath",
            ) from None
        except jinja2.TemplateError as exc:
            raise self._error(exc, field) from None

    def _error(self, exc: Exception, field: str) -> TemplateError:
        import jinja2

        where = f"field {field!r} of task {self.task.task_id!r}"
        if isinstance(exc, jinja2.UndefinedError):
            match = _UNDEFINED_RE.search(str(exc))
            if match:
                return TemplateError(
                    f"cannot render {where}: variable {match.group(1)!r} is undefined",
                    hint="use a variable of the task context ({{ ds }}, {{ params.x }}, ...) or define it in params",
                )
            return TemplateError(f"cannot render {where}: {exc}")
        if isinstance(exc, jinja2.TemplateSyntaxError):
            return TemplateError(f"cannot render {where}: syntax error on template line {exc.lineno}: {exc}")
        return TemplateError(f"cannot render {where}: {exc}")


def render_template_fields(task: BaseOperator, context: Mapping[str, Any]) -> dict[str, str]:
    """Render every template field of ``task`` in place and return them as text.

    ``task`` must be the try's own copy of the operator: rendering replaces its
    attributes. The returned texts (truncated) are recorded with the task's event.
    """
    renderer = TemplateRenderer(task, context)
    shown: dict[str, str] = {}
    for field in task.template_fields:
        if not hasattr(task, field):
            raise TemplateError(f"task {task.task_id!r} lists {field!r} in template_fields but has no such attribute")
        value = renderer.render(getattr(task, field), field)
        setattr(task, field, value)
        if value is None:
            continue
        text = value if isinstance(value, str) else repr(value)
        shown[field] = text if len(text) <= MAX_RENDERED_CHARS else text[:MAX_RENDERED_CHARS] + "..."
    return shown
