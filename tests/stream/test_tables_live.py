"""Reference tables following their changelog while an app runs: updates, deletes, restarts, bad records.

Every wait is a bounded poll on a condition (an output count, the table caught up with its
changelog); nothing asserts on time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from headwater.stream.app import StreamApp
from headwater.stream.broker import Broker, BrokerError, TopicNotFoundError, TopicPartition
from headwater.stream.dlq import DeadLetterRecord
from headwater.stream.log import EmbeddedBroker
from headwater.stream.memory import MemoryBroker
from headwater.stream.tables import ReferenceTable, TableFollowerError
from headwater.stream.testing import run_app

ZIPS = [{"zipcode": "98101", "city": "Seattle"}, {"zipcode": "98052", "city": "Redmond"}]


def _read(broker: Broker, topic: str) -> list[tuple[bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]]:
    """Every record of ``topic`` (key, value, headers), partition by partition; a groupless reader."""
    partitions = broker.describe_topic(topic).partitions
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    ends = broker.end_offsets(tps)
    consumer = broker.consumer(None)
    consumer.assign(tps)
    rows = []
    try:
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for batch in consumer.poll_batch(10_000, timeout=0.2):
                headers = batch.headers or [()] * len(batch)
                rows += list(zip(batch.keys, batch.values, headers, strict=True))
    finally:
        consumer.close()
    return rows


def _values(broker: Broker, topic: str) -> list[Any]:
    return [msgspec.json.decode(v) for _, v, _ in _read(broker, topic) if v is not None]


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def _send(broker: Broker, topic: str, *values: Any, key: bytes | None = None) -> None:
    producer = broker.producer()
    for v in values:
        producer.produce(topic, v if isinstance(v, bytes) or v is None else msgspec.json.encode(v), key)
    producer.flush()
    producer.close()


@contextmanager
def _running(app: StreamApp, broker: Broker) -> Iterator[threading.Thread]:
    """``app`` running in a thread; stopped (drain, commit) on exit, its error re-raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            app.run(broker, handle_signals=False)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        app.stop()
        thread.join(60)
        assert not thread.is_alive(), "the app did not stop"
    if errors:
        raise errors[0]


def _topics(broker: Broker, *names: str) -> None:
    for name in names:
        broker.create_topic(name, exist_ok=True)


def test_a_changelog_update_changes_the_enrichment_of_later_records_without_restart(
    broker: Broker, unique: Callable[[str], str]
) -> None:
    houses, cdc, out, dlq = unique("houses"), unique("zipcodes.cdc"), unique("houses.enriched"), unique("cdc.dlq")
    _topics(broker, houses, cdc, out)
    table = ReferenceTable("zipcodes", ZIPS, key="zipcode", changelog=cdc, dead_letters=dlq)
    app = StreamApp(unique("pricing"), max_batch_latency=0.01)
    app.stream(houses).enrich(table, on="zipcode", columns=["city"], missing="flag").to(out)

    with _running(app, broker):
        _send(broker, houses, {"id": 1, "zipcode": "98101"}, {"id": 2, "zipcode": "98004"})
        _wait(lambda: len(_values(broker, out)) == 2, "the first two records")

        _send(broker, cdc,
              {"op": "upsert", "key": "98101", "value": {"city": "Seattle (downtown)"}},
              b"{this is not json",  # rejected with a reason; the table and the app go on
              {"zipcode": "98004", "city": "Bellevue"},  # a plain row is an upsert
              {"op": "delete", "key": "98052"}, key=b"k")
        assert table.wait_caught_up(timeout=60)
        _send(broker, houses, {"id": 3, "zipcode": "98101"}, {"id": 4, "zipcode": "98004"},
              {"id": 5, "zipcode": "98052"})
        _wait(lambda: len(_values(broker, out)) == 5, "the three later records")

    got = {r["id"]: (r["city"], r["zipcodes_missing"]) for r in _values(broker, out)}
    assert got == {
        1: ("Seattle", False), 2: (None, True),  # before the update
        3: ("Seattle (downtown)", False), 4: ("Bellevue", False), 5: (None, True),  # after: updated, added, deleted
    }
    assert [r.offset for r in table.rejected] == [1]
    assert "not JSON" in table.rejected[0].reason
    (dead,) = [DeadLetterRecord.parse(k, v, h, 0) for k, v, h in _read(broker, dlq)]
    assert dead.value == b"{this is not json" and dead.topic == cdc and dead.offset == 1
    assert "not JSON" in dead.error_message
    # The table's reader is in no group: nothing of the changelog is committed under the app's group.
    assert [lag.committed for lag in broker.group_lag(app.group_id, [cdc])] == [None]
    assert not table.following  # stopped with the app


