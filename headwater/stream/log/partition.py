"""One partition on disk: segment files, a sparse index, appends under a lock, lock-free reads.

A partition is a folder::

    lock                         flock(2)ed by whoever appends
    00000000000000000000.log     segments named by the offset of their first record
    00000000000000000000.index   (offset i64, byte position i64) every ~4 KiB of log
    00000000000001048576.log     the last segment is the active one
    ...

Append protocol (:meth:`PartitionWriter.append`), all under ``flock(LOCK_EX)``:

1. Check the partition still is the one we opened (the topic may have been deleted).
2. Bring our view of the tail up to date: if the active segment grew or changed since
   our last append (another process appended or rolled), walk the new batches. A batch
   cut short or failing its CRC there can only be left by a writer that died mid-write
   (writers hold the lock while writing, and the kernel drops the lock of a dead
   process), so it is cut off: index entries first, then the log.
3. Roll to a new segment if the active one is full.
4. Stamp base offsets on the batches and write them with one ``write``.
5. Append sparse index entries (after the log: an index entry never points past data).
6. fsync per policy; apply retention (delete whole old segments) after a roll or every
   few seconds.

Readers never lock: they read up to the last complete batch whose CRC matches, so they
never see a torn write; a half-written batch at the tail is simply not there yet.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import os
import struct
import time
from dataclasses import dataclass

from headwater.stream.log import segment
from headwater.stream.log.segment import Body, CorruptBatchError, Decoded

_ENTRY = struct.Struct("<qq")
INDEX_INTERVAL = 4096
_SCAN_CHUNK = 8 << 20
RETENTION_CHECK_INTERVAL = 5.0
FSYNC_POLICIES = ("always", "interval", "never")


class PartitionGoneError(Exception):
    """The partition folder was deleted (or replaced) under us (internal)."""


def segment_name(base: int) -> str:
    return f"{base:020d}.log"


def list_segments(directory: str) -> list[int]:
    """Base offsets of the segments, oldest first. Raises PartitionGoneError if the folder is gone."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError as exc:
        raise PartitionGoneError(directory) from exc
    return sorted(int(n[:-4]) for n in names if n.endswith(".log") and n[:-4].isdigit())


def _index_path(directory: str, base: int) -> str:
    return os.path.join(directory, f"{base:020d}.index")


