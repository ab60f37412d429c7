"""Serialisation of keys and values: raw bytes, UTF-8 text, JSON and typed schemas.

A serde turns the bytes of a whole micro-batch into Python values (for record-level
functions) or straight into a Polars frame (for batch steps), and back. Decoding never
raises for a bad record: it reports the index and the error, and the kernel sends that
record to the dead-letter topic.

Measured here on 10,000 JSON values of ~90 bytes, one core: msgspec decodes ~2.5-2.9 M
values/s called value by value (orjson ~2.1-2.4 M; msgspec on the joined batch was no
faster), and it tells exactly which value is bad: a batch is decoded by one ``map`` over
its values and, only when that raises, value by value to find the bad ones (see
:func:`apply_each`). ``polars.read_ndjson`` with full schema inference ran at ~0.7 M/s;
with its default inference window it silently drops fields first seen after row 100, and
one bad line fails the whole batch. Typed schemas decode each value into a msgspec
``Struct`` (~4 M/s, validated) and build typed columns from its fields (~2 M/s in all).
``Json()`` does the same for a batch whose objects share the fields of its first one
(:class:`_ObjectShape`: a Struct of ``Any`` fields, ~1.9 M/s in all against ~1.25 M/s
through dicts), and goes through dicts otherwise.
Frames are encoded with ``DataFrame.write_ndjson`` (~3-4 M rows/s) when every column type
is one it writes (it panics on Binary); otherwise, and for rows, with msgspec (~4 M/s;
orjson.dumps ran at ~0.6 M/s here). Measured again on the benchmark's 8-field output
(9,000 rows): ``write_ndjson`` and splitting the lines 3.5 ms, msgspec over ``to_dicts``
10.5 ms, over Structs built from ``iter_rows`` 5.7 ms, polars' ``struct.json_encode`` 2.7 ms
but as str (encoding each to bytes costs the difference): the writer stays. Its bytes are
msgspec's for the types it is used on, once ``1e+16`` is written ``1e16`` (see
:func:`ndjson_lines`), so a record is written the same whether it reached the sink as a row
or in a frame.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import operator
import typing
import weakref
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Annotated, Any

import msgspec
import polars as pl

from headwater.errors import UserError

DecodeErrors = list[tuple[int, Exception]]

_INT64 = msgspec.Meta(ge=-(2**63), le=2**63 - 1)


def apply_each(
    fn: Callable[[Any], Any], items: Sequence[Any], fast: Callable[[Any], Any] | None = None
) -> tuple[list[Any], list[int] | None, DecodeErrors]:
    """``fn`` on every item: (results of the items that did not raise, their indexes or None if all, errors).

    ``fast``, a C function doing the same for good items (a msgspec decoder), runs first
    over the whole batch through ``map``; only when it raises does the batch go item by
    item through ``fn`` to find which items are bad.
    """
    if fast is not None:
        try:
            return list(map(fast, items)), None, []
        except Exception:  # noqa: S110 - some item is bad: found one by one below
            pass
    out: list[Any] = []
    append = out.append
    errors: DecodeErrors = []
    for i, item in enumerate(items):
        try:
            append(fn(item))
        except Exception as exc:  # a bad record must never stop the batch
            errors.append((i, exc))
    if not errors:
        return out, None, errors
    bad = {i for i, _ in errors}
    return out, [i for i in range(len(items)) if i not in bad], errors


class SerializationError(UserError):
    """A value could not be encoded or decoded (sent to the dead-letter topic, never raised out of an app)."""


class Serde:
    """Base of every serde: how the records of one topic become Python values and columns.

    Subclasses implement :meth:`decode` and :meth:`encode` for one value; the batch methods
    have good defaults. ``row_type`` tells how to rebuild rows from a frame (``dict``, a
    Struct class, or ``"value"`` for scalars kept in a column named ``value``), and
    ``schema`` the Polars types of the columns when they are known in advance.
    """

    row_type: Any = dict

    @property
    def schema(self) -> dict[str, pl.DataType] | None:
        return None

    def decode(self, data: bytes | None) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> bytes | None:
        raise NotImplementedError

    def decode_rows(self, values: Sequence[bytes | None]) -> tuple[list[Any], list[int] | None, DecodeErrors]:
        """Decode every value: (rows, indexes of the decoded values or None if all, errors by index)."""
        return apply_each(self.decode, values)

    def encode_rows(self, rows: Sequence[Any]) -> tuple[list[Any], list[int] | None, DecodeErrors]:
        """Encode every row: (encoded values, indexes of the encoded rows or None if all, errors by index)."""
        return apply_each(self.encode, rows)

    def encode_frame(self, frame: pl.DataFrame) -> list[bytes | None]:
        """Encode every row of a frame in one go; raise if any row cannot be (the caller then goes row by row)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class Bytes(Serde):
    """Raw bytes, as stored: nothing is decoded. In a frame, one Binary column ``value``."""

    row_type: Any = "value"

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {"value": pl.Binary()}

    def decode(self, data: bytes | None) -> bytes | None:
        return data

    def decode_rows(self, values: Sequence[bytes | None]) -> tuple[list[Any], list[int] | None, DecodeErrors]:
        return list(values), None, []

    def encode(self, value: Any) -> bytes | None:
        if value is None or isinstance(value, bytes):
            return value
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        raise SerializationError(f"Bytes() encodes bytes, got {type(value).__name__}")

    def encode_frame(self, frame: pl.DataFrame) -> list[bytes | None]:
        return [self.encode(v) for v in _single_column(frame, self)]


