"""The trigger form: fields drawn from a DAG's params (and their JSON Schema), and the form's text
turned back into a run's conf (which the service checks with ``validate_conf``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from headwater.errors import UserError

if TYPE_CHECKING:
    from headwater.orchestration.spec import DagSpec


@dataclass(frozen=True, slots=True)
class Field:
    """One input of the trigger form."""

    name: str
    shown: str  # the value the input starts with (secrets masked, non-strings as JSON)
    kind: str  # "text", "select" or "json"
    choices: list[str]
    description: str
    required: bool
    hint: str  # the rules the value must follow, for people ("integer, 1 to 100")


def _types(schema: dict[str, Any], default: Any) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [str(k) for k in kind]
    if default is None:
        return []
    return ["string"] if isinstance(default, str) else ["json"]


def _takes_text(schema: dict[str, Any], default: Any) -> bool:
    """True when the form's text is the value itself (a string param), not JSON to parse."""
    types = _types(schema, default)
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        return True
    return "string" in types and not any(t in types for t in ("integer", "number", "boolean", "array", "object"))


def trigger_fields(spec: DagSpec) -> list[Field]:
    """The inputs of a DAG's trigger form, in the order the DAG declares its params."""
    from headwater.web.services.masking import mask_mapping

    shown_values = mask_mapping(spec.params)
    fields = []
    for name, default in spec.params.items():
        entry = spec.params_schema.get(name, {})
        schema = dict(entry.get("schema") or {})
        shown = shown_values.get(name)
        text = "" if shown is None and entry.get("required") else (
            shown if isinstance(shown, str) and _takes_text(schema, default) else json.dumps(shown))
        enum = schema.get("enum")
        choices = [v if isinstance(v, str) else json.dumps(v) for v in enum] if isinstance(enum, list) else []
        rules = [", ".join(_types(schema, default))] if schema.get("type") else []
        if "minimum" in schema or "maximum" in schema:
            rules.append(f"{schema.get('minimum', '…')} to {schema.get('maximum', '…')}")
        if "pattern" in schema:
            rules.append(f"matching {schema['pattern']}")
        fields.append(Field(
            name=name, shown=text, kind="select" if choices else ("text" if _takes_text(schema, default) else "json"),
            choices=choices, description=str(entry.get("description") or ""), required=bool(entry.get("required")),
            hint="; ".join(r for r in rules if r),
        ))
    return fields


def form_conf(spec: DagSpec, raw: dict[str, str]) -> dict[str, Any]:
    """Trigger-form text -> a run's conf; the service then checks it against the DAG's params.

    A string param takes the text as it is; any other is parsed as JSON. A field left as the
    form showed it (the default, secrets masked as ``***``) keeps the default, so a secret never
    has to travel to the browser and back; an emptied non-string field keeps it too.
    """
    shown = {f.name: f.shown for f in trigger_fields(spec)}
    out: dict[str, Any] = {}
    for name, text in raw.items():
        if name not in spec.params:
            out[name] = text  # unknown names go through so the service names them in its error
            continue
        schema = dict(spec.params_schema.get(name, {}).get("schema") or {})
        default = spec.params.get(name)
        if text == shown.get(name) and not spec.params_schema.get(name, {}).get("required"):
            continue
        if _takes_text(schema, default):
            out[name] = text
            continue
        if text.strip() == "":
            continue
        try:
            out[name] = json.loads(text)
        except ValueError:
            raise UserError(
                f"param {name!r}: {text!r} is not a JSON value",
                hint=f"give a value like its default, {json.dumps(shown.get(name))}" if default is not None
                else "numbers as 10, booleans as true, lists as [1, 2], text in double quotes",
            ) from None
    return out
