"""The changelog format of a reference table, and turning polled records into one change set.

A changelog topic holds JSON values, applied in offset order (per partition; produce
records keyed by the table key, or use one partition, so the changes of one key stay in
order):

========================================================  ===========================================
``{"op": "upsert", "key": K, "value": {"city": ...}}``    insert the row with key ``K``, or replace it
``{"op": "delete", "key": K}``                            remove the row with key ``K`` (absent: no-op)
``{"zipcode": "98101", "city": ...}`` (no ``"op"``)       upsert of a plain row holding its key column(s)
a null value (Kafka tombstone) with record key ``K``      delete
========================================================  ===========================================

``K`` is the key's value (``"98101"`` or ``98101``: it is cast to the key column's type) or,
for a composite key, an object ``{"zipcode": ..., "year": ...}``; a tombstone's record key
is read as JSON, else as UTF-8 text. ``"insert"`` and ``"update"`` are accepted for
``"upsert"``. An upsert replaces the whole row: columns the value lacks become null,
fields the table does not have are ignored, and ``"key"`` wins over key columns repeated
in ``"value"``.

Anything else is **rejected** with a reason (not JSON, unknown op, no key, a value that
does not fit the table's schema...): the table logs it, keeps it in
:attr:`~headwater.stream.tables.ReferenceTable.rejected`, optionally writes it to a
dead-letter topic, and goes on with the next record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import polars as pl

UPSERT_OPS = frozenset({"upsert", "insert", "update"})
DELETE_OPS = frozenset({"delete"})
_SCALARS = (str, int, float, bool)
_NESTED = (pl.List, pl.Array, pl.Struct)
_DELETE = "__headwater_delete"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A changelog record that was not applied, and why."""

    topic: str
    partition: int
    offset: int
    reason: str
    key: bytes | None = None
    value: bytes | None = None

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}: {self.reason}"


@dataclass(slots=True)
class ChangeSet:
    """Valid changes of one poll, last change per key wins, and the rejected records."""

    upserts: pl.DataFrame  # full rows in the table's schema, one per key
    deletes: pl.DataFrame  # key columns only, keys that are removed
    rejected: list[Rejection] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.upserts.height or self.deletes.height)


@dataclass(slots=True)
class _Op:
    seq: int
    delete: bool
    row: dict[str, Any]  # key columns (+ the other columns for an upsert; fields outside the schema ignored)
    where: tuple[str, int, int, bytes | None, bytes | None]


