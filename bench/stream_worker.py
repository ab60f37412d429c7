"""One measured case of the streaming benchmark, in a process of its own.

    python bench/stream_worker.py '<spec as JSON>'

``bench/stream.py`` starts this script once per run of a case and reads the JSON it
writes to ``spec["out"]``: ``n`` (records counted), ``wall`` and ``cpu`` (seconds of the
timed window: ``time.perf_counter`` and ``getrusage(RUSAGE_SELF)``, user + system time of
every thread of this process, librdkafka's included), ``out`` (records written) and notes.

The timed window excludes start-up, imports, reading the values file and, on Kafka,
connecting and joining a group:

* produce: from the first ``produce*`` call to the return of ``flush``;
* consume: from the return of the first poll that gave records to the last record; the
  records of that first poll are not counted;
* apps and loops: from the return of the first poll that gave records to the commit that
  covers the last input record; every input record is counted.

Math libraries are pinned to one thread (``pin_math_threads`` before Polars loads), so
an app uses one core's worth of threads, as ``headwater stream run`` runs it.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

CHUNK = 10_000  # records per produce_batch / poll_batch, as the app's max_batch_records
COMMIT_EVERY = 10_000  # input records between flush + commit in the per-record loop


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float | None:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over from the
    parent across exec, so a small child reports the harness's size."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class Window:
    """Start and end stamps (wall, CPU) of the timed part of a case."""

    def __init__(self) -> None:
        self.t0 = self.c0 = self.t1 = self.c1 = 0.0
        self.started = False

    def start(self) -> None:
        self.started = True
        self.t0, self.c0 = time.perf_counter(), cpu_now()

    def stop(self) -> None:
        self.t1, self.c1 = time.perf_counter(), cpu_now()

    def result(self, n: int, **extra: Any) -> dict[str, Any]:
        return {"n": n, "wall": self.t1 - self.t0, "cpu": self.c1 - self.c0, **extra}


# -- brokers and raw clients -------------------------------------------------------------


def open_broker(spec: Mapping[str, Any]) -> Any:
    if spec["backend"] == "log":
        from headwater.stream.log import EmbeddedBroker

        return EmbeddedBroker(spec["log_path"])
    from headwater.stream.kafka import KafkaBroker

    return KafkaBroker(spec["bootstrap"], request_timeout=15.0)


def raw_producer_config(spec: Mapping[str, Any]) -> dict[str, Any]:
    """librdkafka settings of a raw client: headwater's defaults, or librdkafka's own."""
    if spec["client"] == "rdkafka_default":
        return {"bootstrap.servers": spec["bootstrap"]}
    return dict(open_broker(spec).producer_settings())


def raw_consumer_config(spec: Mapping[str, Any], group: str) -> dict[str, Any]:
    if spec["client"] == "rdkafka_default":
        return {"bootstrap.servers": spec["bootstrap"], "group.id": group, "auto.offset.reset": "earliest",
                "enable.auto.commit": False}
    return dict(open_broker(spec).consumer_settings(group))


def _raw_produce(producer: Any, topic: str, value: bytes, key: bytes | None, **kw: Any) -> None:
    while True:
        try:
            producer.produce(topic, value, key, **kw)
            return
        except BufferError:  # librdkafka's queue is full: let it drain
            producer.poll(0.005)


# -- (a) produce and consume -------------------------------------------------------------


def produce(spec: Mapping[str, Any]) -> dict[str, Any]:
    from stream_apps import read_values

    keys, values = read_values(Path(spec["values"]))
    n = min(spec.get("n", len(values)), len(values))
    keys, values, topic = keys[:n], values[:n], spec["topic"]
    window = Window()
    if spec["client"] == "headwater":
        broker = open_broker(spec)
        producer = broker.producer()
        if spec["backend"] == "kafka":  # connect before timing: one record to another topic
            producer.produce(spec["topic"] + ".warmup", b"{}")
            producer.flush()
        window.start()
        for start in range(0, n, CHUNK):
            producer.produce_batch(topic, values[start:start + CHUNK], keys[start:start + CHUNK])
        producer.flush()
        window.stop()
        producer.close()
        return window.result(n)
    from confluent_kafka import Producer

    raw = Producer(raw_producer_config(spec))
    raw.produce(spec["topic"] + ".warmup", b"{}")
    raw.flush()
    window.start()
    for i in range(n):
        _raw_produce(raw, topic, values[i], keys[i])
        if i % 1000 == 0:
            raw.poll(0)
    left = raw.flush(60)
    window.stop()
    return window.result(n, unflushed=left)


def consume(spec: Mapping[str, Any]) -> dict[str, Any]:
    topic, n, partitions = spec["topic"], spec["n"], spec["partitions"]
    window = Window()
    seen = first = 0
    deadline = time.monotonic() + spec.get("timeout", 120)
    if spec["client"] == "headwater":
        from headwater.stream.broker import TopicPartition

        consumer = open_broker(spec).consumer()
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        while seen < n and time.monotonic() < deadline:
            got = sum(len(b) for b in consumer.poll_batch(CHUNK, timeout=0.5))
            if got and not window.started:
                window.start()
                first = got
            seen += got
        window.stop()
        consumer.close()
        return window.result(seen - first, total=seen)
    from confluent_kafka import OFFSET_BEGINNING, Consumer
    from confluent_kafka import TopicPartition as RawTP

    raw = Consumer(raw_consumer_config(spec, f"bench-raw-{time.time_ns()}"))
    raw.assign([RawTP(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    while seen < n and time.monotonic() < deadline:
        messages = raw.consume(CHUNK, 0.5)
        values = [m.value() for m in messages if m.error() is None]
        if values and not window.started:
            window.start()
            first = len(values)
        seen += len(values)
    window.stop()
    raw.close()
    return window.result(seen - first, total=seen)


# -- (b), (c) apps and loops -------------------------------------------------------------


class TimedConsumer:
    """A consumer that stamps the first poll giving records and stops the app once the
    commits cover ``ends`` (every input record processed); everything else is delegated."""

    def __init__(self, inner: Any, window: Window, ends: Mapping[Any, int], on_done: Any) -> None:
        self._inner, self._window, self._ends, self._on_done = inner, window, ends, on_done
        self._committed: dict[Any, int] = {}

    def poll_batch(self, max_records: int = 10_000, timeout: float = 1.0) -> Any:
        batches = self._inner.poll_batch(max_records, timeout)
        if not self._window.started and any(len(b) for b in batches):
            self._window.start()
        return batches

    def commit(self, offsets: Mapping[Any, int]) -> None:
        self._inner.commit(offsets)
        self._committed.update(offsets)
        if all(self._committed.get(tp, 0) >= end for tp, end in self._ends.items()):
            self._window.stop()
            self._on_done()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedBroker:
    """The broker, with consumers wrapped in :class:`TimedConsumer`."""

    def __init__(self, inner: Any, window: Window, ends: Mapping[Any, int], on_done: Any) -> None:
        self._inner, self._window, self._ends, self._on_done = inner, window, ends, on_done

    def consumer(self, *args: Any, **kwargs: Any) -> TimedConsumer:
        return TimedConsumer(self._inner.consumer(*args, **kwargs), self._window, self._ends, self._on_done)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _ends(spec: Mapping[str, Any]) -> dict[Any, int]:
    from headwater.stream.broker import TopicPartition

    return {TopicPartition(spec["source"], int(p)): end for p, end in spec["ends"].items() if end > 0}


def run_app(spec: Mapping[str, Any]) -> dict[str, Any]:
    from stream_apps import build_app

    window = Window()
    app = build_app(spec["variant"], spec["shape"], name=spec["app"], group_id=spec["group"],
                    source=spec["source"], sink=spec["sink"])
    broker = TimedBroker(open_broker(spec), window, _ends(spec), app.stop)
    profiler = None
    if spec.get("profile"):
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    app.run(broker, handle_signals=False)
    if profiler is not None:
        profiler.stop()
        Path(spec["profile"]).write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    m = app.metrics
    return window.result(m.records_in, out=m.records_out, dead=m.records_dead_lettered, batches=m.batches)


def loop_batched(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Per-record logic with orjson, but batched I/O: poll_batch, a loop, produce_batch, flush, commit."""
    import orjson
    from stream_apps import RECORD_LOGIC

    keep, transform = RECORD_LOGIC[spec["shape"]]
    loads, dumps = orjson.loads, orjson.dumps
    broker = open_broker(spec)
    consumer, producer = broker.consumer(spec["group"]), broker.producer()
    consumer.subscribe([spec["source"]])
    sink, n = spec["sink"], spec["n"]
    window, seen, out = Window(), 0, 0
    deadline = time.monotonic() + spec.get("timeout", 600)
    while seen < n and time.monotonic() < deadline:
        batches = consumer.poll_batch(CHUNK, timeout=0.2)
        if not batches:
            continue
        if not window.started:
            window.start()
        for batch in batches:
            values, keys, stamps = [], [], []
            for key, value, ts in zip(batch.keys, batch.values, batch.timestamps, strict=True):
                record = loads(value)
                if keep(record):
                    values.append(dumps(transform(record)))
                    keys.append(key)
                    stamps.append(ts)
            producer.produce_batch(sink, values, keys, timestamps=stamps)
            seen += len(batch)
            out += len(values)
        producer.flush()
        consumer.commit({b.tp: b.next_offset for b in batches})
    window.stop()
    consumer.close()
    producer.close()
    return window.result(seen, out=out)