def test_a_restarted_app_rebuilds_the_table_from_the_changelog(tmp_path: Path) -> None:
    folder = tmp_path / "topics"
    first = EmbeddedBroker(folder)
    _topics(first, "houses", "zipcodes.cdc", "out")
    _send(first, "zipcodes.cdc",
          {"op": "upsert", "key": "98101", "value": {"city": "Seattle (v2)"}},
          {"op": "upsert", "key": "98004", "value": {"city": "Bellevue"}},
          {"op": "delete", "key": "98004"},
          {"op": "upsert", "key": "98039", "value": {"city": "Medina"}})
    first.close()

    # A new process would build the table from the same baseline file/frame: the changelog does the rest.
    broker = EmbeddedBroker(folder)
    table = ReferenceTable("zipcodes", ZIPS, key="zipcode", changelog="zipcodes.cdc")
    app = StreamApp("pricing")
    app.stream("houses").enrich(table, columns=["city"]).to("out")
    result = run_app(app, {"houses": [{"zipcode": z} for z in ("98101", "98004", "98039", "98052")]}, broker=broker)

    assert [r["city"] for r in result.values("out")] == ["Seattle (v2)", None, "Medina", "Redmond"]
    assert table.version == 1  # the restore applied the whole changelog as one change set
    broker.close()


def test_running_twice_resets_to_the_baseline_before_restoring() -> None:
    broker = MemoryBroker()
    _topics(broker, "houses", "cdc", "out")
    _send(broker, "cdc", {"op": "delete", "key": "98101"})
    table = ReferenceTable("zipcodes", ZIPS, key="zipcode", changelog="cdc")
    app = StreamApp("pricing")
    app.stream("houses").enrich(table, columns=["city"]).to("out")

    run_app(app, {"houses": [{"zipcode": "98101"}]}, broker=broker)
    _send(broker, "cdc", {"op": "upsert", "key": "98101", "value": {"city": "back"}})
    run_app(app, {"houses": [{"zipcode": "98101"}]}, broker=broker)

    assert [r["city"] for r in _values(broker, "out")] == [None, "back"]
    assert len(table) == 2


def test_a_micro_batch_keeps_the_version_it_started_with() -> None:
    broker = MemoryBroker()
    _topics(broker, "cdc")
    table = ReferenceTable("zipcodes", ZIPS, key="zipcode", changelog="cdc")
    table.start(broker)
    try:
        batch: list[Any] = []  # a marker: what the kernel passes is the batch's dead-letter list
        later_batch: list[Any] = []
        before = table.pin(batch)
        _send(broker, "cdc", {"op": "upsert", "key": "98101", "value": {"city": "new"}})
        assert table.wait_caught_up(timeout=60)

        assert table.pin(batch) is before  # the batch in flight still sees its version
        after = table.pin(later_batch)
        assert after.number == before.number + 1
        assert after.frame.filter(after.frame["zipcode"] == "98101")["city"].to_list() == ["new"]
        assert before.frame.filter(before.frame["zipcode"] == "98101")["city"].to_list() == ["Seattle"]
    finally:
        table.stop()