class ChangelogReader:
    """Parses changelog records for a table with ``key`` columns and ``schema`` (see the module docstring)."""

    def __init__(self, key: Sequence[str], schema: Mapping[str, Any]) -> None:
        self.key = tuple(key)
        self.schema: dict[str, Any] = dict(schema)
        self._decoder = msgspec.json.Decoder()

    def read(
        self, records: Sequence[tuple[str, int, int, bytes | None, bytes | None]]
    ) -> ChangeSet:
        """``records`` as (topic, partition, offset, key, value), in the order to apply them."""
        ops: list[_Op] = []
        rejected: list[Rejection] = []
        for seq, where in enumerate(records):
            try:
                ops.append(self._parse(seq, where))
            except _Reject as exc:
                rejected.append(Rejection(*where[:3], str(exc), key=where[3], value=where[4]))
        changes = self._changes(ops)
        changes.rejected = sorted(rejected + changes.rejected, key=lambda r: (r.topic, r.partition, r.offset))
        return changes

    # -- one record -------------------------------------------------------------------

    def _parse(self, seq: int, where: tuple[str, int, int, bytes | None, bytes | None]) -> _Op:
        _, _, _, raw_key, raw = where
        if raw is None:
            if raw_key is None:
                raise _Reject("a tombstone (null value) without a record key: nothing to delete")
            return _Op(seq, True, self._key_columns(self._record_key(raw_key), "the record key"), where)
        try:
            doc = self._decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise _Reject(f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise _Reject(f"a changelog record must be a JSON object, got {type(doc).__name__}")
        if "op" not in doc:
            return _Op(seq, False, self._plain_row(doc), where)
        op = doc["op"]
        if not isinstance(op, str) or op.lower() not in UPSERT_OPS | DELETE_OPS:
            raise _Reject(f"unknown op {op!r}: expected 'upsert' (or 'insert'/'update') or 'delete'")
        if "key" not in doc or doc["key"] is None:
            raise _Reject(f"a {op!r} record needs a non-null \"key\"")
        key = self._key_columns(doc["key"], '"key"')
        if op.lower() in DELETE_OPS:
            return _Op(seq, True, key, where)
        value = doc.get("value")
        if not isinstance(value, dict):
            raise _Reject(f"an {op!r} record needs \"value\": an object of the row's columns, got {value!r}")
        return _Op(seq, False, value | key, where)  # fields outside the schema are never read

    def _record_key(self, raw_key: bytes) -> Any:
        try:
            return self._decoder.decode(raw_key)
        except msgspec.DecodeError:
            try:
                return raw_key.decode("utf-8")
            except UnicodeDecodeError:
                raise _Reject("the record key is neither JSON nor UTF-8 text") from None

    def _key_columns(self, key: Any, what: str) -> dict[str, Any]:
        if isinstance(key, dict):
            absent = [c for c in self.key if key.get(c) is None]
            if absent:
                raise _Reject(f"{what} {key!r} lacks key column(s) {', '.join(absent)}")
            return {c: key[c] for c in self.key}
        if len(self.key) > 1:
            raise _Reject(f"{what} must be an object with {', '.join(self.key)} (a composite key), got {key!r}")
        if key is None:
            raise _Reject(f"{what} is null")
        return {self.key[0]: key}

    def _plain_row(self, doc: dict[str, Any]) -> dict[str, Any]:
        absent = [c for c in self.key if doc.get(c) is None]
        if absent:
            raise _Reject(
                f"a record without \"op\" is read as a plain row, and this one has no {', '.join(absent)} "
                "(the table's key)"
            )
        return doc

    # -- types and last change per key, vectorised per column -----------------------------

    def _changes(self, ops: list[_Op]) -> ChangeSet:
        """Cast every op's columns to the schema (ops with a value that does not fit are rejected),
        then keep the last change of each key."""
        key = list(self.key)
        key_schema = {c: self.schema[c] for c in key}
        if not ops:
            return ChangeSet(pl.DataFrame(schema=self.schema), pl.DataFrame(schema=key_schema))
        only_deletes = all(op.delete for op in ops)
        bad: dict[int, str] = {}
        columns: list[pl.Series] = []
        for column, dtype in self.schema.items():
            if only_deletes and column not in self.key:
                continue
            values = [op.row.get(column) for op in ops]
            columns.append(self._column(column, dtype, values, bad))
        frame = pl.DataFrame(columns).with_columns(pl.Series(_DELETE, [op.delete for op in ops]))
        rejected = [Rejection(*ops[i].where[:3], reason, key=ops[i].where[3], value=ops[i].where[4])
                    for i, reason in bad.items()]
        if bad:
            frame = frame.filter(~pl.Series([i in bad for i in range(len(ops))]))
        # Changes are in offset order: the last one of a key is the one that counts.
        last = frame.unique(subset=key, keep="last", maintain_order=True)
        deleted = last.get_column(_DELETE)
        upserts = (pl.DataFrame(schema=self.schema) if only_deletes
                   else last.filter(~deleted).select(list(self.schema)))
        return ChangeSet(upserts, last.filter(deleted).select(key), rejected)

    @staticmethod
    def _column(column: str, dtype: Any, values: list[Any], bad: dict[int, str]) -> pl.Series:
        """``values`` as a ``dtype`` Series; positions whose value does not convert go to ``bad`` (as null)."""
        def reject_all(exc: Exception) -> pl.Series:
            for i, v in enumerate(values):
                if v is not None:
                    bad.setdefault(i, f"column {column!r}: values do not fit {dtype}: {exc}")
            return pl.Series(column, [None] * len(values), dtype=dtype)

        if not isinstance(dtype, _NESTED):
            # Lists or objects where scalars belong (Polars would turn ["a", "b"] into the text "[a,b]").
            for i, v in enumerate(values):
                if v is not None and not isinstance(v, _SCALARS):
                    bad.setdefault(i, f"column {column!r}: {v!r} is not a {dtype}")
                    values[i] = None
        try:
            raw = pl.Series(column, values, strict=False)
            series = raw.cast(dtype, strict=False)
        except Exception as exc:  # values Polars cannot hold in one column at all
            return reject_all(exc)
        for i in (series.is_null() & raw.is_not_null()).arg_true().to_list():
            bad.setdefault(i, f"column {column!r}: {values[i]!r} is not a {dtype}")
        return series


class _Reject(Exception):
    """Internal: this record is rejected, the message says why."""
