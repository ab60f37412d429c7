"""DAG params with a schema (Airflow's ``Param``) and the checks of a run's ``conf``.

``DAG(params={"region": Param("all", enum=["all", "eu", "us"]), "rows": 10})``:
a :class:`Param` is a default plus JSON Schema keywords; a plain value is a param
whose type is the value's JSON type (``None``: any type). Defaults are checked when
the DAG file is imported; a run's ``conf`` is checked by :func:`validate_conf`
before the run is created, against the schemas stored in the DAG's spec, so the CLI
and the web UI never import the DAG file to check a trigger.

Why a small validator instead of the ``jsonschema`` package: ``import jsonschema``
(4.26, with referencing/rpds/attrs) took 370-390 ms on the 2-core dev machine
(load 5), more than the whole start-up budget of ``headwater dags test`` (0.3 s),
and params use only the keywords listed in :data:`KEYWORDS`; this module checks
them in ~150 lines with stdlib only and rejects any other keyword at parse time,
so a schema never means more than what is checked.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from headwater.errors import DagDefinitionError, UserError

if TYPE_CHECKING:
    from headwater.orchestration.spec import DagSpec

MASK = "***"
"""What a secret param's value is shown as (in the stored spec, ``dags show``, rendered fields)."""

# Keywords whose values are checked (validation) or only carried for forms (annotation).
VALIDATION_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minItems",
        "maxItems",
        "items",
    }
)
ANNOTATION_KEYWORDS = frozenset({"title", "examples", "values_display", "default"})
KEYWORDS = VALIDATION_KEYWORDS | ANNOTATION_KEYWORDS
TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")
FORMATS = ("date", "date-time", "time")


class ParamValidationError(UserError):
    """A param's value breaks its schema (or its schema is malformed)."""


class _NotSet:
    def __repr__(self) -> str:
        return "NOTSET"


NOTSET: Any = _NotSet()
"""The default of a :class:`Param` that has none: the run's conf must give a value."""


class Param:
    """A DAG param: a default value, JSON Schema keywords, a description, a secret flag.

    ``Param(2, type="integer", minimum=1, description="retrain every N days")``,
    ``Param("all", enum=["all", "eu"])``, ``Param(None, type=["null", "string"])``,
    ``Param("", type="string", secret=True)`` (masked as ``***`` wherever shown).
    Without a default the param is required: every run's conf must give it.
    """

    __slots__ = ("description", "schema", "secret", "value")

    def __init__(
        self, default: Any = NOTSET, description: str | None = None, *, secret: bool = False, **schema: Any
    ) -> None:
        self.value = default
        self.description = description
        self.secret = bool(secret)
        self.schema: dict[str, Any] = schema
        check_schema(schema, "Param")

    def __repr__(self) -> str:
        shown = MASK if self.secret and self.has_value else repr(self.value)
        keys = "".join(f", {k}={v!r}" for k, v in self.schema.items())
        return f"Param({shown}{keys})"

    @property
    def has_value(self) -> bool:
        return self.value is not NOTSET

    def resolve(self, value: Any = NOTSET, *, name: str = "param") -> Any:
        """``value`` (or the default when not given) checked against the schema."""
        final = self.value if value is NOTSET else value
        if final is NOTSET:
            raise ParamValidationError(f"{name} is required and has no value", hint="give it in the run's conf")
        check_value(self.schema, final, name)
        return final

    def dump(self) -> dict[str, Any]:
        """The plain-data form stored in a DAG's spec (no default: the spec keeps those apart)."""
        return {
            "schema": dict(self.schema),
            "description": self.description,
            "secret": self.secret,
            "required": not self.has_value,
        }


def as_param(value: Any) -> Param:
    """A plain default as a :class:`Param` whose type is the value's JSON type (``None``: untyped)."""
    if isinstance(value, Param):
        return value
    kind = json_type(value)
    return Param(value) if kind in (None, "null") else Param(value, type=kind)


