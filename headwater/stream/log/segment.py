"""The on-disk record batch: columnar, one CRC per batch, offsets stamped at append time.

A segment file (``<base offset, 20 digits>.log``) is a run of batches::

    length  u32   bytes after this field
    crc     u32   CRC-32 of everything after this field (base offset included)
    base    i64   offset of the batch's first record
    count   i32
    flags   u8    KEYS | HEADERS | TIMESTAMPS | NULL_VALUES | NULL_KEYS
    ts      i64   the timestamp of every record, unless TIMESTAMPS
    value lengths       i32 x count  (-1 = None)
    [key lengths]       i32 x count  (KEYS; -1 = None)
    [timestamps]        i64 x count  (TIMESTAMPS)
    [header lengths]    i32 x count  (HEADERS)
    values | [keys] | [headers]      concatenated bytes

Columns, not per-record frames, because the port is columnar: a batch is packed with a
few ``array``/``join`` calls and decoded with C-level slicing, which is what makes the
log several times faster than per-record framing (see ``headwater.stream.log``).

The body and its CRC are computed when records are produced; the base offset is only
known under the partition lock, so :func:`frame` folds it in then: the stored CRC is
``crc32(base, crc32(body))``, the CRC of ``body + base``, which costs 8 bytes of CRC work
under the lock instead of the whole batch.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat

from headwater.stream.broker import Headers

HEADER = struct.Struct("<IIqiBq")
HEADER_SIZE = HEADER.size  # 29
_PREFIX = struct.Struct("<II")  # length, crc
_BASE = struct.Struct("<q")
_REST = struct.Struct("<iBq")  # count, flags, ts: the part of the header packed with the body
_HEADER_PAIR = struct.Struct("<HI")

KEYS, HEADERS, TIMESTAMPS, NULL_VALUES, NULL_KEYS = 1, 2, 4, 8, 16

MAX_BATCH_RECORDS = 16_384
# A batch longer than this is corruption, not data (guards reads against a garbage length).
MAX_BATCH_BYTES = 1 << 30

if sys.byteorder != "little":  # pragma: no cover - arrays are written in native order
    raise ImportError("the embedded log's segment format assumes a little-endian machine")


@dataclass(slots=True)
class Body:
    """A packed batch waiting for its base offset."""

    count: int
    data: bytes  # count, flags, ts, columns
    crc: int  # CRC-32 of data


def _encode_headers(headers: Headers) -> bytes:
    parts = [struct.pack("<H", len(headers))]
    for name, value in headers:
        raw = name.encode()
        parts.append(_HEADER_PAIR.pack(len(raw), len(value)))
        parts.append(raw)
        parts.append(value)
    return b"".join(parts)


def _decode_headers(raw: bytes) -> Headers:
    if not raw:
        return ()
    (n,) = struct.unpack_from("<H", raw)
    pos = 2
    out = []
    for _ in range(n):
        klen, vlen = _HEADER_PAIR.unpack_from(raw, pos)
        pos += _HEADER_PAIR.size
        name = raw[pos : pos + klen].decode()
        pos += klen
        out.append((name, raw[pos : pos + vlen]))
        pos += vlen
    return tuple(out)


def _lengths(column: Sequence[bytes | None], has_none: bool) -> array[int]:
    if has_none:
        return array("i", [-1 if v is None else len(v) for v in column])
    return array("i", map(len, column))  # type: ignore[arg-type]


def _join(column: Sequence[bytes | None], has_none: bool) -> bytes:
    if has_none:
        return b"".join([v for v in column if v is not None])
    return b"".join(column)  # type: ignore[arg-type]


def pack(
    values: Sequence[bytes | None],
    keys: Sequence[bytes | None],
    timestamps: Sequence[int],
    headers: Sequence[Headers] | None,
) -> Body:
    """Pack one batch (at most MAX_BATCH_RECORDS records) into a :class:`Body`."""
    n = len(values)
    flags = 0
    null_values = None in values
    if null_values:
        flags |= NULL_VALUES
    key_nones = keys.count(None) if isinstance(keys, list) else sum(k is None for k in keys)
    parts: list[bytes] = [b"", _lengths(values, null_values).tobytes()]
    blobs = [_join(values, null_values)]
    if key_nones != n:
        flags |= KEYS
        if key_nones:
            flags |= NULL_KEYS
        parts.append(_lengths(keys, bool(key_nones)).tobytes())
        blobs.append(_join(keys, bool(key_nones)))
    ts0 = timestamps[0] if n else 0
    same_ts = timestamps.count(ts0) == n if isinstance(timestamps, list) else all(t == ts0 for t in timestamps)
    if not same_ts:
        flags |= TIMESTAMPS
        parts.append(array("q", timestamps).tobytes())
    if headers is not None and any(headers):
        flags |= HEADERS
        encoded = [_encode_headers(h) if h else b"" for h in headers]
        parts.append(array("i", map(len, encoded)).tobytes())
        blobs.append(b"".join(encoded))
    parts[0] = _REST.pack(n, flags, ts0)
    data = b"".join(parts + blobs)
    return Body(n, data, zlib.crc32(data))


def frame(body: Body, base: int) -> bytes:
    """The header bytes (length, crc, base) to write before ``body.data``, for offset ``base``."""
    base_bytes = _BASE.pack(base)
    return _PREFIX.pack(4 + 8 + len(body.data), zlib.crc32(base_bytes, body.crc)) + base_bytes


@dataclass(slots=True)
class Decoded:
    """One decoded batch as parallel columns."""

    base: int
    keys: list[bytes | None]
    values: list[bytes | None]
    timestamps: list[int]
    headers: list[Headers]  # empty when no record has headers

    def __len__(self) -> int:
        return len(self.values)


class CorruptBatchError(Exception):
    """A complete batch whose CRC or layout is wrong (internal; callers translate it)."""


def peek(buf: bytes | memoryview, pos: int) -> tuple[int, int, int] | None:
    """(total bytes, base offset, count) of the batch at ``pos``, or None if the header is cut off.

    Raises CorruptBatchError when the header cannot be a batch header.
    """
    if len(buf) - pos < HEADER_SIZE:
        return None
    length, _crc, base, count, _flags, _ts = HEADER.unpack_from(buf, pos)
    if length < HEADER_SIZE - 4 or length > MAX_BATCH_BYTES or count < 0 or count > MAX_BATCH_RECORDS or base < 0:
        raise CorruptBatchError(f"bad batch header at byte {pos}: length {length}, count {count}, base {base}")
    return length + 4, base, count


def verify(buf: bytes, pos: int, total: int) -> None:
    """Check the CRC of the complete batch at ``buf[pos:pos+total]``."""
    (crc,) = struct.unpack_from("<I", buf, pos + 4)
    view = memoryview(buf)
    if zlib.crc32(view[pos + 8 : pos + 16], zlib.crc32(view[pos + 16 : pos + total])) != crc:
        raise CorruptBatchError(f"CRC mismatch in the batch at byte {pos}")


def _slices(buf: bytes, lengths: array[int], start: int, nullable: bool) -> tuple[list[bytes | None], int]:
    if nullable:
        ends = list(accumulate((max(n, 0) for n in lengths), initial=start))
        out: list[bytes | None] = [
            None if n < 0 else buf[a:b] for n, a, b in zip(lengths, ends, ends[1:], strict=False)
        ]
        return out, ends[-1]
    ends = list(accumulate(lengths, initial=start))
    return list(map(buf.__getitem__, map(slice, ends, ends[1:]))), ends[-1]


def decode(buf: bytes, pos: int, total: int) -> Decoded:
    """Decode the verified batch at ``buf[pos:pos+total]``."""
    _len, _crc, base, n, flags, ts = HEADER.unpack_from(buf, pos)
    try:
        p = pos + HEADER_SIZE
        vlens = array("i")
        vlens.frombytes(buf[p : p + 4 * n])
        p += 4 * n
        klens = None
        if flags & KEYS:
            klens = array("i")
            klens.frombytes(buf[p : p + 4 * n])
            p += 4 * n
        if flags & TIMESTAMPS:
            tcol = array("q")
            tcol.frombytes(buf[p : p + 8 * n])
            timestamps = tcol.tolist()
            p += 8 * n
        else:
            timestamps = list(repeat(ts, n))
        hlens = None
        if flags & HEADERS:
            hlens = array("i")
            hlens.frombytes(buf[p : p + 4 * n])
            p += 4 * n
        values, p = _slices(buf, vlens, p, bool(flags & NULL_VALUES))
        if klens is not None:
            keys, p = _slices(buf, klens, p, bool(flags & NULL_KEYS))
        else:
            keys = list(repeat(None, n))
        headers: list[Headers] = []
        if hlens is not None:
            raws, p = _slices(buf, hlens, p, False)
            headers = [_decode_headers(raw) for raw in raws]  # type: ignore[arg-type]
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise CorruptBatchError(f"undecodable batch at byte {pos}: {exc}") from exc
    if p != pos + total:
        raise CorruptBatchError(f"batch at byte {pos} has {pos + total - p} unexplained bytes")
    return Decoded(base, keys, values, timestamps, headers)


def scan(buf: bytes, pos: int = 0) -> tuple[list[tuple[int, int, int]], int, str]:
    """Walk complete, valid batches from ``pos``.

    Returns ``(batches, end, stop)``: ``batches`` as (position, base, count), ``end`` the byte
    after the last valid batch, and why the walk stopped: ``"end"`` (clean end of buf),
    ``"partial"`` (a batch is cut off at the end of buf) or ``"corrupt"`` (a complete batch
    that fails its checks; everything from ``end`` on is suspect).
    """
    out: list[tuple[int, int, int]] = []
    size = len(buf)
    while pos < size:
        try:
            head = peek(buf, pos)
            if head is None:
                return out, pos, "partial"
            total, base, count = head
            if pos + total > size:
                return out, pos, "partial"
            verify(buf, pos, total)
        except CorruptBatchError:
            return out, pos, "corrupt"
        out.append((pos, base, count))
        pos += total
    return out, pos, "end"
