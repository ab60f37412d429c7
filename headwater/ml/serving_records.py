"""JSON records to a Polars frame for scoring, with per-row errors that name the field.

Used by REST serving (``POST /predict``) and the ML benchmark. Decoding is one
``orjson.loads`` of the whole body, then one Polars column per declared input built from
the records' values in one call (no per-record scoring). Only when a column's values do
not build a column of the declared type (a text in a number column, ``2.5`` for an
integer, a nested object, a ``true`` in a number column) are its values looked at one by
one, to say which rows are wrong;
numbers and texts are then kept as text so that :meth:`Scorer.validate` parses them and
reports, per row, the value that does not parse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

_FIELD = re.compile(r"column '([^']+)'")
MAX_ERRORS = 100  # listed in a 422; the count says how many there were


@dataclass
class RowErrors:
    """Per row (index in the request), the reasons it cannot be scored, each with its field."""

    by_row: dict[int, list[tuple[str | None, str]]] = field(default_factory=dict)

    def add(self, row: int, field_name: str | None, message: str) -> None:
        self.by_row.setdefault(row, []).append((field_name, message))

    def __bool__(self) -> bool:
        return bool(self.by_row)

    def count(self) -> int:
        return sum(len(v) for v in self.by_row.values())

    def detail(self, limit: int = MAX_ERRORS) -> list[dict[str, Any]]:
        """FastAPI-style error entries: ``loc`` is ``["body", row, field]``; ``row`` and ``field`` also apart."""
        out: list[dict[str, Any]] = []
        for row in sorted(self.by_row):
            for field_name, message in self.by_row[row]:
                if len(out) >= limit:
                    return out
                loc: list[Any] = ["body", row] + ([field_name] if field_name else [])
                out.append({"loc": loc, "row": row, "field": field_name, "msg": message, "type": "value_error"})
        return out


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _fallback_column(name: str, values: list[Any], dtype: pl.DataType, errors: RowErrors) -> pl.Series:
    """The column built value by value: JSON values that can never fit are errors; numbers and texts
    become text for :meth:`Scorer.validate` to parse (and to name the value that does not)."""
    wants_text = dtype == pl.String
    wants_bool = dtype == pl.Boolean
    out: list[str | None] = []
    for row, value in enumerate(values):
        if value is None:
            out.append(None)
        elif isinstance(value, str):
            out.append(value)
        elif isinstance(value, int | float) and not isinstance(value, bool) and not (wants_text or wants_bool):
            if isinstance(value, float) and dtype.is_integer() and value.is_integer():
                value = int(value)  # 3.0 for an integer fits, as in a stream micro-batch
            out.append(repr(value))  # repr: the shortest text that parses back to the same float
        elif isinstance(value, bool) and wants_bool:
            out.append("true" if value else "false")
        else:
            errors.add(row, name, f"field {name!r}: expected {dtype}, got {_json_type(value)}")
            out.append(None)
    return pl.Series(name, out, dtype=pl.String)


def records_frame(records: Sequence[Any], schema: Mapping[str, pl.DataType]) -> tuple[pl.DataFrame, RowErrors]:
    """A frame of the declared input columns of ``records`` (decoded JSON), and the rows that are wrong.

    A record that is not an object, or lacks a declared field, is an error (send ``null``
    explicitly for a missing value). Fields that are not inputs are ignored.
    """
    errors = RowErrors()
    names = list(schema)
    wanted = set(names)
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            errors.add(row, None, f"record {row} is {_json_type(record)}, expected an object")
        elif not wanted <= record.keys():
            for name in names:
                if name not in record:
                    errors.add(row, name, f"field {name!r} is missing ({schema[name]}; send null if unknown)")
    if errors:
        return pl.DataFrame(), errors
    columns = []
    for name, dtype in schema.items():
        values = [r[name] for r in records]
        # Polars reads true/false as 1/0 into a number column; JSON booleans are no numbers here.
        # (map/set in C: ~15 ns a value, against a per-value Python check.)
        if dtype != pl.Boolean and bool in set(map(type, values)):
            series = _fallback_column(name, values, dtype, errors)
            columns.append(series)
            continue
        try:
            series = pl.Series(name, values, dtype=dtype, strict=True)
        except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
            series = _fallback_column(name, values, dtype, errors)
        columns.append(series)
    return pl.DataFrame(columns), errors


def add_reasons(errors: RowErrors, reasons: pl.Series) -> None:
    """Add the reasons of :meth:`Scorer.validate` (null where a row fits) to ``errors``, field by field."""
    bad = reasons.is_not_null()
    if not bad.any():
        return
    for row, reason in zip(bad.arg_true().to_list(), reasons.filter(bad).to_list(), strict=True):
        for part in reason.split("; "):
            match = _FIELD.search(part)
            name = match.group(1) if match else None
            if any(f == name for f, _ in errors.by_row.get(row, [])):
                continue  # already said, in JSON terms, by records_frame
            errors.add(row, name, part)
