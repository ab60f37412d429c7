"""The real ``headwater`` CLI in subprocesses, on an embedded log in a throwaway ``$HEADWATER_HOME``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headwater.stream.broker import TopicPartition
from headwater.stream.log import EmbeddedBroker
from tests.stream.brokertools import drain


@dataclass
class StreamHome:
    """``root`` is the working folder; the log lives in ``root/home/topics``."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("HEADWATER_") and k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
        env.update(HEADWATER_HOME=str(self.home), COLUMNS="80", **extra)
        return env

    def cli(self, *args: str, timeout: float = 60, check: bool = False,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """``headwater ARGS`` as in a pipe 80 columns wide; stdin empty unless ``input``."""
        proc = subprocess.run(
            [sys.executable, "-m", "headwater", *args], env=self.env(), cwd=self.root, capture_output=True,
            text=True, timeout=timeout, input=input, stdin=subprocess.DEVNULL if input is None else None,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"headwater {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "headwater", *args], env=self.env(), cwd=self.root,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True)

    def broker(self) -> EmbeddedBroker:
        return EmbeddedBroker(self.home / "topics", session_timeout=1.0)

    def records(self, topic: str) -> list[tuple[int, int, bytes | None, Any]]:
        """(partition, offset, key, JSON value) of every record, partition by partition."""
        broker = self.broker()
        try:
            info = broker.describe_topic(topic)
            consumer = broker.consumer(None)
            consumer.assign([TopicPartition(topic, p) for p in range(info.partitions)])
            rows = drain(consumer, sum(info.end_offsets.values()) - sum(info.start_offsets.values()), timeout=10)
            consumer.close()
        finally:
            broker.close()
        return [(r[1], r[2], r[3], json.loads(r[4]) if r[4] is not None else None) for r in rows]