def read_index(directory: str, base: int) -> list[tuple[int, int]]:
    """Index entries (offset, position) of one segment; a torn last entry is ignored."""
    try:
        with open(_index_path(directory, base), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return []
    usable = len(raw) - len(raw) % _ENTRY.size
    return list(_ENTRY.iter_unpack(raw[:usable]))


def _lookup(entries: list[tuple[int, int]], offset: int, base: int) -> tuple[int, int]:
    """The last index entry at or before ``offset``, as (offset, position); (base, 0) if none."""
    i = bisect.bisect_right(entries, (offset, 1 << 62)) - 1
    return entries[i] if i >= 0 else (base, 0)


def scan_file(fd: int, pos: int, size: int) -> tuple[int, int | None, str]:
    """Walk valid batches of a segment from ``pos`` to ``size`` in chunks.

    Returns ``(end, next_offset, stop)`` as :func:`segment.scan` does for a buffer;
    ``next_offset`` is None when no batch was found.
    """
    next_offset = None
    chunk = _SCAN_CHUNK
    while pos < size:
        want = min(chunk, size - pos)
        buf = os.pread(fd, want, pos)
        batches, end, stop = segment.scan(buf)
        if batches:
            _p, base, count = batches[-1]
            next_offset = base + count
        pos += end
        if stop == "end":
            if len(buf) < want:  # the file shrank under us
                return pos, next_offset, "partial"
            continue
        if stop == "corrupt" or len(buf) < want or want == size - (pos - end):
            return pos, next_offset, stop
        # A batch crosses the chunk boundary: read at least the whole batch next time.
        head = segment.peek(buf, end)
        if head is not None:
            chunk = max(chunk, head[0])
    return pos, next_offset, "end"


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync(fd: int) -> None:
    getattr(os, "fdatasync", os.fsync)(fd)


def fsync_dir(directory: str) -> None:
    """Make a new or removed file name durable (what fsync of the file itself does not do)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def log_bounds(directory: str) -> tuple[int, int]:
    """(start offset, end offset) of a partition: the first record kept and the next to write."""
    bases = list_segments(directory)
    if not bases:
        return 0, 0
    last = bases[-1]
    entries = read_index(directory, last)
    try:
        fd = os.open(os.path.join(directory, segment_name(last)), os.O_RDONLY)
    except FileNotFoundError as exc:
        raise PartitionGoneError(directory) from exc
    try:
        size = os.fstat(fd).st_size
        origins = [entries[-1]] if entries and entries[-1][1] < size else []
        for offset, pos in [*origins, (last, 0)]:
            _end, next_offset, _stop = scan_file(fd, pos, size)
            if next_offset is None and pos > 0:
                continue  # a stale index entry: walk the segment from its start
            return bases[0], offset if next_offset is None else next_offset
    finally:
        os.close(fd)
    return bases[0], last  # pragma: no cover - the loop always returns at (last, 0)


@dataclass(frozen=True, slots=True)
class Retention:
    """What a partition keeps: whole segments are deleted past these limits (None = no limit)."""

    max_bytes: int | None = None
    max_ms: int | None = None
    segment_bytes: int = 64 << 20


class PartitionWriter:
    """Appends batches to one partition; safe against other writers in any process."""

    def __init__(self, directory: str, retention: Retention, *, fsync: str = "interval", fsync_interval: float = 1.0):
        self.dir = directory
        self.retention = retention
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self._lock_path = os.path.join(directory, "lock")
        try:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR)
        except FileNotFoundError as exc:
            raise PartitionGoneError(directory) from exc
        st = os.fstat(self._lock_fd)
        self._lock_id = (st.st_dev, st.st_ino)
        self._base: int | None = None
        self._fd: int | None = None
        self._index_fd: int | None = None
        self._size = 0
        self._next = 0
        self._last_index_pos = 0
        self._last_fsync = 0.0
        self._last_retention = 0.0

    def append(self, bodies: list[Body]) -> int:
        """Write ``bodies`` as consecutive batches; return the next offset after them."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            # Step 1.
            self._check_alive()
            # Step 2.
            self._sync_tail()
            # Step 3.
            rolled = False
            if self._size >= self.retention.segment_bytes:
                self._roll()
                rolled = True
            # Step 4.
            pieces: list[bytes] = []
            entries: list[bytes] = []
            offset = self._next
            pos = self._size
            for body in bodies:
                if pos - self._last_index_pos >= INDEX_INTERVAL:
                    entries.append(_ENTRY.pack(offset, pos))
                    self._last_index_pos = pos
                pieces.append(segment.frame(body, offset))
                pieces.append(body.data)
                offset += body.count
                pos += 16 + len(body.data)  # length, crc, base, then the body
            data = b"".join(pieces)
            assert self._fd is not None
            _write_all(self._fd, data)
            self._size += len(data)
            self._next = offset
            # Step 5.
            if entries:
                _write_all(self._index(), b"".join(entries))
            # Step 6.
            self._maybe_fsync()
            now = time.monotonic()
            if rolled or now - self._last_retention >= RETENTION_CHECK_INTERVAL:
                self._last_retention = now
                self.apply_retention()
            return offset
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _check_alive(self) -> None:
        try:
            st = os.stat(self._lock_path)
        except FileNotFoundError as exc:
            raise PartitionGoneError(self.dir) from exc
        if (st.st_dev, st.st_ino) != self._lock_id:
            raise PartitionGoneError(self.dir)

    def _index(self) -> int:
        if self._index_fd is None:
            assert self._base is not None
            self._index_fd = os.open(_index_path(self.dir, self._base), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        return self._index_fd

    def _open_segment(self, base: int) -> None:
        self._close_files()
        self._fd = os.open(os.path.join(self.dir, segment_name(base)), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._base = base

    def _sync_tail(self) -> None:
        bases = list_segments(self.dir)
        last = bases[-1] if bases else 0
        # Where to start walking, best first, as (position, offset there, trusted): our own
        # known end; the last index entry (trusted only if a valid batch is there); the start.
        origins: list[tuple[int, int, bool]] = []
        if last == self._base and self._fd is not None:
            size = os.fstat(self._fd).st_size
            if size == self._size:
                return
            if size > self._size:
                origins.append((self._size, self._next, True))
        else:
            self._open_segment(last)
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        entries = read_index(self.dir, last)
        if entries and entries[-1][1] < size:
            origins.append((entries[-1][1], entries[-1][0], False))
        origins.append((0, last, True))
        for pos, offset, trusted in origins:
            end, next_offset, stop = scan_file(self._fd, pos, size)
            if next_offset is None and not trusted:
                continue
            if stop != "end":
                self._truncate(end, entries)
            self._size = end
            self._next = offset if next_offset is None else next_offset
            kept = [e for e in entries if e[1] < end]
            self._last_index_pos = kept[-1][1] if kept else 0
            return

    def _truncate(self, size: int, entries: list[tuple[int, int]]) -> None:
        """Cut a torn tail left by a dead writer: the index first, so it never points past the log."""
        keep = sum(1 for _o, p in entries if p < size)
        with contextlib.suppress(FileNotFoundError):
            os.truncate(_index_path(self.dir, self._base or 0), keep * _ENTRY.size)
        assert self._fd is not None
        os.ftruncate(self._fd, size)
        if self.fsync != "never":
            _fsync(self._fd)

    def _roll(self) -> None:
        self._open_segment(self._next)
        self._size = 0
        self._last_index_pos = 0
        if self.fsync != "never":
            fsync_dir(self.dir)

    def _maybe_fsync(self) -> None:
        if self.fsync == "never" or self._fd is None:
            return
        now = time.monotonic()
        if self.fsync == "always" or now - self._last_fsync >= self.fsync_interval:
            _fsync(self._fd)
            self._last_fsync = now

    def apply_retention(self) -> list[int]:
        """Delete whole segments (never the active one) past the size or age limit; return their bases.

        Age is the time since a segment was last written (its mtime), so records replayed
        with old event timestamps are not deleted the moment they arrive.
        """
        r = self.retention
        if r.max_bytes is None and r.max_ms is None:
            return []
        bases = list_segments(self.dir)
        old = bases[:-1]
        stats = {b: os.stat(os.path.join(self.dir, segment_name(b))) for b in bases}
        doomed: list[int] = []
        if r.max_ms is not None:
            now = time.time()
            for b in old:
                if (now - stats[b].st_mtime) * 1000 <= r.max_ms:
                    break
                doomed.append(b)
        if r.max_bytes is not None:
            total = sum(stats[b].st_size for b in bases if b not in doomed)
            for b in old[len(doomed) :]:
                if total - stats[b].st_size < r.max_bytes:
                    break
                doomed.append(b)
                total -= stats[b].st_size
        for b in doomed:
            # The log before its index: an index without a log is ignored, the reverse would not be.
            os.remove(os.path.join(self.dir, segment_name(b)))
            with contextlib.suppress(FileNotFoundError):
                os.remove(_index_path(self.dir, b))
        return doomed

    def locked_retention(self) -> list[int]:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._check_alive()
            return self.apply_retention()
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _close_files(self) -> None:
        for fd in (self._fd, self._index_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._index_fd = None

    def close(self) -> None:
        if self._fd is not None and self.fsync != "never":
            with contextlib.suppress(OSError):
                _fsync(self._fd)
        self._close_files()
        os.close(self._lock_fd)


class PartitionReader:
    """Reads one partition from an offset on, without locking; see the module docstring."""

    def __init__(self, directory: str, offset: int) -> None:
        self.dir = directory
        self._fd: int | None = None
        self._base: int | None = None
        self._pos = 0
        self.next_offset = offset
        self._left: Decoded | None = None
        self._left_at = 0
        self._avg_record = 256
        self.seek(offset)

    def seek(self, offset: int) -> None:
        """Read from ``offset`` on; an offset before the log start moves to the log start."""
        self._close()
        self._left = None
        self.next_offset = offset
        try:
            bases = list_segments(self.dir)
        except PartitionGoneError:
            return
        if not bases:
            return
        if offset < bases[0]:
            self.next_offset = offset = bases[0]
        base = bases[bisect.bisect_right(bases, offset) - 1]
        if not self._open(base):
            return
        _o, self._pos = _lookup(read_index(self.dir, base), offset, base)

    def _open(self, base: int) -> bool:
        self._close()
        try:
            self._fd = os.open(os.path.join(self.dir, segment_name(base)), os.O_RDONLY)
        except FileNotFoundError:
            return False
        self._base = base
        self._pos = 0
        return True

    def _next_segment(self) -> bool:
        """Move to the segment after the current one, if it exists."""
        try:
            bases = list_segments(self.dir)
        except PartitionGoneError:
            return False
        if self._base is None:
            if bases:
                self.seek(self.next_offset)
                return self._fd is not None
            return False
        later = [b for b in bases if b > self._base]
        if not later:
            return False
        if self._fd is not None and self._pos < os.fstat(self._fd).st_size and later[0] > self.next_offset:
            return False  # unread bytes before a later segment: wait for them to complete
        return self._open(later[0])

    def read(self, max_records: int) -> Decoded | None:
        """Up to ``max_records`` records from the current position, or None if none is there yet."""
        cols = Decoded(self.next_offset, [], [], [], [])
        need = max_records
        if self._left is not None:
            taken = self._take(self._left, self._left_at, need, cols)
            self._left_at += taken
            need -= taken
            if self._left_at >= len(self._left):
                self._left = None
        min_chunk = 64 << 10
        while need > 0 and self._left is None:
            if self._fd is None and not self._next_segment():
                break
            assert self._fd is not None
            chunk = min(max(need * self._avg_record + segment.HEADER_SIZE, min_chunk), 16 << 20)
            chunk = max(chunk, min_chunk)
            start = self._pos
            buf = os.pread(self._fd, chunk, start)
            if not buf:
                if self._next_segment():
                    continue
                break
            batches, end, stop = segment.scan(buf)
            for i, (pos, base, count) in enumerate(batches):
                total = (batches[i + 1][0] if i + 1 < len(batches) else end) - pos
                self._pos = start + pos + total
                if base + count <= self.next_offset:
                    continue  # before the position a seek asked for
                decoded = segment.decode(buf, pos, total)
                self._avg_record = max(16, total // max(count, 1))
                skip = self.next_offset - base
                taken = self._take(decoded, skip, need, cols)
                need -= taken
                if skip + taken < count:
                    self._left, self._left_at = decoded, skip + taken
                    break
            if need <= 0 or self._left is not None or stop == "end":
                continue
            size = os.fstat(self._fd).st_size
            if stop == "partial":
                if start + len(buf) < size:
                    # A batch crosses the end of our chunk: read again, big enough for it.
                    head = segment.peek(buf, end)
                    min_chunk = max(min_chunk, head[0] if head else segment.HEADER_SIZE)
                    continue
                if self._next_segment():
                    continue
                break
            # A complete batch failing its checks: a torn tail (the next writer cuts it) or corruption.
            extent = self._corrupt_extent(buf, end)
            if extent is not None and self._pos + extent < size:
                where = f"{self.dir}/{segment_name(self._base or 0)} at byte {self._pos}"
                raise CorruptBatchError(f"corrupt batch in {where}")
            break
        if not cols.values:
            return None
        return cols

    @staticmethod
    def _corrupt_extent(buf: bytes, pos: int) -> int | None:
        try:
            head = segment.peek(buf, pos)
        except CorruptBatchError:
            return None
        return None if head is None else head[0]

    def _take(self, d: Decoded, start: int, need: int, cols: Decoded) -> int:
        stop = min(len(d), start + need)
        if stop <= start:
            return 0
        if start == 0 and stop == len(d) and not cols.values:
            cols.keys, cols.values, cols.timestamps = d.keys, d.values, d.timestamps
            cols.headers = list(d.headers)
        else:
            if d.headers and not cols.headers and cols.values:
                cols.headers = [()] * len(cols.values)
            cols.keys += d.keys[start:stop]
            cols.values += d.values[start:stop]
            cols.timestamps += d.timestamps[start:stop]
            if d.headers:
                cols.headers += d.headers[start:stop]
            elif cols.headers:
                cols.headers += [()] * (stop - start)
        self.next_offset = d.base + stop
        return stop - start

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._base = None

    def close(self) -> None:
        self._close()