class Str(Serde):
    """UTF-8 text. Encoding also takes bytes (as they are) and integers (as decimal text), handy for keys."""

    row_type: Any = "value"

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {"value": pl.String()}

    def decode(self, data: bytes | None) -> str | None:
        return None if data is None else data.decode("utf-8")

    def encode(self, value: Any) -> bytes | None:
        if value is None or isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value).encode("ascii")
        raise SerializationError(f"Str() encodes text, got {type(value).__name__}")

    def encode_frame(self, frame: pl.DataFrame) -> list[bytes | None]:
        return [self.encode(v) for v in _single_column(frame, self)]


class Json(Serde):
    """JSON values (msgspec). Record functions get dicts (or lists, numbers...).

    In a frame, JSON objects become rows and their fields columns, with types inferred from
    the whole batch (``polars.from_dicts``); a field a record lacks reads as null. Declare a
    :class:`Schema` for fixed, validated column types.
    """

    def __init__(self) -> None:
        self._decoder = msgspec.json.Decoder()
        self._encoder = msgspec.json.Encoder()
        self._shape: _ObjectShape | None = None
        self._misses = 0
        self._skip = 0
        # Set by the topology when a step that passes values on reads this source's frames first
        # (Stream.check): only then is each frame checked for exactness (see exact_frame).
        self.mark_exact = False

    def decode(self, data: bytes | None) -> Any:
        if data is None:
            return None  # a tombstone reads as JSON null
        return self._decoder.decode(data)

    def try_decode_frame(self, values: Sequence[bytes | None]) -> pl.DataFrame | None:
        """The batch as a frame in one go, or None: then decode rows and build the frame from them.

        Succeeds when every value is a JSON object whose fields are among those of the first
        value, and the frame is then exactly the one :func:`rows_to_frame` builds from
        :meth:`decode_rows` (see :class:`_ObjectShape`). The field set is learnt from the
        first value of a batch and kept for the next ones: records of a topic usually share
        one shape. When shapes vary, a miss costs a partial decode, so after ``k`` misses in
        a row the next ``2**k - 1`` batches (at most 63) skip the attempt.
        """
        if not values:
            return None
        if self._skip:
            self._skip -= 1
            return None
        shape = self._shape
        frame = None if shape is None else shape.frame(values, self.mark_exact)
        if frame is None:
            learnt = _ObjectShape.learn(self._decoder, values[0])
            if learnt is not None and (shape is None or learnt.names != shape.names):
                self._shape = learnt
                frame = learnt.frame(values, self.mark_exact)
        if frame is None:
            self._misses = min(self._misses + 1, 6)
            self._skip = (1 << self._misses) - 1
            return None
        self._misses = 0
        return frame

    def encode(self, value: Any) -> bytes:
        return self._encoder.encode(value)

    def decode_rows(self, values: Sequence[bytes | None]) -> tuple[list[Any], list[int] | None, DecodeErrors]:
        return apply_each(self.decode, values, self._decoder.decode)

    def encode_rows(self, rows: Sequence[Any]) -> tuple[list[Any], list[int] | None, DecodeErrors]:
        return apply_each(self.encode, rows, self._encoder.encode)

    def encode_frame(self, frame: pl.DataFrame) -> list[bytes | None]:
        return ndjson_lines(frame, self._encoder)