def test_a_missing_changelog_topic_stops_the_app_at_start_with_a_hint() -> None:
    broker = MemoryBroker()
    table = ReferenceTable("zipcodes", ZIPS, key="zipcode", changelog="zipcodes.cdc")
    app = StreamApp("pricing")
    app.stream("houses").enrich(table).to("out")

    with pytest.raises(TopicNotFoundError) as caught:
        run_app(app, {"houses": [{"zipcode": "98101"}]}, broker=broker)

    assert "zipcodes.cdc" in caught.value.message
    assert caught.value.hint is not None and "topics create zipcodes.cdc" in caught.value.hint
    assert [lag.committed for lag in broker.group_lag("pricing", ["houses"])] == [None]


def test_a_table_filled_only_by_its_changelog_with_tombstones() -> None:
    broker = MemoryBroker()
    _topics(broker, "houses", "cdc", "out")
    _send(broker, "cdc", {"zipcode": 98101, "city": "Seattle"}, {"zipcode": 98004, "city": "Bellevue"})
    _send(broker, "cdc", None, key=b"98004")  # a Kafka tombstone deletes by record key
    table = ReferenceTable("zipcodes", key="zipcode", schema={"zipcode": int, "city": str}, changelog="cdc")
    app = StreamApp("pricing")
    app.stream("houses").enrich(table).to("out")

    result = run_app(app, {"houses": [{"zipcode": 98101}, {"zipcode": 98004}]}, broker=broker)

    assert [r["city"] for r in result.values("out")] == ["Seattle", None]


def test_one_table_shared_by_two_enrich_steps_follows_once_and_stops_with_the_app() -> None:
    broker = MemoryBroker()
    _topics(broker, "houses", "cdc", "cheap", "dear")
    _send(broker, "cdc", {"op": "upsert", "key": "98101", "value": {"city": "Seattle (v2)"}})
    table = ReferenceTable("zipcodes", ZIPS, key="zipcode", changelog="cdc")
    app = StreamApp("pricing")
    cheap, dear = app.stream("houses").branch(lambda h: h["price"] < 500)
    cheap.enrich(table, columns=["city"]).to("cheap")
    dear.enrich(table, columns=["city"], prefix="zip_").to("dear")

    result = run_app(app, {"houses": [{"zipcode": "98101", "price": 1}, {"zipcode": "98052", "price": 900}]},
                     broker=broker)

    assert result.values("cheap") == [{"zipcode": "98101", "price": 1, "city": "Seattle (v2)"}]
    assert result.values("dear") == [{"zipcode": "98052", "price": 900, "zip_city": "Redmond"}]
    assert not table.following


class _FailingBroker(MemoryBroker):
    """A MemoryBroker whose readers of ``cdc`` (the table's) fail once ``fail`` is set: a lost changelog."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = threading.Event()

    def consumer(self, group_id: str | None = None, **kw: Any) -> Any:
        consumer = super().consumer(group_id, **kw)
        if group_id is None:
            real = consumer.poll_batch

            def poll_batch(max_records: int = 10_000, timeout: float = 1.0) -> Any:
                if self.fail.is_set() and any(tp.topic == "cdc" for tp in consumer.assignment()):
                    raise BrokerError("the changelog went away")
                return real(max_records, timeout)

            consumer.poll_batch = poll_batch  # type: ignore[method-assign]
        return consumer


def test_a_table_that_stops_following_stops_the_app_instead_of_serving_stale_rows() -> None:
    broker = _FailingBroker()
    _topics(broker, "houses", "cdc", "out")
    table = ReferenceTable("zipcodes", ZIPS, key="zipcode", changelog="cdc")
    app = StreamApp("pricing", max_batch_latency=0.01)
    app.stream("houses").enrich(table).to("out")

    with pytest.raises(TableFollowerError, match="the changelog went away"), _running(app, broker) as thread:
        _send(broker, "houses", {"zipcode": "98101"})
        _wait(lambda: len(_values(broker, "out")) == 1, "the first record")
        broker.fail.set()
        _wait(lambda: table.error is not None, "the follower to fail")
        _send(broker, "houses", {"zipcode": "98052"})
        _wait(lambda: not thread.is_alive(), "the app to stop on its own")

    assert len(_values(broker, "out")) == 1
    assert [lag.committed for lag in broker.group_lag("pricing", ["houses"])] == [1]  # the failed batch is not
