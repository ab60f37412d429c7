"""Parameters of Luigi-style class tasks (:mod:`headwater.orchestration.classic`).

A parameter is declared as a class attribute (``date = DateParameter()``) and
knows three things about its values: how to parse one from a command-line string,
how to write one back as a string (workloads carry parameters as strings to the
worker, which parses them again), and how to check a value given in Python.
``parse(serialize(v)) == v`` for every value a parameter accepts.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any

from headwater.clock import ensure_utc
from headwater.errors import UserError

_counter = itertools.count()


class _NoDefault:
    def __repr__(self) -> str:
        return "<required>"


NO_DEFAULT: Any = _NoDefault()


class ParameterValueError(UserError):
    """A parameter value could not be parsed or has the wrong type."""


class Parameter:
    """A task parameter whose values are strings (or anything with a faithful ``str``).

    ``default`` makes the parameter optional; ``description`` is shown by the CLI.
    """

    type_name = "str"

    def __init__(self, default: Any = NO_DEFAULT, description: str | None = None) -> None:
        self.description = description
        self.name = ""
        # Definition order: the first parameters appear in the task id.
        self.order = next(_counter)
        self.default = NO_DEFAULT if default is NO_DEFAULT else self.normalize(default)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, default={self.default!r})"

    @property
    def required(self) -> bool:
        return self.default is NO_DEFAULT

    def parse(self, text: str) -> Any:
        """Turn a command-line or workload string into a value."""
        return text

    def serialize(self, value: Any) -> str:
        """Turn a value into the string :meth:`parse` reads back."""
        return str(value)

    def normalize(self, value: Any) -> Any:
        """Check and canonicalise a value given in Python; strings are parsed."""
        if isinstance(value, str):
            return self.parse(value)
        return self._check(value)

    def _check(self, value: Any) -> Any:
        return value

    def _bad(self, value: Any, why: str = "") -> ParameterValueError:
        what = f"parameter {self.name!r}" if self.name else type(self).__name__
        return ParameterValueError(
            f"{what} expects a {self.type_name}, got {value!r}{': ' + why if why else ''}",
            hint=self._hint(),
        )

    def _hint(self) -> str:
        return f"give a {self.type_name}"


class IntParameter(Parameter):
    """An integer."""

    type_name = "int"

    def parse(self, text: str) -> int:
        try:
            return int(text.strip())
        except ValueError:
            raise self._bad(text) from None

    def _check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(value)
        return value


class FloatParameter(Parameter):
    """A floating-point number."""

    type_name = "float"

    def parse(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            raise self._bad(text) from None

    def serialize(self, value: Any) -> str:
        return repr(float(value))

    def _check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(value)
        return float(value)


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


class BoolParameter(Parameter):
    """A flag; ``false`` unless a default is given. On the command line ``--flag`` alone means true."""

    type_name = "bool"

    def __init__(self, default: Any = False, description: str | None = None) -> None:
        super().__init__(default=default, description=description)

    def parse(self, text: str) -> bool:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise self._bad(text)

    def serialize(self, value: Any) -> str:
        return "true" if value else "false"

    def _check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self._bad(value)
        return value

    def _hint(self) -> str:
        return "use true or false"


class DateParameter(Parameter):
    """A calendar date, written ``YYYY-MM-DD``."""

    type_name = "date"

    def parse(self, text: str) -> dt.date:
        try:
            return dt.date.fromisoformat(text.strip())
        except ValueError:
            raise self._bad(text) from None

    def serialize(self, value: Any) -> str:
        return str(value.isoformat())

    def _check(self, value: Any) -> dt.date:
        if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
            raise self._bad(value)
        return value

    def _hint(self) -> str:
        return "write dates as YYYY-MM-DD"


class DateSecondParameter(Parameter):
    """A UTC date and time to the second, written ``YYYY-MM-DDTHHMMSS`` (Luigi's format).

    ISO 8601 strings are accepted too; naive times are taken as UTC.
    """

    type_name = "datetime"
    _format = "%Y-%m-%dT%H%M%S"

    def parse(self, text: str) -> dt.datetime:
        text = text.strip()
        try:
            value = dt.datetime.strptime(text, self._format)  # noqa: DTZ007 - made UTC just below
        except ValueError:
            try:
                value = dt.datetime.fromisoformat(text)
            except ValueError:
                raise self._bad(text) from None
        return ensure_utc(value).replace(microsecond=0)

    def serialize(self, value: Any) -> str:
        v = ensure_utc(value)
        # Spelled out: strftime's %Y does not pad years before 1000 to four digits.
        return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}{v.minute:02d}{v.second:02d}"

    def _check(self, value: Any) -> dt.datetime:
        if not isinstance(value, dt.datetime):
            raise self._bad(value)
        return ensure_utc(value).replace(microsecond=0)

    def _hint(self) -> str:
        return "write times as YYYY-MM-DDTHHMMSS or ISO 8601, in UTC"


class ListParameter(Parameter):
    """A list of JSON values, kept as a tuple so tasks stay hashable.

    On the command line either JSON (``'[1, 2]'``) or comma-separated words
    (``a,b,c``, which gives strings).
    """

    type_name = "list"

    def parse(self, text: str) -> tuple[Any, ...]:
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                loaded = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise self._bad(text, str(exc)) from None
            return self._check(loaded)
        if not stripped:
            return ()
        return tuple(part.strip() for part in stripped.split(","))

    def serialize(self, value: Any) -> str:
        return json.dumps(list(value), separators=(",", ":"), sort_keys=True)

    def _check(self, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise self._bad(value)
        try:
            json.dumps(list(value))
        except TypeError as exc:
            raise self._bad(value, str(exc)) from None
        frozen: tuple[Any, ...] = _freeze(value)
        return frozen

    def _hint(self) -> str:
        return "give a JSON list such as '[1, 2]' or comma-separated words"


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value