class Schema(Serde):
    """JSON values with declared types: a msgspec ``Struct`` class or a column mapping.

    ``Schema(House)`` decodes each value into a ``House`` (missing required fields and wrong
    types are errors); record functions get ``House`` instances. ``Schema({"price":
    pl.Float64, "beds": pl.Int64})`` decodes into dicts of those columns (every field
    optional, unknown fields ignored, wrong types errors); Python types ``int``, ``float``,
    ``str``, ``bool`` are accepted in place of Polars ones. Either way a batch step gets
    typed columns.
    """

    def __init__(self, spec: type[msgspec.Struct] | Mapping[str, Any]) -> None:
        if isinstance(spec, type) and issubclass(spec, msgspec.Struct):
            self.spec: Any = spec
            self._row_struct: type[msgspec.Struct] = spec
            self._schema = struct_schema(spec)
            self._rows_type: Any = spec
            self.row_type = spec
        elif isinstance(spec, Mapping) and spec:
            self.spec = dict(spec)
            self._schema = {name: _polars_type(name, t) for name, t in spec.items()}
            fields = [(name, _python_type(dtype) | None, None) for name, dtype in self._schema.items()]
            # gc=False: JSON values form no reference cycles, and 10,000 Structs a batch tracked by
            # the garbage collector cost its collections (see _ObjectShape).
            self._row_struct = msgspec.defstruct("Row", fields, gc=False)
            # TypedDict: record functions get plain dicts, validated, every key optional.
            make_typed_dict: Any = typing.TypedDict
            self._rows_type = make_typed_dict("Row", {name: t for name, t, _ in fields}, total=False)
            self.row_type = dict
        else:
            raise UserError(
                f"Schema() takes a msgspec.Struct class or a non-empty mapping of column -> type, got {spec!r}",
                hint='for example Schema({"price": pl.Float64, "beds": pl.Int64})',
            )
        self._rows_decoder = msgspec.json.Decoder(self._rows_type)
        self._struct_decoder = msgspec.json.Decoder(self._row_struct)
        self._encoder = msgspec.json.Encoder()
        self._fields = tuple(self._row_struct.__struct_fields__)

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return dict(self._schema)

    def decode(self, data: bytes | None) -> Any:
        if data is None:
            raise SerializationError("the record has no value (a tombstone); a Schema needs a JSON object")
        return self._rows_decoder.decode(data)

    def decode_frame(self, values: Sequence[bytes | None]) -> tuple[pl.DataFrame, list[int] | None, DecodeErrors]:
        """Decode straight into typed columns (one Struct per value, then one list per field)."""
        structs, kept, errors = apply_each(self._decode_struct, values, self._struct_decoder.decode)
        return structs_to_frame(structs, self._fields, self._schema), kept, errors

    def decode_rows(self, values: Sequence[bytes | None]) -> tuple[list[Any], list[int] | None, DecodeErrors]:
        return apply_each(self.decode, values, self._rows_decoder.decode)

    def _decode_struct(self, data: bytes | None) -> Any:
        if data is None:
            raise SerializationError("the record has no value (a tombstone); a Schema needs a JSON object")
        return self._struct_decoder.decode(data)

    def encode(self, value: Any) -> bytes:
        if self.row_type is dict or not isinstance(value, self.row_type):
            value = msgspec.convert(value, self._rows_type, from_attributes=True)  # validates
        return self._encoder.encode(value)

    def encode_frame(self, frame: pl.DataFrame) -> list[bytes | None]:
        # Exact rather than fast: every row is validated against the schema.
        return [self.encode(row) for row in frame.to_dicts()]

    def __repr__(self) -> str:
        name = self.spec.__name__ if isinstance(self.spec, type) else self.spec
        return f"Schema({name})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(("Schema", repr(self)))


