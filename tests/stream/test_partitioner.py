"""murmur2 and partition choice: Kafka's own test vectors, and the byte-by-byte reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.stream._common import KeyPartitioner
from headwater.stream.partitioner import murmur2, murmur2_many, partition_for

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


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=80))
def test_murmur2_many_equals_murmur2_key_by_key(keys: list[bytes]) -> None:
    # Random lengths 0-64 in one batch: every length group and every tail size (0-3 bytes).
    assert murmur2_many(keys).tolist() == [murmur2(k) for k in keys]


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=64), st.lists(st.binary(min_size=64, max_size=64), min_size=1, max_size=30))
def test_murmur2_many_on_keys_of_one_length(length: int, blobs: list[bytes]) -> None:
    # The one-length fast path (no grouping), as a batch of ids or UUIDs takes.
    keys = [b[:length] for b in blobs]
    assert murmur2_many(keys).tolist() == [reference_murmur2(k) for k in keys]


def test_murmur2_many_gives_what_kafka_gives() -> None:
    keys = [key for key, _ in JAVA_VECTORS]
    assert murmur2_many(keys).tolist() == [signed & 0xFFFFFFFF for _, signed in JAVA_VECTORS]
    assert murmur2_many([]).tolist() == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.binary(max_size=40)), min_size=1, max_size=60), st.integers(1, 9))
def test_a_batch_lands_where_record_by_record_would(keys: list[bytes | None], partitions: int) -> None:
    # The batch path (numpy) against the scalar one, keyless records included: the same
    # partition for every keyed record, the same round robin for keyless ones.
    batch, one_by_one = KeyPartitioner(), KeyPartitioner()
    assigned = batch.assign(keys, partitions).tolist()
    assert assigned == [one_by_one.partition(k, partitions) for k in keys]
    split = KeyPartitioner().split(len(keys), keys, partitions)
    assert sorted(i for idx in split.values() for i in idx) == list(range(len(keys)))
    for p, idx in split.items():
        assert list(idx) == sorted(idx)
        assert all(keys[i] is None or partition_for(keys[i], partitions) == p for i in idx)  # type: ignore[arg-type]