def json_type(value: Any) -> str | None:
    """The JSON Schema type of a Python value, or ``None`` when it has none."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


def check_schema(schema: Mapping[str, Any], where: str) -> None:
    """Refuse keywords and values this module would not check (a typo must not pass silently)."""
    for key, value in schema.items():
        if key not in KEYWORDS:
            close = difflib.get_close_matches(key, sorted(KEYWORDS), n=1)
            raise DagDefinitionError(
                f"{where}: unknown schema keyword {key!r}." + (f" Did you mean {close[0]!r}?" if close else ""),
                hint=f"supported keywords: {', '.join(sorted(KEYWORDS))}",
            )
        if key == "type":
            for t in [value] if isinstance(value, str) else value if isinstance(value, list) else [value]:
                if t not in TYPES:
                    raise DagDefinitionError(f"{where}: unknown type {t!r}", hint=f"types: {', '.join(TYPES)}")
        elif key == "format" and value not in FORMATS:
            raise DagDefinitionError(f"{where}: unknown format {value!r}", hint=f"formats: {', '.join(FORMATS)}")
        elif key == "pattern":
            try:
                re.compile(value)
            except (re.error, TypeError) as exc:
                raise DagDefinitionError(f"{where}: pattern {value!r} is not a regular expression: {exc}") from None
        elif key == "enum" and not isinstance(value, list | tuple):
            raise DagDefinitionError(f"{where}: enum must be a list, got {value!r}")
        elif key == "items":
            if not isinstance(value, Mapping):
                raise DagDefinitionError(f"{where}: items must be a schema (a dict), got {value!r}")
            check_schema(value, f"{where} items")


def check_value(schema: Mapping[str, Any], value: Any, name: str, description: str | None = None) -> None:
    """Raise :class:`ParamValidationError` naming ``name`` and the rule ``value`` breaks."""
    problem = _problem(schema, value)
    if problem:
        hint = "give a value that meets the rule"
        raise ParamValidationError(f"{name}: {problem}", hint=f"{hint} ({description})" if description else hint)


def _problem(schema: Mapping[str, Any], value: Any) -> str | None:
    """What is wrong with ``value`` under ``schema`` (one sentence), or ``None``."""
    shown = _short(value)
    types = schema.get("type")
    if types is not None:
        wanted = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, t) for t in wanted):
            got = json_type(value) or type(value).__name__
            return f"{shown} is {_article(got)} {got}, not {' or '.join(wanted)}"
    if "enum" in schema and not any(_same(value, v) for v in schema["enum"]):
        return f"{shown} is not one of {', '.join(json.dumps(v) for v in schema['enum'])}"
    if "const" in schema and not _same(value, schema["const"]):
        return f"{shown} is not {json.dumps(schema['const'])}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number_problem(schema, value, shown)
    if isinstance(value, str):
        return _string_problem(schema, value, shown)
    if isinstance(value, list | tuple):
        if "minItems" in schema and len(value) < schema["minItems"]:
            return f"{shown} has {len(value)} items, fewer than minItems {schema['minItems']}"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{shown} has {len(value)} items, more than maxItems {schema['maxItems']}"
        if "items" in schema:
            for i, item in enumerate(value):
                inner = _problem(schema["items"], item)
                if inner:
                    return f"item {i}: {inner}"
    return None


def _number_problem(schema: Mapping[str, Any], value: float, shown: str) -> str | None:
    if "minimum" in schema and value < schema["minimum"]:
        return f"{shown} is less than the minimum {schema['minimum']}"
    if "maximum" in schema and value > schema["maximum"]:
        return f"{shown} is more than the maximum {schema['maximum']}"
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        return f"{shown} is not more than exclusiveMinimum {schema['exclusiveMinimum']}"
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        return f"{shown} is not less than exclusiveMaximum {schema['exclusiveMaximum']}"
    step = schema.get("multipleOf")
    if step and not math.isclose(value / step, round(value / step), abs_tol=1e-9):
        return f"{shown} is not a multiple of {step}"
    return None


def _string_problem(schema: Mapping[str, Any], value: str, shown: str) -> str | None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        return f"{shown} is shorter than minLength {schema['minLength']}"
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return f"{shown} is longer than maxLength {schema['maxLength']}"
    if "pattern" in schema and not re.search(schema["pattern"], value):
        return f"{shown} does not match pattern {schema['pattern']!r}"
    fmt = schema.get("format")
    if fmt and not _has_format(value, fmt):
        example = {"date": "2024-01-31", "date-time": "2024-01-31T06:00:00+00:00", "time": "06:00:00"}[fmt]
        return f"{shown} is not a {fmt} (like {example})"
    return None


def _has_format(value: str, fmt: str) -> bool:
    try:
        if fmt == "date":
            dt.date.fromisoformat(value)
        elif fmt == "date-time":
            # RFC 3339 needs the time part; fromisoformat alone also takes a bare date.
            if len(value) < 11 or value[10] not in "Tt ":
                return False
            dt.datetime.fromisoformat(value)
        else:
            dt.time.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_type(value: Any, kind: str) -> bool:
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        if isinstance(value, float):  # JSON Schema: 2.0 is an integer
            return value.is_integer()
        return isinstance(value, int) and not isinstance(value, bool)
    return json_type(value) == kind


def _same(a: Any, b: Any) -> bool:
    # JSON equality: True is not 1, 1 is 1.0, tuples are arrays.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _short(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# -- params of a DAG (parse time) and of a run (trigger time)


def resolve_dag_params(dag_id: str, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Param]]:
    """A DAG's ``params=`` as (default values, Params); a bad default is a :class:`DagDefinitionError`."""
    values: dict[str, Any] = {}
    specs: dict[str, Param] = {}
    for name, raw in params.items():
        if not isinstance(name, str):
            raise DagDefinitionError(f"param names of DAG {dag_id!r} must be strings, got {name!r}")
        param = as_param(raw)
        if param.has_value:
            try:
                param.resolve(name=f"default of param {name!r} of DAG {dag_id!r}")
            except ParamValidationError as exc:
                raise DagDefinitionError(exc.message, hint=f"fix the default of {name!r} or its schema") from None
        specs[name] = param
        values[name] = param.value if param.has_value else None
    return values, specs


