"""ReferenceTable: keyed rows in a Polars frame, optionally kept up to date from a changelog topic.

This is Kafka Streams' GlobalKTable for headwater apps. The rows come from a baseline (a
frame, a CSV/Parquet/JSON-lines file, or a list of dicts) and, when ``changelog=`` names a
topic, from that topic on top of it (format in :mod:`headwater.stream.tables.changelog`).

Lifecycle (what :meth:`StreamApp.run <headwater.stream.app.StreamApp.run>` does through
``Stream.enrich``): :meth:`ReferenceTable.start` resets the rows to the baseline, reads the
changelog **from its beginning** up to its end as of that moment (the *restore*: a
restarted app rebuilds the same table), then returns while a background thread keeps
polling and applying new changes. The follower uses a consumer **outside any group**
(every instance needs the whole table) and never commits offsets.

Each applied poll makes a new immutable :class:`Version` (the frame is replaced, never
changed in place). A micro-batch pins one version when it starts (:meth:`ReferenceTable.pin`),
so every row of a batch is enriched from the same version, and later batches see later
changes without a restart.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from headwater.errors import InfrastructureError, UserError
from headwater.stream._common import validate_topic_name
from headwater.stream.broker import Broker, Consumer, Producer, TopicNotFoundError, TopicPartition
from headwater.stream.tables.changelog import ChangelogReader, ChangeSet, Rejection

log = logging.getLogger("headwater.stream.tables")

TableData = pl.DataFrame | str | os.PathLike[str] | Sequence[Mapping[str, Any]]
_PINS = 16  # micro-batches whose version is remembered (several apps or steps may share a table)
_REJECTIONS_KEPT = 1_000


class TableError(UserError):
    """A reference table is declared or used wrongly (bad key, schema, data or changelog)."""


class TableFollowerError(InfrastructureError):
    """The thread following a table's changelog failed; the table no longer gets updates."""


@dataclass(frozen=True, slots=True)
class Version:
    """One state of a table: what a micro-batch joins against. ``number`` counts applied change sets."""

    number: int
    frame: pl.DataFrame


