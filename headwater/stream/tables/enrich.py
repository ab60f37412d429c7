"""``Stream.enrich``: a vectorised left join of every micro-batch with a reference table.

Per micro-batch the step pins one version of the table (the same for every chunk of the
batch, see :meth:`ReferenceTable.pin`), casts the records' key column(s) to the table's key
type when that is declared or safe, and left-joins the batch's frame with the table in one
Polars join (``maintain_order="left"``): every input row comes out once, in order, with
the table's columns added (keys are unique in the table, so nothing is repeated).

A record whose key is not in the table (or is null, or absent) is handled by ``missing``:

- ``"null"`` (default): kept, the added columns are null;
- ``"flag"``: kept with nulls, and a boolean column (``flag``, default ``<table>_missing``)
  says which rows found no match;
- ``"dead_letter"``: sent to the app's dead-letter topic with the reason.

A key column whose type differs from the table's (int zip codes in the records, text in
the table) is an error that stops the app at its first batch, unless ``cast=True``
declares the conversion (values that do not convert then count as unknown keys). Integer
widths, text kinds and all-null columns are converted without asking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from headwater.errors import UserError
from headwater.stream.chunk import Chunk, Context, StepContractError, isolate
from headwater.stream.steps import BatchStep
from headwater.stream.tables.table import ReferenceTable, TableError, Version

MISSING = ("null", "flag", "dead_letter")
_FOUND = "__headwater_enrich_found"
_KEY = "__headwater_enrich_key"


class UnknownKeyError(UserError):
    """A record's key is not in the reference table (``missing="dead_letter"``)."""