def params_schema(specs: Mapping[str, Param]) -> dict[str, dict[str, Any]]:
    """What a DAG's spec stores per param: ``{"schema", "description", "secret", "required"}``."""
    return {name: p.dump() for name, p in specs.items()}


def secret_names(spec: DagSpec) -> set[str]:
    """Names of the DAG's params marked ``secret=True``."""
    return {name for name, entry in spec.params_schema.items() if entry.get("secret")}


def validate_conf(spec: DagSpec, conf: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's ``conf`` checked against the DAG's params and merged over their defaults.

    Returns the params the run will see, except secret params the conf does not set
    (their values stay in the DAG file; the spec holds only ``***``), so the result can
    be shown, or stored as the run's conf, without leaking or clobbering a secret. A
    secret given as ``***`` (an unchanged form field) means "keep the default".
    Raises :class:`ParamValidationError` (a one-line message naming the param and the
    rule) for a value that breaks its schema, a required param left out, or a name
    the DAG does not declare (when it declares any). A DAG without params takes any
    JSON object as conf, as in Airflow.
    """
    if conf is None:
        conf = {}
    if not isinstance(conf, Mapping):
        raise ParamValidationError(
            f"conf must be a JSON object, not {type(conf).__name__}", hint='write e.g. {"x": 1}'
        )
    entries = spec.params_schema or {name: as_param(v).dump() for name, v in spec.params.items()}
    secrets = {name for name, e in entries.items() if e.get("secret")}
    given = {k: v for k, v in conf.items() if not (k in secrets and v == MASK)}
    if not entries:
        return dict(given)
    unknown = sorted(set(given) - set(entries))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(entries), n=1)
        raise ParamValidationError(
            f"DAG {spec.dag_id!r} has no param {unknown[0]!r}." + (f" Did you mean {close[0]!r}?" if close else ""),
            hint=f"its params: {', '.join(entries)}",
        )
    merged: dict[str, Any] = {}
    for name, entry in entries.items():
        if name in given:
            check_value(entry.get("schema") or {}, given[name], f"param {name!r}", entry.get("description"))
            merged[name] = given[name]
        elif entry.get("required"):
            raise ParamValidationError(
                f"param {name!r} of DAG {spec.dag_id!r} has no default and the conf does not give it",
                hint=f'add it to the conf, e.g. {{"{name}": ...}}',
            )
        elif name not in secrets:
            merged[name] = spec.params.get(name)
    return merged


def mask_secrets(text: str, secrets: set[str]) -> str:
    """``text`` with every secret value in it replaced by ``***`` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def secret_values(specs: Mapping[str, Param], params: Mapping[str, Any]) -> set[str]:
    """The text of the secret params' values in ``params`` (a try's params), for :func:`mask_secrets`."""
    out: set[str] = set()
    for name, param in specs.items():
        value = params.get(name)
        if param.secret and value not in (None, "", MASK):
            out.add(value if isinstance(value, str) else json.dumps(value))
    return out