# -- frames --------------------------------------------------------------------------

# Types polars' NDJSON writer writes byte for byte as msgspec writes the same values from
# ``to_dicts`` (compared on random frames in tests/stream/test_sink_batch.py), once exponents
# are fixed (see ndjson_lines). Not in the list: Float32 (polars writes the shortest f32 text,
# msgspec that of the f64 it becomes), Datetime (a space, not "T"), Binary and Object
# (the writer panics), Decimal, Duration, Time, Categorical: those frames go through msgspec.
_NDJSON_SAFE = (pl.Boolean, pl.String, pl.Null, pl.Date, pl.Float64, pl.Int8, pl.Int16, pl.Int32, pl.Int64,
                pl.Int128, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)


def _writes_ndjson(dtype: Any) -> bool:
    """Whether polars' NDJSON writer writes this type as msgspec does (and does not panic on it)."""
    if isinstance(dtype, _NDJSON_SAFE):
        return True
    if isinstance(dtype, pl.List | pl.Array):
        return _writes_ndjson(dtype.inner)
    if isinstance(dtype, pl.Struct):
        return all(_writes_ndjson(f.dtype) for f in dtype.fields)
    return False


def _holds_text(dtype: Any) -> bool:
    if isinstance(dtype, pl.List | pl.Array):
        return _holds_text(dtype.inner)
    if isinstance(dtype, pl.Struct):
        return any(_holds_text(f.dtype) for f in dtype.fields)
    return isinstance(dtype, pl.String)


def _exponents_fixable(frame: pl.DataFrame) -> bool:
    """Whether every ``e+`` polars wrote is a number's exponent (no name or text value holds one)."""
    if any("e+" in name for name in frame.columns):
        return False
    searches: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.String):
            searches.append(pl.col(name).str.contains("e+", literal=True).any())
        elif isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.String):  # e.g. check's flag lists
            searches.append(pl.col(name).list.eval(pl.element().str.contains("e+", literal=True)).list.any().any())
        elif _holds_text(dtype):
            return False  # text deeper inside lists or structs: not worth searching, msgspec writes it
    if not searches:
        return True
    return not frame.select(pl.any_horizontal(searches).fill_null(False)).item()


def ndjson_lines(frame: pl.DataFrame, encoder: msgspec.json.Encoder) -> list[bytes | None]:
    """One JSON object per row, the bytes msgspec writes for ``frame.to_dicts()``, in one call when it can.

    Polars' writer (~3x faster than msgspec over ``to_dicts``) when every column type is one
    it writes as msgspec does. The one difference left is the exponent of large floats
    (polars ``1e+16``, msgspec ``1e16``): fixed by removing ``e+`` from the output when no
    column name or text value holds one, else the frame goes through msgspec.
    """
    if frame.height == 0:
        return []
    if frame.width and all(_writes_ndjson(t) for t in frame.dtypes):
        buf = io.BytesIO()
        frame.write_ndjson(buf)
        data = buf.getvalue()
        # b"+" first: one memchr (0.3 ms per 2 MB), where searching b"e+" took 4 ms.
        if b"+" in data and b"e+" in data:
            # Exponents among text that may hold "e+" too: msgspec below.
            data = data.replace(b"e+", b"e") if _exponents_fixable(frame) else b""
        if data:
            lines: list[bytes | None] = list(data.split(b"\n"))
            if lines and lines[-1] == b"":
                lines.pop()
            if len(lines) == frame.height:
                return lines
    encode = encoder.encode
    return [encode(row) for row in frame.to_dicts()]


