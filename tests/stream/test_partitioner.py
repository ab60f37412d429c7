"""murmur2 and partition choice: Kafka's own test vectors, and the byte-by-byte reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.stream.partitioner import murmur2, partition_for

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed 32-bit results, as Java gives them).
JAVA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


def reference_murmur2(data: bytes) -> int:
    """The Java producer's loop, byte by byte (the first, slower formulation of ``murmur2``)."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    end = length - (length & 3)
    for i in range(0, end, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    rest = length & 3
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h


@pytest.mark.parametrize(("key", "signed"), JAVA_VECTORS)
def test_murmur2_gives_what_kafka_gives(key: bytes, signed: int) -> None:
    assert murmur2(key) == signed & 0xFFFFFFFF
    assert partition_for(key, 7) == (signed & 0x7FFFFFFF) % 7


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_murmur2_matches_the_byte_by_byte_reference(key: bytes) -> None:
    assert murmur2(key) == reference_murmur2(key)