class ReferenceTable:
    """Rows with a unique key, held as a Polars frame, joined to streams by ``Stream.enrich``.

    ``data`` is the baseline: a ``polars.DataFrame``, a path to a ``.csv``, ``.parquet`` or
    ``.jsonl``/``.ndjson`` file (read now), a list of dicts, or None (an empty table, then
    ``schema`` is required). ``key`` names the key column, or several for a composite key;
    keys must be unique and not null. ``schema`` (column -> Polars dtype) fixes the columns
    and their types; the baseline is cast to it. Without it the baseline's types are used.

    ``changelog`` names a topic whose records update the table while apps run (see
    :mod:`headwater.stream.tables.changelog`); ``broker`` is where that topic lives
    (default: the broker of the app that starts the table). Rejected changelog records are
    logged, kept in :attr:`rejected`, and written to ``dead_letters`` when a topic is named.
    """

    def __init__(
        self,
        name: str,
        data: TableData | None = None,
        *,
        key: str | Sequence[str],
        schema: Mapping[str, Any] | None = None,
        changelog: str | None = None,
        broker: Broker | None = None,
        dead_letters: str | None = None,
        poll_timeout: float = 0.2,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TableError(f"a reference table needs a non-empty name, got {name!r}")
        keys = (key,) if isinstance(key, str) else tuple(key)
        if not keys or not all(isinstance(k, str) and k for k in keys) or len(set(keys)) != len(keys):
            raise TableError(f"table {name!r}: key must be a column name or a list of distinct names, got {key!r}")
        for topic in (changelog, dead_letters):
            if topic is not None:
                validate_topic_name(topic)
        self.name = name
        self.key: tuple[str, ...] = keys
        self.changelog = changelog
        self.broker = broker
        self.dead_letters = dead_letters
        self.poll_timeout = poll_timeout
        baseline = _load(name, data, schema)
        self.schema: dict[str, pl.DataType] = _schema(name, baseline, schema, keys)
        self._baseline = _conform(name, baseline, self.schema, keys)
        self.rejected: deque[Rejection] = deque(maxlen=_REJECTIONS_KEPT)
        self.counts = {"upserts": 0, "deletes": 0, "rejected": 0}
        self._reader = ChangelogReader(keys, self.schema)
        self._cond = threading.Condition()
        self._starting = threading.Lock()
        self._current = Version(0, self._baseline)
        self._positions: dict[TopicPartition, int] = {}
        self._pins: OrderedDict[int, tuple[object, Version]] = OrderedDict()
        self._follower: _Follower | None = None
        self._users = 0
        self.error: BaseException | None = None

    def __repr__(self) -> str:
        feed = f", changelog={self.changelog!r}" if self.changelog else ""
        return f"ReferenceTable({self.name!r}, key={list(self.key)}, rows={len(self)}{feed})"

    def __len__(self) -> int:
        return self._current.frame.height

    @property
    def columns(self) -> list[str]:
        """The columns that are not part of the key (what ``enrich`` adds by default)."""
        return [c for c in self.schema if c not in self.key]

    @property
    def version(self) -> int:
        """How many change sets have been applied since the last start (0: the baseline)."""
        return self._current.number

    def snapshot(self) -> pl.DataFrame:
        """The rows as they are now (an immutable frame: later changes make a new one)."""
        return self._current.frame

    def get(self, key: Any) -> dict[str, Any] | None:
        """The row with ``key`` (a value, or a dict for a composite key) as a dict, or None.

        For tests and inspection; ``Stream.enrich`` joins whole batches instead.
        """
        values = key if isinstance(key, Mapping) else {self.key[0]: key}
        frame = self._current.frame
        cond = pl.all_horizontal(pl.col(c) == pl.lit(values[c]).cast(self.schema[c]) for c in self.key)
        rows = frame.filter(cond).to_dicts()
        return rows[0] if rows else None

    def pin(self, batch: object) -> Version:
        """The version for the micro-batch identified by ``batch``: the current one on its first call,
        the same one on every later call for that batch (so one batch never mixes two versions)."""
        with self._cond:
            if self.error is not None:
                raise TableFollowerError(
                    f"table {self.name!r} stopped following {self.changelog}: {self.error}",
                    hint="fix the cause and restart the app: the table is rebuilt from the changelog",
                ) from self.error
            marker = id(batch)
            pinned = self._pins.get(marker)
            if pinned is not None and pinned[0] is batch:
                return pinned[1]
            # The marker object is held, so its id cannot be reused by another batch while pinned.
            self._pins[marker] = (batch, self._current)
            while len(self._pins) > _PINS:
                self._pins.popitem(last=False)
            return self._current

    # -- following the changelog -------------------------------------------------------

    def start(self, broker: Broker | None = None) -> None:
        """Reset to the baseline, restore from the changelog, then follow it in a background thread.

        Returns once the changelog is read up to its end as of the call. Nested calls (one
        table used by several steps or apps) share one follower; :meth:`stop` as many times.
        """
        if self.changelog is None:
            return
        with self._starting:  # two apps starting one table at once share one follower
            self._start(broker)

    def _start(self, broker: Broker | None) -> None:
        with self._cond:
            if self._follower is not None:
                self._users += 1
                return
        broker = self.broker or broker
        if broker is None:
            raise TableError(f"table {self.name!r} follows {self.changelog!r} but has no broker",
                             hint="pass broker= to ReferenceTable() or start(), or use it in a running app")
        if self.changelog not in broker.list_topics():
            raise TopicNotFoundError(
                f"table {self.name!r}: changelog topic {self.changelog!r} does not exist",
                hint=f"create it first, e.g. `headwater topics create {self.changelog}`",
            )
        if self.dead_letters is not None:
            broker.create_topic(self.dead_letters, exist_ok=True)
        with self._cond:
            self._current = Version(0, self._baseline)
            self._positions = {}
            self._pins.clear()
            self.error = None
        follower = _Follower(self, broker)
        follower.start()
        try:
            follower.ready.wait()
        except BaseException:  # Ctrl-C during a long restore: do not leave the thread reading
            follower.stopping.set()
            raise
        if self.error is not None:
            follower.join()
            raise TableFollowerError(
                f"table {self.name!r} could not read its changelog {self.changelog!r}: {self.error}"
            ) from self.error
        with self._cond:
            self._follower = follower
            self._users = 1
        log.info("table %s: %d rows after restoring %s (version %d)", self.name, len(self), self.changelog,
                 self.version)

    def stop(self) -> None:
        """Stop following the changelog (after the last :meth:`start` caller stops); the rows stay."""
        with self._starting, self._cond:
            if self._follower is None:
                return
            self._users -= 1
            if self._users > 0:
                return
            follower, self._follower = self._follower, None
            follower.stopping.set()
        follower.join()

    @property
    def following(self) -> bool:
        return self._follower is not None

    def wait_caught_up(self, timeout: float = 10.0) -> bool:
        """Wait until every changelog record produced before this call is applied; False on timeout.

        Tests use it to make "the update is visible" a condition rather than a sleep.
        """
        follower = self._follower
        if follower is None:
            return True
        ends = follower.broker.end_offsets(follower.partitions)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(self._positions.get(tp, 0) >= end for tp, end in ends.items()):
                if self.error is not None:
                    raise TableFollowerError(f"table {self.name!r} stopped following: {self.error}") from self.error
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def _apply(self, changes: ChangeSet, positions: Mapping[TopicPartition, int]) -> None:
        """Make the next version from ``changes`` (called by the follower thread only)."""
        if changes:
            key = list(self.key)
            touched = pl.concat([changes.upserts.select(key), changes.deletes], how="vertical")
            old = self._current.frame
            # Vectorised: drop every touched key, then append the new rows (one per key).
            frame = pl.concat([old.join(touched, on=key, how="anti"), changes.upserts], how="vertical")
            with self._cond:
                self._current = Version(self._current.number + 1, frame)
            self.counts["upserts"] += changes.upserts.height
            self.counts["deletes"] += changes.deletes.height
        with self._cond:
            self._positions.update(positions)
            self._cond.notify_all()
        if changes.rejected:
            self.counts["rejected"] += len(changes.rejected)
            self.rejected.extend(changes.rejected)
            for r in changes.rejected[:5]:
                log.warning("table %s: changelog record rejected, %s", self.name, r)
            if len(changes.rejected) > 5:
                log.warning("table %s: %d more changelog records rejected", self.name, len(changes.rejected) - 5)

    def _failed(self, exc: BaseException) -> None:
        with self._cond:
            self.error = exc
            self._cond.notify_all()


class _Follower(threading.Thread):
    """Reads the changelog of one table: restore to the end, then poll until stopped."""

    def __init__(self, table: ReferenceTable, broker: Broker) -> None:
        super().__init__(name=f"headwater-table-{table.name}", daemon=True)
        self.table = table
        self.broker = broker
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.partitions: list[TopicPartition] = []

    def run(self) -> None:
        table = self.table
        assert table.changelog is not None
        consumer: Consumer | None = None
        producer: Producer | None = None
        try:
            info = self.broker.describe_topic(table.changelog)
            self.partitions = [TopicPartition(table.changelog, p) for p in range(info.partitions)]
            # No group: every instance reads the whole changelog, and nothing is ever committed.
            consumer = self.broker.consumer(None, auto_offset_reset="earliest")
            consumer.assign(self.partitions)
            for tp in self.partitions:
                consumer.seek(tp, info.start_offsets.get(tp.partition, 0))
            self._record_positions(consumer)
            if table.dead_letters is not None:
                producer = self.broker.producer()
            ends = self.broker.end_offsets(self.partitions)
            while not self.stopping.is_set() and any(consumer.position(tp) < ends[tp] for tp in self.partitions):
                self._step(consumer, producer, timeout=table.poll_timeout)
            self._record_positions(consumer)
            self.ready.set()
            while not self.stopping.is_set():
                self._step(consumer, producer, timeout=table.poll_timeout)
        except BaseException as exc:  # surfaced to the app by pin(): stale reference data must not pass silently
            log.exception("table %s: following %s failed", table.name, table.changelog)
            table._failed(exc)
        finally:
            self.ready.set()
            for client in (consumer, producer):
                if client is not None:
                    try:
                        client.close()
                    except Exception:
                        log.exception("table %s: closing a changelog client failed", table.name)

    def _record_positions(self, consumer: Consumer) -> None:
        table = self.table
        with table._cond:
            table._positions.update({tp: consumer.position(tp) for tp in self.partitions})
            table._cond.notify_all()

    def _step(self, consumer: Consumer, producer: Producer | None, *, timeout: float) -> None:
        batches = [b for b in consumer.poll_batch(max_records=50_000, timeout=timeout) if len(b)]
        if not batches:
            return
        records = [
            (b.topic, b.partition, offset, b.keys[i], b.values[i])
            for b in batches
            for i, offset in enumerate(b.offsets)
        ]
        changes = self.table._reader.read(records)
        positions = {tp: consumer.position(tp) for tp in {b.tp for b in batches}}
        self.table._apply(changes, positions)
        if changes.rejected and producer is not None and self.table.dead_letters is not None:
            _dead_letter(producer, self.table, changes.rejected)


def _dead_letter(producer: Producer, table: ReferenceTable, rejected: list[Rejection]) -> None:
    from headwater.stream import dlq

    topic = table.dead_letters
    assert topic is not None
    for r in rejected:
        headers = (
            (dlq.ERROR_TYPE, b"ChangelogRecordRejected"),
            (dlq.ERROR_MESSAGE, r.reason.encode()),
            (dlq.ERROR_STEP, f"table:{table.name}".encode()),
            (dlq.SOURCE_TOPIC, r.topic.encode()),
            (dlq.SOURCE_PARTITION, str(r.partition).encode()),
            (dlq.SOURCE_OFFSET, str(r.offset).encode()),
        )
        producer.produce(topic, r.value, r.key, headers=headers)
    producer.flush()


# -- the baseline -------------------------------------------------------------------------


def _load(name: str, data: TableData | None, schema: Mapping[str, Any] | None) -> pl.DataFrame | None:
    if data is None:
        return None
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, str | os.PathLike):
        return _read_file(name, Path(data), schema)
    if isinstance(data, Sequence) and all(isinstance(row, Mapping) for row in data):
        try:
            return pl.DataFrame(list(data), schema=dict(schema) if schema else None, infer_schema_length=None)
        except Exception as exc:
            raise TableError(f"table {name!r}: the rows do not make a frame: {exc}",
                             hint="give every row the same columns with one type per column, or pass schema=") from exc
    raise TableError(f"table {name!r}: data must be a polars DataFrame, a file path or a list of dicts, "
                     f"got {type(data).__name__}")


