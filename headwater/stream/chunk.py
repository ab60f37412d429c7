"""A micro-batch inside the kernel: the input table, chunks of rows, dead letters and outputs.

The records of one poll are concatenated, grouped by topic, into an :class:`InputTable`
(parallel lists: topic, partition, offset, key, value, timestamp, headers). Steps never
copy that metadata: each row of a :class:`Chunk` carries ``src``, the index of the input
record it comes from, so keys, timestamps, headers and the source position follow every
filter, flat map, branch and merge for the price of one list of ints. Within a chunk
``src`` never decreases, which is what keeps per-partition order.

A chunk holds its values either as rows (Python values, for record functions) or as a
Polars frame (for batch steps) and converts on demand; a stream's micro-batch is a list
of chunks (one per source topic, more after a merge or after isolating failures).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import polars as pl

from headwater.errors import UserError
from headwater.stream.broker import Headers, RecordBatch
from headwater.stream.serde import Serde, frame_to_rows, rows_to_frame

T = TypeVar("T")

# Errors a step may raise for bad data. Polars panics derive from BaseException, and a
# panic inside a user's batch function is still a bad batch, not a reason to stop the app.
RECOVERABLE: tuple[type[BaseException], ...] = (Exception, pl.exceptions.PanicException)


class StepContractError(UserError):
    """A step's function returned something the step cannot use: a bug in the app, not bad data.

    Never isolated or dead-lettered: it stops the app before the batch is committed.
    """


@dataclass(slots=True)
class InputTable:
    """The records of one micro-batch, as parallel lists grouped by topic."""

    topics: list[str] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    headers: list[Headers] = field(default_factory=list)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # topic -> [start, stop)

    @classmethod
    def from_batches(cls, batches: Sequence[RecordBatch]) -> InputTable:
        table = cls()
        # Stable sort: partitions of one topic keep the order the consumer gave them.
        for batch in sorted(batches, key=lambda b: b.topic):
            n = len(batch)
            if not n:
                continue
            start = len(table.offsets)
            table.topics.extend([batch.topic] * n)
            table.partitions.extend([batch.partition] * n)
            table.offsets.extend(batch.offsets)
            table.keys.extend(batch.keys)
            table.values.extend(batch.values)
            table.timestamps.extend(batch.timestamps)
            table.headers.extend(batch.headers if batch.headers else [()] * n)
            first, _ = table.spans.get(batch.topic, (start, start))
            table.spans[batch.topic] = (first, start + n)
        return table

    def __len__(self) -> int:
        return len(self.offsets)


@dataclass(slots=True, eq=False)
class Chunk:
    """Rows of one stream within a micro-batch; see the module docstring.

    ``row_type`` and ``schema`` are hints for converting between rows and a frame (set by
    the source serde, dropped by steps that change values). ``keys`` holds keys set by
    ``key_by`` (encoded by the sink); None means every row keeps its input key.
    ``pristine`` is the serde the values were decoded with while they are unchanged, so a
    sink with the same serde can write the original bytes without encoding again.
    """

    src: list[int]
    rows: list[Any] | None = None
    frame: pl.DataFrame | None = None
    row_type: Any = None
    schema: dict[str, pl.DataType] | None = None
    keys: list[Any] | None = None
    pristine: Serde | None = None

    def __len__(self) -> int:
        return len(self.src)

    def as_rows(self) -> Chunk:
        if self.rows is not None:
            return self
        assert self.frame is not None
        return Chunk(self.src, frame_to_rows(self.frame, self.row_type), None, self.row_type, self.schema,
                     self.keys, self.pristine)

    def as_frame(self) -> Chunk:
        """The same rows as a frame; raises when they do not fit one (isolated by the caller)."""
        if self.frame is not None:
            return self
        assert self.rows is not None
        return Chunk(self.src, None, rows_to_frame(self.rows, self.row_type, self.schema), self.row_type,
                     self.schema, self.keys, self.pristine)

    def select(self, idx: Sequence[int]) -> Chunk:
        """These rows (by position), values unchanged."""
        src = self.src
        keys = self.keys
        return Chunk(
            [src[i] for i in idx],
            None if self.rows is None else [self.rows[i] for i in idx],
            None if self.frame is None else self.frame[list(idx)],
            self.row_type,
            self.schema,
            None if keys is None else [keys[i] for i in idx],
            self.pristine,
        )

    def with_rows(self, rows: list[Any], idx: Sequence[int] | None = None) -> Chunk:
        """New values as rows; row ``j`` comes from input position ``idx[j]`` (all, in order, if None)."""
        src, keys = self._follow(idx)
        return Chunk(src, rows, None, None, None, keys, None)

    def with_frame(self, frame: pl.DataFrame, idx: Sequence[int] | None = None, *, keep_hints: bool = False) -> Chunk:
        """New values as a frame; ``idx`` as in :meth:`with_rows`."""
        src, keys = self._follow(idx)
        if keep_hints:
            return Chunk(src, None, frame, self.row_type, self.schema, keys, self.pristine)
        return Chunk(src, None, frame, None, None, keys, None)

    def with_keys(self, keys: list[Any]) -> Chunk:
        return Chunk(self.src, self.rows, self.frame, self.row_type, self.schema, keys, self.pristine)

    def _follow(self, idx: Sequence[int] | None) -> tuple[list[int], list[Any] | None]:
        if idx is None:
            return self.src, self.keys
        src, keys = self.src, self.keys
        return [src[i] for i in idx], None if keys is None else [keys[i] for i in idx]


@dataclass(slots=True)
class DeadLetter:
    """A record that could not be processed: where it came from, which step, and why."""

    src: int
    step: str
    error: BaseException


@dataclass(slots=True)
class Output:
    """Encoded records for one topic, in the order they are produced."""

    values: list[bytes | None] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    headers: list[Headers] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)


@dataclass(slots=True)
class Context:
    """What one micro-batch accumulates while its steps run: outputs and dead letters."""

    table: InputTable
    outputs: dict[str, Output] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    #: Model reference -> the version this batch uses (``"house_prices@champion"`` ->
    #: ``"house_prices:3"``): the first step of the batch that follows a reference picks the
    #: version, and every later step following the same reference (check, predict, drift) uses
    #: that one, so a record is never checked against one version's profile and scored by another.
    pins: dict[str, str] = field(default_factory=dict)

    def dead_letter(self, src: int, step: str, error: BaseException) -> None:
        self.dead.append(DeadLetter(src, step, error))

    def output(self, topic: str) -> Output:
        out = self.outputs.get(topic)
        if out is None:
            out = self.outputs[topic] = Output()
        return out


def isolate(chunk: Chunk, fn: Callable[[Chunk], T], ctx: Context, step: str) -> list[T]:
    """Run ``fn`` on the whole chunk; if it raises, on each half, down to single rows.

    The rows that still fail alone go to the dead letters; every other row proceeds, in
    order, in one result per part that succeeded. Bisection costs about ``2 k log2(n)``
    extra calls for ``k`` bad rows among ``n``, instead of ``n`` calls row by row, and a
    healthy batch pays nothing.
    """
    try:
        return [fn(chunk)]
    except StepContractError:
        raise
    except RECOVERABLE as exc:
        n = len(chunk)
        if n <= 1:
            for s in chunk.src:
                ctx.dead_letter(s, step, exc)
            return []
    mid = n // 2
    return isolate(chunk.select(range(mid)), fn, ctx, step) + isolate(chunk.select(range(mid, n)), fn, ctx, step)