def _single_column(frame: pl.DataFrame, serde: Serde) -> list[Any]:
    if frame.width != 1:
        raise SerializationError(
            f"{serde!r} encodes a frame of one column, got columns {frame.columns}",
            hint="select the column to write in the last map_batch",
        )
    return frame.to_series(0).to_list()


_SIMPLE = {int: pl.Int64(), float: pl.Float64(), str: pl.String(), bool: pl.Boolean()}


def struct_schema(struct: type[msgspec.Struct]) -> dict[str, pl.DataType]:
    """Polars types of a Struct's fields where they follow from the annotation (int, float, str, bool, optional)."""
    out: dict[str, pl.DataType] = {}
    for field in msgspec.structs.fields(struct):
        t = field.type
        args = typing.get_args(t)
        if args and type(None) in args and len(args) == 2:
            t = next(a for a in args if a is not type(None))
        if typing.get_origin(t) is Annotated:
            t = typing.get_args(t)[0]
        dtype = _SIMPLE.get(t)
        if dtype is not None:
            out[field.name] = dtype
    return out


def structs_to_frame(
    structs: Sequence[Any], fields: Sequence[str], schema: Mapping[str, pl.DataType]
) -> pl.DataFrame:
    """Columns from Struct instances: one list per field, typed by ``schema`` where known."""
    if len(schema) == len(fields):
        # map(attrgetter) iterates in C: ~25 % faster than a getattr comprehension per field.
        columns = {name: list(map(operator.attrgetter(name), structs)) for name in fields}
        return pl.DataFrame(columns, schema=dict(schema))
    # Nested or unusual field types: let polars infer from builtins (datetimes kept as objects).
    rows = msgspec.to_builtins(structs, builtin_types=(dt.datetime, dt.date, dt.time, bytes))
    return pl.from_dicts(rows, schema_overrides=dict(schema), infer_schema_length=None)


_POLARS_FROM_PYTHON: Mapping[Any, Callable[[], pl.DataType]] = {
    int: pl.Int64,
    float: pl.Float64,
    str: pl.String,
    bool: pl.Boolean,
    bytes: pl.Binary,
    dt.datetime: pl.Datetime,
    dt.date: pl.Date,
}


def _polars_type(name: str, t: Any) -> pl.DataType:
    if isinstance(t, pl.DataType):
        return t
    if isinstance(t, type) and issubclass(t, pl.DataType):
        return t()
    factory = _POLARS_FROM_PYTHON.get(t)
    if factory is None:
        raise UserError(
            f"Schema column {name!r} has type {t!r}, which is not a Polars type",
            hint="use a Polars type such as pl.Float64, pl.Int64, pl.String, pl.Boolean, pl.List(pl.Int64)",
        )
    return factory()


def _python_type(dtype: Any) -> Any:
    """The type msgspec validates a column's JSON value against."""
    if dtype.is_integer():
        return Annotated[int, _INT64] if dtype != pl.UInt64 else Annotated[int, msgspec.Meta(ge=0, le=2**64 - 1)]
    if dtype.is_float():
        return float
    if isinstance(dtype, pl.String):
        return str
    if isinstance(dtype, pl.Boolean):
        return bool
    if isinstance(dtype, pl.Datetime):
        return dt.datetime
    if isinstance(dtype, pl.Date):
        return dt.date
    if isinstance(dtype, pl.List | pl.Array):
        return list[_python_type(dtype.inner)]  # type: ignore[misc]
    return Any