def loop_record(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The Faust / Quix Streams way: poll one record, orjson decode, transform, encode, produce one.

    On the embedded log through the port (``poll_batch(max_records=1)``, ``produce``); on
    Kafka with confluent-kafka directly, as Quix Streams does (``Consumer.poll()``, then
    ``Producer.produce()`` followed by ``poll(0)``), with headwater's client settings.
    Flush and commit every ``COMMIT_EVERY`` input records (at-least-once), as the apps do
    once per batch. A lean loop: no framework objects per record, so a lower bound on
    what a Faust or Quix Streams app pays per record.
    """
    import orjson
    from stream_apps import RECORD_LOGIC

    keep, transform = RECORD_LOGIC[spec["shape"]]
    loads, dumps = orjson.loads, orjson.dumps
    sink, n = spec["sink"], spec["n"]
    window, seen, out = Window(), 0, 0
    deadline = time.monotonic() + spec.get("timeout", 600)
    if spec["backend"] == "log":
        broker = open_broker(spec)
        consumer, producer = broker.consumer(spec["group"]), broker.producer()
        consumer.subscribe([spec["source"]])
        pending: dict[Any, int] = {}
        while seen < n and time.monotonic() < deadline:
            for batch in consumer.poll_batch(1, timeout=0.2):
                if not window.started:
                    window.start()
                record = loads(batch.values[0])
                if keep(record):
                    producer.produce(sink, dumps(transform(record)), batch.keys[0], timestamp_ms=batch.timestamps[0])
                    out += 1
                pending[batch.tp] = batch.offsets[0] + 1
                seen += 1
                if seen % COMMIT_EVERY == 0 or seen == n:
                    producer.flush()
                    consumer.commit(pending)
                    pending = {}
        window.stop()
        consumer.close()
        producer.close()
        return window.result(seen, out=out)
    from confluent_kafka import Consumer, Producer
    from confluent_kafka import TopicPartition as RawTP

    kspec = {**spec, "client": "headwater"}
    raw_c = Consumer(raw_consumer_config(kspec, spec["group"]))
    raw_p = Producer(raw_producer_config(kspec))
    raw_c.subscribe([spec["source"]])
    offsets: dict[tuple[Any, Any], int] = {}
    while seen < n and time.monotonic() < deadline:
        msg = raw_c.poll(0.2)
        if msg is None or msg.error() is not None:
            continue
        if not window.started:
            window.start()
        record = loads(msg.value())  # type: ignore[arg-type]
        if keep(record):
            _raw_produce(raw_p, sink, dumps(transform(record)), msg.key(), timestamp=msg.timestamp()[1])
            raw_p.poll(0)  # as Quix Streams' Producer.produce does after every record
            out += 1
        offsets[(msg.topic(), msg.partition())] = msg.offset() + 1  # type: ignore[operator]
        seen += 1
        if seen % COMMIT_EVERY == 0 or seen == n:
            raw_p.flush()
            raw_c.commit(offsets=[RawTP(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    window.stop()
    raw_c.close()
    raw_p.flush()
    return window.result(seen, out=out)


KINDS = {"produce": produce, "consume": consume, "app": run_app, "loop_batched": loop_batched,
         "loop_record": loop_record}


def main(argv: Sequence[str]) -> int:
    spec = json.loads(argv[1])
    if spec["kind"] in ("app", "loop_batched", "loop_record"):
        from headwater.stream import pin_math_threads

        pin_math_threads()  # before Polars loads: one thread for Polars, BLAS and OpenMP
    result = KINDS[spec["kind"]](spec)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["process_cpu"] = usage.ru_utime + usage.ru_stime
    result["peak_rss_mb"] = peak_rss_mb()
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
