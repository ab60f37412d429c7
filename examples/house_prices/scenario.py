"""Running the scenario end to end from outside: the CLI as subprocesses, topics read back, a summary.

``examples/demo.py`` (``make demo``) and ``tests/house_prices`` share these, so the demo and
its tests drive the pipeline the same way a user does: ``headwater dags test``,
``headwater stream run``, ``headwater stream replay``, on one headwater home.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from house_prices import lake
from house_prices.stream_app import ALERTS_TOPIC, APP, PRICED_TOPIC, SOURCE_TOPIC, TOPICS

EXAMPLES = Path(__file__).resolve().parents[1]
DAGS = EXAMPLES / "house_prices" / "dags"


@dataclass
class Home:
    """One headwater home for the scenario, and how to run the CLI against it."""

    path: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        paths = [str(EXAMPLES), *filter(None, [os.environ.get("PYTHONPATH")])]
        return dict(os.environ, HEADWATER_HOME=str(self.path), HEADWATER_DAGS_FOLDER=str(DAGS),
                    PYTHONPATH=os.pathsep.join(paths), **self.extra_env)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "headwater", *args]

    def cli(self, *args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """Run ``headwater ARGS`` to completion; with ``check``, a failure raises with its output."""
        done = subprocess.run(self.command(*args), env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"headwater {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def start(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        """Start ``headwater ARGS`` in the background, its output to ``log``, in its own process group."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            return subprocess.Popen(self.command(*args), env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def settings(self) -> Any:
        from headwater.settings import Settings

        return Settings.from_env({**self.env})

    def broker(self) -> Any:
        from headwater.stream.connect import open_broker

        return open_broker(self.settings())

    def registry(self) -> Any:
        from headwater.ml import open_registry

        return open_registry(self.settings())

    def lake(self, params: Mapping[str, Any] | None = None) -> dict[str, Path]:
        """The stage folders of the current source (``params`` as given to the DAG)."""
        params = dict(params or {})
        root = Path(params.get("lake") or self.path / "house_prices")
        digest = lake.source_digest(lake.source_path(params))
        return {stage: lake.stage_dir(root, stage, digest) for stage in lake.STAGES}


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """SIGTERM the process group (the app drains and commits), then SIGKILL if it hangs; returns the exit code."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return process.wait()


def ensure_topics(broker: Any) -> None:
    for topic in TOPICS:
        broker.create_topic(topic, 1, exist_ok=True)


def end_offset(broker: Any, topic: str) -> int:
    """Records ever written to ``topic`` (the sum of its partitions' end offsets)."""
    from headwater.stream.broker import TopicPartition

    parts = broker.describe_topic(topic).partitions
    return sum(broker.end_offsets([TopicPartition(topic, p) for p in range(parts)]).values())


def read_json(broker: Any, topic: str, start: int = 0) -> list[Any]:
    """The values of ``topic`` from offset ``start`` (one partition), decoded from JSON when they are."""
    from headwater.stream.broker import TopicPartition

    tp = TopicPartition(topic, 0)
    end = broker.end_offsets([tp])[tp]
    consumer = broker.consumer(None)
    consumer.assign([tp])
    consumer.seek(tp, start)
    values: list[Any] = []
    try:
        while consumer.position(tp) < end:
            for batch in consumer.poll_batch(max_records=50_000, timeout=1.0):
                for raw in batch.values:
                    try:
                        values.append(json.loads(raw) if raw is not None else None)
                    except ValueError:
                        values.append(raw)
    finally:
        consumer.close()
    return values


def dead_letters(broker: Any, start: int = 0) -> list[Any]:
    """The app's dead letters from ``start``: each with its reason (``DeadLetterRecord``)."""
    from headwater.stream.broker import TopicPartition
    from headwater.stream.dlq import DeadLetterRecord

    topic = f"{APP}.dlq"
    tp = TopicPartition(topic, 0)
    end = broker.end_offsets([tp])[tp]
    consumer = broker.consumer(None)
    consumer.assign([tp])
    consumer.seek(tp, start)
    found: list[Any] = []
    try:
        while consumer.position(tp) < end:
            for batch in consumer.poll_batch(max_records=50_000, timeout=1.0):
                headers = batch.headers or [()] * len(batch)
                for i in range(len(batch)):
                    found.append(DeadLetterRecord.parse(batch.keys[i], batch.values[i], headers[i],
                                                        batch.timestamps[i]))
    finally:
        consumer.close()
    return found


@dataclass
class Offsets:
    """Where the scenario's topics ended before a replay: what came after is this run's."""

    houses: int
    priced: int
    alerts: int
    dlq: int

    @classmethod
    def now(cls, broker: Any) -> Offsets:
        return cls(end_offset(broker, SOURCE_TOPIC), end_offset(broker, PRICED_TOPIC),
                   end_offset(broker, ALERTS_TOPIC), end_offset(broker, f"{APP}.dlq"))


def skip_unpriced(broker: Any) -> int:
    """Move the app's committed offsets on ``houses`` to its end; returns how many listings that skips.

    Each demo run prices exactly the listings it replays: a run interrupted during its
    replay (Ctrl-C) can leave listings that no app read; without this the next run's app
    would price them too and the run's counts would come out higher. Call it with the app
    stopped (its group then has no members to fight over the offsets).
    """
    from headwater.stream.broker import TopicPartition

    parts = [TopicPartition(SOURCE_TOPIC, p) for p in range(broker.describe_topic(SOURCE_TOPIC).partitions)]
    ends = broker.end_offsets(parts)
    consumer = broker.consumer(APP)  # the app's group: its group id is its name
    try:
        committed = consumer.committed(parts)
        skipped = sum(end - (committed.get(tp) or 0) for tp, end in ends.items())
        if skipped:
            consumer.commit(ends)
    finally:
        consumer.close()
    return skipped


def wait_until_scored(broker: Any, since: Offsets, expected: int, *, app: subprocess.Popen[bytes] | None = None,
                      timeout: float = 60, on_progress: Any = None) -> int:
    """Wait until ``expected`` records came out (priced or dead-lettered) after ``since``; returns how many did.

    Bounded by ``timeout``; stops early when ``app`` exits.
    """
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = (end_offset(broker, PRICED_TOPIC) - since.priced) + (end_offset(broker, f"{APP}.dlq") - since.dlq)
        if on_progress is not None:
            on_progress(done)
        if done >= expected or (app is not None and app.poll() is not None):
            return done
        time.sleep(0.1)
    return done


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for the app's Prometheus endpoint)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int, prefixes: tuple[str, ...] = ("headwater_stream_records", "headwater_data_check",
                                                    "headwater_drift", "headwater_stream_model_info")) -> list[str]:
    """The sample lines of a Prometheus endpoint on 127.0.0.1 whose names start with ``prefixes``."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    # "_created" samples are the counters' creation times: noise in a summary.
    return [line for line in text.splitlines() if line.startswith(prefixes) and "_created{" not in line]
