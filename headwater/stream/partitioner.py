"""Kafka's default key-to-partition rule: murmur2 of the key, as the Java producer does.

``partition = (murmur2(key) & 0x7fffffff) % partitions``. Keyless records go round robin.
:func:`murmur2_many` hashes a batch of keys with numpy, for producers' batch paths.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where the batch path runs: `import headwater` stays light
    import numpy as np
    from numpy.typing import NDArray

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_MAX_CACHED_WORDS = 64  # unpackers for keys up to 256 bytes are kept; longer keys build their own
_unpackers: dict[int, Callable[[bytes], tuple[int, ...]]] = {}


def _words(count: int) -> Callable[[bytes], tuple[int, ...]]:
    unpack = _unpackers.get(count)
    if unpack is None:
        unpack = struct.Struct(f"<{count}I").unpack_from
        if count <= _MAX_CACHED_WORDS:
            _unpackers[count] = unpack
    return unpack


def murmur2(data: bytes, m: int = _M, mask: int = _MASK) -> int:
    """Kafka's murmur2 (seed 0x9747b28c), as an unsigned 32-bit int.

    The 4-byte little-endian words are read in one ``struct`` call, and the constants are
    locals: measured 1.55x faster than reading byte by byte on 36-byte keys (UUIDs: 2.6 us
    against 3.9 a key) and 1.2x on 6-byte ones (0.7 us against 0.8). ``m`` and ``mask``
    are not parameters to pass.
    """
    length = len(data)
    h = 0x9747B28C ^ length
    count = length >> 2
    for k in _words(count)(data):
        k = (k * m) & mask
        h = ((h * m) & mask) ^ (((k ^ (k >> 24)) * m) & mask)
    rest = length & 3
    if rest:
        end = count << 2
        if rest == 3:
            h ^= data[end + 2] << 16
        if rest >= 2:
            h ^= data[end + 1] << 8
        h ^= data[end]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a Kafka producer picks for ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def murmur2_many(keys: Sequence[bytes]) -> NDArray[np.uint32]:
    """``murmur2`` of every key, as a numpy ``uint32`` array, in a few numpy passes.

    Keys are grouped by byte length; each group becomes one 2-D ``uint8`` array (one row a
    key), its 4-byte words a ``uint32`` view, so the loop runs over word positions (9 for a
    36-byte UUID) instead of over keys, and each step is one vectorised operation on the
    group. uint32 arithmetic wraps modulo 2**32, which is the ``& 0xFFFFFFFF`` of the
    scalar version. Equal to :func:`murmur2` key by key (property-tested).
    """
    import numpy as np

    n = len(keys)
    out = np.empty(n, dtype=np.uint32)
    if not n:
        return out
    lengths = np.fromiter(map(len, keys), dtype=np.int64, count=n)
    first = int(lengths[0])
    if (lengths == first).all():  # the usual batch: ids or UUIDs of one length
        out[:] = _hash_rows(b"".join(keys), n, first)
        return out
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order]
    bounds = np.flatnonzero(np.diff(sorted_lengths)) + 1
    for idx in np.split(order, bounds):
        length = int(lengths[idx[0]])
        group = b"".join([keys[i] for i in idx.tolist()])
        out[idx] = _hash_rows(group, len(idx), length)
    return out


def _hash_rows(joined: bytes, rows: int, length: int) -> NDArray[np.uint32]:
    """murmur2 of ``rows`` keys of ``length`` bytes each, concatenated in ``joined``."""
    import numpy as np

    m = np.uint32(_M)
    h = np.full(rows, (0x9747B28C ^ length) & _MASK, dtype=np.uint32)
    data = np.frombuffer(joined, dtype=np.uint8).reshape(rows, length) if length else None
    count = length >> 2
    if count and data is not None:
        # The whole-word part of each row, contiguous so it can be viewed as little-endian uint32.
        words = np.ascontiguousarray(data[:, : count << 2]).view("<u4")
        for j in range(count):
            k = words[:, j] * m
            k ^= k >> np.uint32(24)
            k *= m
            h *= m
            h ^= k
    rest = length & 3
    if rest and data is not None:
        end = count << 2
        if rest == 3:
            h ^= data[:, end + 2].astype(np.uint32) << np.uint32(16)
        if rest >= 2:
            h ^= data[:, end + 1].astype(np.uint32) << np.uint32(8)
        h ^= data[:, end]
        h *= m
    h ^= h >> np.uint32(13)
    h *= m
    h ^= h >> np.uint32(15)
    return h
