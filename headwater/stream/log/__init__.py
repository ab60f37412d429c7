"""The embedded log: the default broker, durable in a local folder, no server.

    from headwater.stream.log import EmbeddedBroker
    broker = EmbeddedBroker(settings.home / "topics")
    broker.create_topic("houses", partitions=4, retention_bytes=1 << 30)

Topics have partitions, offsets, Kafka's murmur2 key-to-partition rule, retention by
size and age (whole old segments are deleted), consumer groups with committed offsets,
and any number of processes on the machine producing and consuming at once. Modules:
``segment`` (the on-disk batch format), ``partition`` (appends under ``flock``, lock-free
reads, torn-tail recovery, retention), ``groups`` (membership, owners and offsets in
SQLite), ``producer``, ``consumer``, ``broker`` (admin).

Crash safety: a ``kill -9`` in the middle of an append leaves at most a cut-off batch at
the end of the active segment. Readers never return it (they stop at the last complete
batch whose CRC matches) and the next writer cuts it off under the partition lock before
appending. Records acknowledged by ``flush()`` are in the kernel's page cache and survive
the death of the producing process.

``fsync``, for power cuts and OS crashes only: ``"interval"`` (the default) fsyncs a
partition at most once per ``fsync_interval`` (1 s) as flushes happen, bounding what a
power cut can take to about a second of records for almost no cost; ``"always"`` fsyncs on
every flush (measured below: about 3x slower with small flushes); ``"never"`` leaves it to
the OS, as Kafka does by default (it relies on replication, which a single machine lacks).

Storage chosen by measurement (``produce_batch`` of 10,000 x 120-byte values + ``flush``,
then reading everything back in batches of 10,000; 1 M records, one partition, ext4 on
this 2-core VM shared with other jobs; best of 3; throwaway script, the benchmark proper
lives in ``bench/``)::

                                          produce M msg/s   consume M msg/s
    SQLite, WAL, a table per partition         0.29              0.47
    segment file, per-record frames + CRC      1.63              0.70
    segment file, columnar batches + CRC       3.36              1.63   <- chosen

Per-record frames cost a ``struct`` call and a slice per field per record on both sides;
SQLite pays a B-tree insert and a row object per record. Columnar batches (one header and
CRC per batch, then value/key length columns and concatenated bytes) are packed with a
few ``array``/``join`` calls and decoded with C-level slicing, and they match the port's
columnar ``RecordBatch``. Figures of this implementation through the port (same setup)::

    produce_batch(10k) + flush, keyless / keyed       3.8-4.5 / 1.8-3.4 M msg/s
    poll_batch(10_000), keyless / keyed               5.4 / 3.1 M msg/s
    4 partitions, keyless / keyed                     2.1 / 1.0 M produce, 4.0 / 2.7 M consume
    produce_batch(100) + flush, fsync interval / always     2.5 / 0.28 M msg/s
    produce() one record at a time, flush every 10k         0.5 M msg/s
"""

from __future__ import annotations

from headwater.stream.log.broker import EmbeddedBroker

__all__ = ["EmbeddedBroker"]