def rows_to_frame(
    rows: Sequence[Any], row_type: Any = None, schema: Mapping[str, pl.DataType] | None = None
) -> pl.DataFrame:
    """A frame from rows: dicts or Structs give one column per field, scalars one column ``value``.

    Raises TypeError when the rows do not fit one frame (mixed kinds, conflicting types).
    """
    if not rows:
        return pl.DataFrame(schema=dict(schema) if schema else None)
    first = rows[0]
    if isinstance(first, msgspec.Struct):
        kind = type(first)
        if not all(type(r) is kind for r in rows):
            raise TypeError(f"a batch step needs rows of one kind; got {kind.__name__} mixed with other values")
        return structs_to_frame(rows, kind.__struct_fields__, _struct_schema_cached(kind))
    if isinstance(first, dict) or row_type is dict:
        for r in rows:
            if not isinstance(r, dict):
                raise TypeError(f"a batch step needs JSON objects (dicts), got {type(r).__name__}: {r!r:.80}")
        if schema:
            return pl.from_dicts(rows, schema=dict(schema))
        return dicts_to_frame(rows)
    if schema and list(schema) == ["value"]:
        return pl.DataFrame({"value": rows}, schema=dict(schema))
    return pl.DataFrame({"value": rows})


def frame_to_rows(frame: pl.DataFrame, row_type: Any = None) -> list[Any]:
    """Rows back from a frame: Structs of ``row_type`` when its fields are the columns, scalars for ``"value"``."""
    if row_type == "value" and frame.columns == ["value"]:
        return frame.to_series(0).to_list()
    dicts = frame.to_dicts()
    if (
        isinstance(row_type, type)
        and issubclass(row_type, msgspec.Struct)
        and set(frame.columns) == set(row_type.__struct_fields__)
    ):
        try:
            return msgspec.convert(dicts, list[row_type])
        except msgspec.ValidationError:
            return dicts  # columns changed type in a batch step: the rows stay dicts
    return dicts


@lru_cache(maxsize=256)
def _struct_schema_cached(struct: type[msgspec.Struct]) -> dict[str, pl.DataType]:
    return struct_schema(struct)