def _read_file(name: str, path: Path, schema: Mapping[str, Any] | None) -> pl.DataFrame:
    if not path.is_file():
        raise TableError(f"table {name!r}: no file {path}", hint="check the path (relative paths start at the cwd)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # Declared types are read as such (a zip code "01234" stays text), not inferred then cast.
            return pl.read_csv(path, schema_overrides=dict(schema) if schema else None)
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
        if suffix in (".jsonl", ".ndjson"):
            return pl.read_ndjson(path, schema_overrides=dict(schema) if schema else None)
    except Exception as exc:
        raise TableError(f"table {name!r}: cannot read {path}: {exc}") from exc
    raise TableError(f"table {name!r}: cannot read {path.name}: unknown file type {suffix or '(none)'}",
                     hint="use a .csv, .parquet or .jsonl file, or load it yourself and pass the frame")


def _schema(
    name: str, baseline: pl.DataFrame | None, schema: Mapping[str, Any] | None, keys: tuple[str, ...]
) -> dict[str, pl.DataType]:
    if schema is None:
        if baseline is None:
            raise TableError(f"table {name!r} has no data and no schema",
                             hint="pass schema={'zipcode': pl.String, ...} for a table filled by its changelog")
        out = dict(baseline.schema)
    else:
        out = {}
        for column, dtype in schema.items():
            try:
                out[column] = pl.Series([], dtype=dtype).dtype  # a class like pl.Int64 -> an instance
            except Exception as exc:
                raise TableError(f"table {name!r}: column {column!r} has no valid Polars type: {dtype!r}") from exc
    missing = [k for k in keys if k not in out]
    if missing:
        raise TableError(f"table {name!r}: key column(s) {', '.join(missing)} not among its columns",
                         hint=f"columns: {', '.join(out)}")
    return out


def _conform(name: str, baseline: pl.DataFrame | None, schema: dict[str, pl.DataType],
             keys: tuple[str, ...]) -> pl.DataFrame:
    if baseline is None:
        return pl.DataFrame(schema=schema)
    absent = [c for c in schema if c not in baseline.columns]
    if absent:
        raise TableError(f"table {name!r}: the data has no column(s) {', '.join(absent)}",
                         hint=f"its columns: {', '.join(baseline.columns)}")
    try:
        frame = baseline.select(pl.col(c).cast(t) for c, t in schema.items())
    except Exception as exc:
        raise TableError(f"table {name!r}: the data does not fit the schema: {exc}",
                         hint="fix the data or declare the column's type in schema=") from exc
    key = list(keys)
    nulls = frame.filter(pl.any_horizontal(pl.col(key).is_null())).height
    if nulls:
        raise TableError(f"table {name!r}: {nulls} row(s) have a null key ({', '.join(key)})",
                         hint="drop them, e.g. frame.drop_nulls(subset=key), before building the table")
    dups = frame.group_by(key).len().filter(pl.col("len") > 1)
    if dups.height:
        example = dups.drop("len").row(0, named=True)
        raise TableError(
            f"table {name!r}: {dups.height} key(s) appear more than once, e.g. {example}; "
            "a key must identify one row, or a join would repeat records",
            hint="deduplicate first, e.g. frame.unique(subset=key, keep='last')",
        )
    return frame
