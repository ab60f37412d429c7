"""The steps of a stream app and the nodes of its topology: what runs on each micro-batch.

Two kinds of step, one interface (``apply(chunk, ctx) -> list[Chunk]``):

- **record steps** (``map``, ``filter``/``branch``/``key_by`` with a function,
  ``flat_map``, ``peek``) call a Python function once per row; a row whose call raises goes
  to the dead letters and the others go on;
- **batch steps** (:class:`BatchStep`: ``map_batch``, ``filter``/``branch``/``key_by`` with
  a Polars expression, and later ``join_table`` and ``predict``) run once on the chunk's
  frame. When one raises, :func:`~headwater.stream.chunk.isolate` bisects the chunk so
  that only the rows that fail alone are dead-lettered.

A step that breaks its contract (``map_batch`` returning another number of rows) raises
:class:`StepContractError`, which is a bug in the app, not bad data: it stops the app
before anything of that batch is committed.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import polars as pl

from headwater.stream.chunk import RECOVERABLE, Chunk, Context, StepContractError, isolate
from headwater.stream.serde import Bytes, DecodeErrors, Json, Schema, Serde

INHERIT = object()  # in Chunk.keys after a merge: "this row keeps its input key"


def _per_row(chunk: Chunk, ctx: Context, step: str, fn: Callable[[Any], Any]) -> tuple[list[Any], list[int] | None]:
    """``fn`` on every row: (results of the rows that did not raise, their positions or None if all)."""
    rows = chunk.as_rows().rows
    assert rows is not None
    results: list[Any] = []
    append = results.append
    bad: list[int] = []
    for i, row in enumerate(rows):
        try:
            append(fn(row))
        except Exception as exc:  # bad data or a bug for this row: dead-letter it, go on
            ctx.dead_letter(chunk.src[i], step, exc)
            bad.append(i)
    if not bad:
        return results, None
    dropped = set(bad)
    return results, [i for i in range(len(rows)) if i not in dropped]


class Step:
    """One operation applied to every chunk of a stream."""

    kind = "step"

    def __init__(self, name: str) -> None:
        self.name = name

    def apply(self, chunk: Chunk, ctx: Context) -> list[Chunk]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Map(Step):
    kind = "map"

    def __init__(self, name: str, fn: Callable[[Any], Any]) -> None:
        super().__init__(name)
        self.fn = fn

    def apply(self, chunk: Chunk, ctx: Context) -> list[Chunk]:
        results, idx = _per_row(chunk, ctx, self.name, self.fn)
        return [chunk.with_rows(results, idx)]


class FlatMap(Step):
    kind = "flat_map"

    def __init__(self, name: str, fn: Callable[[Any], Iterable[Any]]) -> None:
        super().__init__(name)
        self.fn = fn

    def apply(self, chunk: Chunk, ctx: Context) -> list[Chunk]:
        fn = self.fn
        # list() inside the guarded call: a generator failing half way dead-letters its row, with no partial output.
        results, idx = _per_row(chunk, ctx, self.name, lambda row: list(fn(row)))
        positions = range(len(chunk)) if idx is None else idx
        rows = [value for values in results for value in values]
        repeat = [pos for pos, values in zip(positions, results, strict=True) for _ in values]
        return [chunk.with_rows(rows, repeat)]


class Filter(Step):
    kind = "filter"

    def __init__(self, name: str, predicate: Callable[[Any], Any]) -> None:
        super().__init__(name)
        self.predicate = predicate

    def apply(self, chunk: Chunk, ctx: Context) -> list[Chunk]:
        results, idx = _per_row(chunk, ctx, self.name, self.predicate)
        positions = range(len(chunk)) if idx is None else idx
        return [chunk.select([pos for pos, keep in zip(positions, results, strict=True) if keep])]


class Peek(Step):
    kind = "peek"

    def __init__(self, name: str, fn: Callable[[Any], Any]) -> None:
        super().__init__(name)
        self.fn = fn

    def apply(self, chunk: Chunk, ctx: Context) -> list[Chunk]:
        _, idx = _per_row(chunk, ctx, self.name, self.fn)
        return [chunk if idx is None else chunk.select(idx)]


class KeyBy(Step):
    """New keys from a function of the value (encoded by the sink's key serde)."""

    kind = "key_by"

    def __init__(self, name: str, fn: Callable[[Any], Any]) -> None:
        super().__init__(name)
        self.fn = fn

    def apply(self, chunk: Chunk, ctx: Context) -> list[Chunk]:
        keys, idx = _per_row(chunk, ctx, self.name, self.fn)
        return [(chunk if idx is None else chunk.select(idx)).with_keys(keys)]


class BatchStep(Step):
    """A step over a whole frame: the fast path, and the shape of ``join_table`` and ``predict``.

    Subclasses implement :meth:`transform`, which gets the chunk's values as a frame and
    returns the new frame with ``rows``: None when output row ``i`` comes from input row
    ``i`` (same height), else the input row number of every output row (a filter or an
    inner join drops rows, an explode repeats them; keys, timestamps and headers follow).
    ``keeps_values`` is True for steps that only select rows, so the values stay as decoded.
    """

    keeps_values = False

    def transform(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, list[int] | None]:
        raise NotImplementedError

    def apply(self, chunk: Chunk, ctx: Context) -> list[Chunk]:
        def run(part: Chunk) -> Chunk:
            part = part.as_frame()
            assert part.frame is not None
            frame, rows = self.transform(part.frame)
            return part.with_frame(frame, rows, keep_hints=self.keeps_values)

        return isolate(chunk, run, ctx, self.name)


class MapBatch(BatchStep):
    kind = "map_batch"

    def __init__(self, name: str, fn: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
        super().__init__(name)
        self.fn = fn

    def transform(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, list[int] | None]:
        out = self.fn(frame)
        if isinstance(out, pl.LazyFrame):
            out = out.collect()
        if not isinstance(out, pl.DataFrame):
            raise StepContractError(
                f"map_batch step {self.name!r} returned {type(out).__name__}, not a polars DataFrame",
                hint="return the transformed frame, e.g. df.with_columns(...)",
            )
        if out.height != frame.height:
            raise StepContractError(
                f"map_batch step {self.name!r} returned {out.height} rows for {frame.height}; "
                "it must return one row per input row, in order (keys and headers follow by position)",
                hint="drop rows with .filter(pl.col(...) ...) and make several with .flat_map()",
            )
        return out, None


class FilterExpr(BatchStep):
    kind = "filter"
    keeps_values = True

    def __init__(self, name: str, predicate: pl.Expr) -> None:
        super().__init__(name)
        self.predicate = predicate

    def transform(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, list[int] | None]:
        mask = _mask(frame, self.predicate, self.name)
        return frame.filter(mask), mask.arg_true().to_list()


def _mask(frame: pl.DataFrame, predicate: pl.Expr, step: str) -> pl.Series:
    """The predicate as a boolean Series as long as the frame; null counts as False."""
    mask = frame.select(predicate).to_series()
    if mask.dtype != pl.Boolean:
        raise StepContractError(
            f"the predicate of step {step!r} gives {mask.dtype} values, not booleans",
            hint="compare, e.g. pl.col('price') > 0",
        )
    if mask.len() != frame.height:
        raise StepContractError(f"the predicate of step {step!r} gives {mask.len()} values for {frame.height} rows")
    return mask.fill_null(False)


class KeyByExpr(BatchStep):
    """New keys from an expression (or a column name) evaluated on the frame."""

    kind = "key_by"
    keeps_values = True

    def __init__(self, name: str, key: pl.Expr) -> None:
        super().__init__(name)
        self.key = key

    def apply(self, chunk: Chunk, ctx: Context) -> list[Chunk]:
        def run(part: Chunk) -> Chunk:
            framed = part.as_frame()
            assert framed.frame is not None
            keys = framed.frame.select(self.key).to_series().to_list()
            if len(keys) != len(part):
                raise StepContractError(f"the key of step {self.name!r} gives {len(keys)} values for {len(part)} rows")
            return part.with_keys(keys)

        return isolate(chunk, run, ctx, self.name)


class Branch:
    """Routes each row to the first predicate it satisfies (Kafka Streams' ``split``), else to ``default``."""

    kind = "branch"

    def __init__(self, name: str, predicates: Sequence[Callable[[Any], Any] | pl.Expr], default: bool) -> None:
        self.name = name
        self.predicates = list(predicates)
        self.default = default

    @property
    def ports(self) -> int:
        return len(self.predicates) + (1 if self.default else 0)

    def apply(self, chunk: Chunk, ctx: Context) -> list[list[Chunk]]:
        exprs = {k: p for k, p in enumerate(self.predicates) if isinstance(p, pl.Expr)}
        if exprs:

            def masks(part: Chunk) -> tuple[Chunk, dict[int, list[bool]]]:
                framed = part.as_frame()
                assert framed.frame is not None
                return framed, {k: _mask(framed.frame, p, self.name).to_list() for k, p in exprs.items()}

            parts = isolate(chunk, masks, ctx, self.name)
        else:
            parts = [(chunk, {})]
        out: list[list[Chunk]] = [[] for _ in range(self.ports)]
        for part, part_masks in parts:
            for port, positions in enumerate(self._route(part, part_masks, ctx)):
                if positions:
                    out[port].append(part.select(positions))
        return out

    def _route(self, part: Chunk, masks: dict[int, list[bool]], ctx: Context) -> list[list[int]]:
        positions: list[list[int]] = [[] for _ in range(self.ports)]
        needs_rows = len(masks) < len(self.predicates)
        rows = part.as_rows().rows if needs_rows else None
        default = len(self.predicates) if self.default else None
        for i in range(len(part)):
            route = default
            try:
                for k, predicate in enumerate(self.predicates):
                    mask = masks.get(k)
                    hit = mask[i] if mask is not None else predicate(rows[i])  # type: ignore[index, operator]
                    if hit:
                        route = k
                        break
            except Exception as exc:
                ctx.dead_letter(part.src[i], self.name, exc)
                continue
            if route is not None:
                positions[route].append(i)
        return positions


def merge_chunks(chunks: list[Chunk]) -> list[Chunk]:
    """The chunks of merged streams, in input order per partition.

    Chunks are put in input order; chunks whose rows interleave (two branches of one
    stream merged again) are combined into one, sorted by input position, as a
    record-at-a-time runtime would have emitted them.
    """
    chunks = sorted((c for c in chunks if len(c)), key=lambda c: c.src[0])
    if all(prev.src[-1] < nxt.src[0] for prev, nxt in itertools.pairwise(chunks)):
        return chunks
    src = [s for c in chunks for s in c.src]
    keys: list[Any] | None = None
    if any(c.keys is not None for c in chunks):
        keys = [k for c in chunks for k in (c.keys if c.keys is not None else [INHERIT] * len(c))]
    frames = [c.frame for c in chunks if c.frame is not None]
    combined: Chunk | None = None
    if len(frames) == len(chunks):
        try:
            combined = Chunk(src, frame=pl.concat(frames, how="diagonal_relaxed"))
        except RECOVERABLE:
            combined = None
    if combined is None:
        combined = Chunk(src, rows=[r for c in chunks for r in c.as_rows().rows or []])
    first = chunks[0]
    if all(c.pristine == first.pristine and c.row_type == first.row_type for c in chunks):
        combined.pristine, combined.row_type, combined.schema = first.pristine, first.row_type, first.schema
    combined.keys = keys
    order = sorted(range(len(src)), key=src.__getitem__)  # stable: flat_map outputs keep their order
    return [combined.select(order)]


def encode_chunk(chunk: Chunk, ctx: Context, step: str, topic: str, value: Serde, key: Serde) -> None:
    """Encode a chunk's rows for ``topic`` and add them to the batch's output (bad rows to the dead letters)."""
    table = ctx.table
    src = chunk.src
    if chunk.pristine is not None and chunk.pristine == value:
        table_values = table.values
        values: list[bytes | None] = [table_values[s] for s in src]
        positions: Sequence[int] = range(len(src))
    else:
        encoded: list[bytes | None] | None = None
        if chunk.frame is not None:
            try:
                encoded = value.encode_frame(chunk.frame)
            except RECOVERABLE:
                encoded = None  # go row by row to find the rows that cannot be encoded
        if encoded is not None and len(encoded) == len(src):
            values, positions = encoded, range(len(src))
        else:
            rows = chunk.as_rows().rows
            assert rows is not None
            values, idx, errors = value.encode_rows(rows)
            for i, exc in errors:
                ctx.dead_letter(src[i], step, exc)
            positions = range(len(src)) if idx is None else idx
    rows_src = src if isinstance(positions, range) else [src[i] for i in positions]
    if chunk.keys is not None:
        new_keys = chunk.keys if isinstance(positions, range) else [chunk.keys[i] for i in positions]
        keys, good = _encode_keys(new_keys, rows_src, table.keys, key, ctx, step)
        if good is not None:
            values = [values[i] for i in good]
            rows_src = [rows_src[i] for i in good]
    else:
        keys = list(map(table.keys.__getitem__, rows_src))
    out = ctx.output(topic)
    out.values.extend(values)
    out.keys.extend(keys)
    out.timestamps.extend(map(table.timestamps.__getitem__, rows_src))
    out.headers.extend(map(table.headers.__getitem__, rows_src))


def _encode_keys(
    new_keys: list[Any], rows_src: list[int], input_keys: list[bytes | None], key: Serde, ctx: Context, step: str
) -> tuple[list[bytes | None], list[int] | None]:
    """Keys set by ``key_by`` encoded (INHERIT: the input key): (keys, positions kept or None if all)."""
    out: list[bytes | None] = []
    good: list[int] = []
    for i, (k, s) in enumerate(zip(new_keys, rows_src, strict=True)):
        try:
            out.append(input_keys[s] if k is INHERIT else key.encode(k))
        except Exception as exc:
            ctx.dead_letter(s, step, exc)
        else:
            good.append(i)
    return out, None if len(good) == len(new_keys) else good


def decode_source(
    ctx: Context, topic: str, value: Serde, key: Serde | None, *, prefer_frame: bool, step: str
) -> list[Chunk]:
    """The micro-batch's records of ``topic``, decoded (as a frame when a batch step comes first)."""
    span = ctx.table.spans.get(topic)
    if span is None:
        return []
    start, stop = span
    values = ctx.table.values[start:stop]
    chunk: Chunk | None = None
    fast = value.try_decode_frame(values) if prefer_frame and isinstance(value, Json) else None
    if fast is not None:
        errors: DecodeErrors = []
        chunk = Chunk(_positions(start, stop, None), frame=fast, row_type=value.row_type, schema=value.schema)
    elif prefer_frame and isinstance(value, Schema):
        frame, kept, errors = value.decode_frame(values)
        chunk = Chunk(_positions(start, stop, kept), frame=frame, row_type=value.row_type, schema=value.schema)
    else:
        rows, kept, errors = value.decode_rows(values)
        chunk = Chunk(_positions(start, stop, kept), rows=rows, row_type=value.row_type, schema=value.schema)
        if prefer_frame:
            # Rows that do not make one frame stay rows: the first batch step isolates the misfits.
            with contextlib.suppress(*RECOVERABLE):
                chunk = chunk.as_frame()
    chunk.pristine = value
    for i, exc in errors:
        ctx.dead_letter(start + i, step, exc)
    if key is not None and not isinstance(key, Bytes):
        chunk = _check_keys(chunk, ctx, key, step)
    return [chunk] if len(chunk) else []


def _positions(start: int, stop: int, kept: list[int] | None) -> list[int]:
    return list(range(start, stop)) if kept is None else [start + i for i in kept]


def _check_keys(chunk: Chunk, ctx: Context, key: Serde, step: str) -> Chunk:
    keys = ctx.table.keys
    good: list[int] = []
    for pos, s in enumerate(chunk.src):
        try:
            key.decode(keys[s])
        except Exception as exc:
            ctx.dead_letter(s, step, exc)
        else:
            good.append(pos)
    return chunk if len(good) == len(chunk) else chunk.select(good)