def dicts_to_frame(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """One column per key (first-seen order), types inferred over the whole batch.

    Same types as ``pl.from_dicts(rows, infer_schema_length=None)`` (supertypes: an int
    column with one float becomes Float64; mixed numbers and text become String, numbers
    written as Python writes them), about 3x faster: columns are built from one list each
    instead of row by row.
    """
    names = list(rows[0])
    extra = set().union(*rows).difference(names)
    if extra:
        seen = set(names)
        for row in rows:
            for name in row:
                if name not in seen:
                    seen.add(name)
                    names.append(name)
    if not names:
        return pl.DataFrame([{}] * len(rows))  # objects without fields: no column, but one row each
    return _columns_frame(names, [[row.get(name) for row in rows] for name in names])


def _columns_frame(names: Sequence[str], columns: Sequence[list[Any]], mark_exact: bool = False) -> pl.DataFrame:
    """A frame of Python value lists, each column's type inferred over all its values (supertypes).

    With ``mark_exact``, a frame whose columns each hold values of one JSON type (not null, no
    nested value) gives back exactly the values it was built from: it is marked, see
    :func:`exact_frame` (costs ~0.35 ms per 10,000 values, so only when asked).
    """
    series = [pl.Series(name, column, strict=False) for name, column in zip(names, columns, strict=True)]
    frame = pl.DataFrame(series)
    if mark_exact and all(_exact_column(s, column) for s, column in zip(series, columns, strict=True)):
        _EXACT[id(frame)] = weakref.ref(frame, functools.partial(_forget, id(frame)))
    return frame


def _exact_column(series: pl.Series, column: list[Any]) -> bool:
    """Whether the column holds its values unchanged: nulls (maybe absent fields) and mixed types make it not."""
    if series.null_count() or not isinstance(series.dtype, _FLAT):
        return False
    # One Python type throughout, else some values were converted: integers among floats become
    # floats, booleans among integers integers, numbers among text text. ~0.35 ms per 10,000 values.
    return len(set(map(type, column))) == 1


_FLAT = (pl.Int64, pl.UInt64, pl.Int128, pl.Float64, pl.String, pl.Boolean)


# Frames built by _columns_frame that hold exactly their source values (id -> weak reference).
# Kept beside the frame, not on it: any operation on a frame gives a new, unmarked frame.
_EXACT: dict[int, weakref.ref[pl.DataFrame]] = {}


def _forget(key: int, _ref: Any) -> None:
    _EXACT.pop(key, None)


def exact_frame(frame: pl.DataFrame) -> bool:
    """Whether ``frame`` holds exactly the values it was decoded from, row by row and field by field.

    True only for a frame made by a ``Json()`` source whose ``mark_exact`` is set (the topology
    sets it when ``Stream.check`` reads the source first) from objects that all have the same fields,
    none null, each field of one JSON type throughout the batch. Otherwise converting values to
    a frame may have changed some: integers in a column that also holds fractions become floats,
    numbers in a column that also holds text become text, and a field a record lacks becomes a
    null. Steps that pass values on (``Stream.check``) then take them from the decoded records.
    """
    ref = _EXACT.get(id(frame))
    return ref is not None and ref() is frame


class _ObjectShape:
    """Decodes JSON objects with known fields straight into columns: the fast path of :meth:`Json.try_decode_frame`.

    Each value is decoded into a Struct with one ``Any`` field per known name (default None,
    unknown fields an error), and each column is taken from the Structs with
    ``map(attrgetter)``, iterating in C. Against decoding dicts and a ``row.get`` per row and
    field (:func:`dicts_to_frame`), this measured 1.5x faster on 8-field records (10,000
    values: 5.2 ms against 7.9) and 1.65x on 23-field ones (17 ms against 29); decoding the
    batch as one JSON array was slower than value by value, and ``polars.read_ndjson``
    with a known schema no faster (4.9 ms) and not equivalent (types fixed by the schema,
    not inferred from the batch).

    Why the frame is the one :func:`dicts_to_frame` builds: a missing field and a null both
    read as None there, as here; its columns are the first row's fields in order, then
    fields first seen later. The fast path requires the first value to hold exactly the
    known fields in that order, so with unknown fields forbidden no later field can exist,
    and every column has the same values, hence (same constructor) the same type.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = names
        attrs = [f"f{i}" for i in range(len(names))]  # JSON keys need not be identifiers: renamed
        # gc=False: decoded JSON cannot form reference cycles, and untracked objects are cheaper.
        struct = msgspec.defstruct(
            "JsonObject",
            [(attr, Any, None) for attr in attrs],
            rename=dict(zip(attrs, names, strict=True)),
            forbid_unknown_fields=True,
            gc=False,
        )
        self._decode = msgspec.json.Decoder(struct).decode
        self._getters = [operator.attrgetter(attr) for attr in attrs]
        self._first = msgspec.json.Decoder().decode

    @classmethod
    def learn(cls, decoder: msgspec.json.Decoder[Any], value: bytes | None) -> _ObjectShape | None:
        """The shape of ``value`` if it is a JSON object with fields, else None."""
        try:
            obj = decoder.decode(value)  # type: ignore[arg-type]
        except Exception:  # a bad record: no shape to learn from it
            return None
        if not isinstance(obj, dict) or not obj:
            return None
        return cls(list(obj))

    def frame(self, values: Sequence[bytes | None], mark_exact: bool = False) -> pl.DataFrame | None:
        """The values as a frame, or None if any value is not an object of these fields (or the first lacks one)."""
        try:
            first = self._first(values[0])  # type: ignore[arg-type]
            if not isinstance(first, dict) or list(first) != self.names:
                return None
            structs = list(map(self._decode, values))  # type: ignore[arg-type]
        except Exception:  # a bad or differently shaped value: the caller goes the general way
            return None
        return _columns_frame(self.names, [list(map(getter, structs)) for getter in self._getters], mark_exact)