class Enrich(BatchStep):
    """The batch step behind :meth:`headwater.stream.dsl.Stream.enrich` (see the module docstring)."""

    kind = "enrich"

    def __init__(
        self,
        name: str,
        table: ReferenceTable,
        *,
        on: str | Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        prefix: str = "",
        missing: str = "null",
        flag: str | None = None,
        cast: bool = False,
    ) -> None:
        super().__init__(name)
        if not isinstance(table, ReferenceTable):
            raise TableError(f"enrich() takes a ReferenceTable, got {type(table).__name__}",
                             hint="build one with ReferenceTable('zipcodes', frame_or_path, key='zipcode')")
        on_cols = table.key if on is None else ((on,) if isinstance(on, str) else tuple(on))
        if len(on_cols) != len(table.key):
            raise TableError(
                f"enrich({table.name!r}, on={list(on_cols)}): the table's key has {len(table.key)} column(s) "
                f"({', '.join(table.key)})", hint="name one record column per key column, in the same order")
        chosen = table.columns if columns is None else list(columns)
        unknown = [c for c in chosen if c not in table.columns]
        if unknown:
            raise TableError(f"enrich({table.name!r}): no column(s) {', '.join(map(repr, unknown))} to add",
                             hint=f"the table's non-key columns: {', '.join(table.columns) or '(none)'}")
        if missing not in MISSING:
            raise TableError(f"enrich({table.name!r}): missing must be one of {', '.join(MISSING)}, got {missing!r}")
        self.table = table
        self.on = on_cols
        self.columns = chosen
        self.prefix = prefix
        self.missing = missing
        self.flag = (flag or f"{table.name}_missing") if missing == "flag" else None
        self.cast = cast
        self.added = [prefix + c for c in chosen] + ([self.flag] if self.flag else [])
        if len(set(self.added)) != len(self.added):
            raise TableError(f"enrich({table.name!r}): the flag column {self.flag!r} is also a table column",
                             hint="pass flag='another_name'")
        self._right: tuple[Version, pl.DataFrame] | None = None

    # -- lifecycle, called by StreamApp.run ------------------------------------------------

    def open(self, broker: Any) -> None:
        """Restore the table from its changelog and follow it while the app runs."""
        self.table.start(broker)

    def close(self) -> None:
        self.table.stop()

    # -- a micro-batch ----------------------------------------------------------------------

    def apply(self, chunk: Chunk, ctx: Context) -> list[Chunk]:
        right = self._right_side(self.table.pin(ctx.dead))

        def run(part: Chunk) -> tuple[Chunk, pl.Series]:
            framed = part.as_frame()
            assert framed.frame is not None
            frame, found = self._join(framed.frame, right)
            return framed.with_frame(frame, None), found

        out: list[Chunk] = []
        for part, found in isolate(chunk, run, ctx, self.name):
            if self.missing == "dead_letter" and not found.all():
                assert part.frame is not None
                for i in (~found).arg_true().to_list():
                    ctx.dead_letter(part.src[i], self.name, UnknownKeyError(self._why(part.frame, i)))
                part = part.select(found.arg_true().to_list())
            if len(part):
                out.append(part)
        return out

    def transform(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, list[int] | None]:
        """The join against the table's current version (``apply`` pins one per batch instead)."""
        out, found = self._join(frame, self._right_side(self.table.pin(object())))
        if self.missing == "dead_letter" and not found.all():
            return out.filter(found), found.arg_true().to_list()
        return out, None

    def _right_side(self, version: Version) -> pl.DataFrame:
        """The table's frame shaped for the join, made once per table version."""
        cached = self._right
        if cached is not None and cached[0] is version:
            return cached[1]
        right = version.frame.select(
            *(pl.col(k).alias(f"{_KEY}{i}") for i, k in enumerate(self.table.key)),
            *(pl.col(c).alias(self.prefix + c) for c in self.columns),
            pl.lit(True).alias(_FOUND),
        )
        self._right = (version, right)
        return right

    def _join(self, frame: pl.DataFrame, right: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
        clash = [c for c in self.added if c in frame.columns]
        if clash:
            raise StepContractError(
                f"enrich {self.name!r}: the records already have field(s) {', '.join(map(repr, clash))} "
                f"that table {self.table.name!r} would add",
                hint="pass prefix='zip_' (or another) or columns=[...] to enrich() to add other names",
            )
        keys = [self._key_expr(frame, col, key).alias(f"{_KEY}{i}")
                for i, (col, key) in enumerate(zip(self.on, self.table.key, strict=True))]
        names = [f"{_KEY}{i}" for i in range(len(keys))]
        joined = frame.with_columns(keys).join(right, on=names, how="left", maintain_order="left")
        if joined.height != frame.height:  # keys are unique in a table; this would be a bug here
            raise StepContractError(f"enrich {self.name!r}: the join gave {joined.height} rows for {frame.height}")
        found = joined.get_column(_FOUND).is_not_null()
        out = joined.drop([*names, _FOUND])
        if self.flag is not None:
            out = out.with_columns((~found).alias(self.flag))
        return out, found

    def _key_expr(self, frame: pl.DataFrame, column: str, key: str) -> pl.Expr:
        target = self.table.schema[key]
        if column not in frame.columns:
            return pl.lit(None, dtype=target)  # no record of the batch has it: all unknown
        dtype = frame.schema[column]
        if dtype != target and not (self.cast or _convertible(dtype, target)):
            raise StepContractError(
                f"enrich {self.name!r}: the records' {column!r} is {dtype} but the key {key!r} of table "
                f"{self.table.name!r} is {target}; they would never match",
                hint=f"pass cast=True to enrich() to cast {column!r} to {target} (values that do not convert "
                f"count as unknown keys), or give the table's key that type with schema={{{key!r}: pl.{dtype}}}",
            )
        return pl.col(column) if dtype == target else pl.col(column).cast(target, strict=False)

    def _why(self, frame: pl.DataFrame, row: int) -> str:
        parts = []
        for column in self.on:
            if column not in frame.columns:
                return f"the record has no field {column!r}, the key of table {self.table.name!r}"
            value = frame.get_column(column)[row]
            if value is None:
                return f"the record's {column!r} is null: no row of table {self.table.name!r} to join"
            parts.append(f"{column}={value!r}")
        return f"table {self.table.name!r} has no row for {', '.join(parts)}"


def _convertible(source: pl.DataType, target: pl.DataType) -> bool:
    """Casts that cannot change which keys match: an all-null column, integer widths, text kinds."""
    if source == pl.Null:
        return True
    if source.is_integer() and target.is_integer():
        return True
    text = (pl.String, pl.Categorical, pl.Enum)
    return isinstance(source, text) and isinstance(target, text)
