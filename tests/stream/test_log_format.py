"""Property tests of the embedded log's pieces: the batch format, partition choice, assignment."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.stream._common import KeyPartitioner, range_assign
from headwater.stream.broker import TopicPartition
from headwater.stream.log import segment
from headwater.stream.partitioner import partition_for

blobs = st.one_of(st.none(), st.binary(max_size=40))
headers = st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=8)), max_size=3).map(tuple)
records = st.lists(
    st.tuples(blobs, blobs, st.integers(min_value=0, max_value=2**62), headers), min_size=1, max_size=60
)


@settings(max_examples=200, deadline=None)
@given(records=records, base=st.integers(min_value=0, max_value=2**40), same_ts=st.booleans())
def test_a_batch_decodes_to_what_was_packed(records: list, base: int, same_ts: bool) -> None:
    keys = [r[0] for r in records]
    values = [r[1] for r in records]
    timestamps = [records[0][2]] * len(records) if same_ts else [r[2] for r in records]
    hdrs = [r[3] for r in records]
    body = segment.pack(values, keys, timestamps, hdrs)
    raw = segment.frame(body, base) + body.data

    batches, end, stop = segment.scan(raw)
    assert (batches, end, stop) == ([(0, base, len(records))], len(raw), "end")
    decoded = segment.decode(raw, 0, len(raw))
    assert decoded.base == base
    assert decoded.keys == keys
    assert decoded.values == values
    assert decoded.timestamps == timestamps
    assert decoded.headers == (hdrs if any(hdrs) else [])


@settings(max_examples=100, deadline=None)
@given(records=records, cut=st.integers(min_value=1))
def test_a_cut_or_flipped_batch_is_never_decoded(records: list, cut: int) -> None:
    body = segment.pack([r[1] for r in records], [r[0] for r in records], [r[2] for r in records], None)
    raw = segment.frame(body, 7) + body.data
    torn = raw[: cut % len(raw)]
    assert segment.scan(torn)[0] == []
    flipped = bytearray(raw)
    flipped[cut % len(raw)] ^= 0x01
    assert segment.scan(bytes(flipped))[2] in ("corrupt", "partial")


@given(keys=st.lists(st.one_of(st.none(), st.binary(max_size=12)), min_size=1, max_size=200),
       partitions=st.integers(min_value=1, max_value=12))
def test_key_split_matches_kafka_and_keeps_every_record_once(keys: list, partitions: int) -> None:
    split = KeyPartitioner().split(len(keys), keys, partitions)
    seen = sorted(i for idx in split.values() for i in idx)
    assert seen == list(range(len(keys)))
    for p, idx in split.items():
        assert list(idx) == sorted(idx)
        for i in idx:
            if keys[i] is not None:
                assert p == partition_for(keys[i], partitions)


@given(members=st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=6, unique=True),
       counts=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(min_value=1, max_value=9), min_size=1))
def test_range_assignment_gives_each_partition_to_exactly_one_member(members: list, counts: dict) -> None:
    subs = {m: sorted(counts) for m in members}
    out = range_assign(subs, counts)
    given_out = [tp for tps in out.values() for tp in tps]
    assert sorted(given_out) == sorted(TopicPartition(t, p) for t, n in counts.items() for p in range(n))
    sizes = [len(tps) for tps in out.values()]
    assert max(sizes) - min(sizes) <= len(counts)
