"""Frames and event files: the two formats executors write."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.errors import ExecutorError
from headwater.executor.base import TaskEvent, TaskKey
from headwater.executor.events import event_path, read_event_file, write_event_file
from headwater.executor.protocol import EVENT, RUN, FrameReader, encode_frame, recv_frame, send_frame

pytestmark = pytest.mark.timeout(30)

messages = st.lists(st.tuples(st.sampled_from([RUN, EVENT]), st.text()), max_size=8)


@given(messages, st.lists(st.integers(min_value=1, max_value=64), min_size=1))
def test_frames_survive_any_chunking(frames: list[tuple[str, str]], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(kind, body) for kind, body in frames)
    reader = FrameReader()
    got: list[tuple[str, str]] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got += reader.feed(stream[pos : pos + step])
        pos += step
        i += 1

    assert got == frames
    assert reader.pending_bytes == 0


def test_recv_frame_reads_whole_frames_and_reports_end_of_stream() -> None:
    left, right = socket.socketpair()
    big = "x" * 3_000_000  # more than a socket buffer: the reader must loop
    with left, right:
        sender = threading.Thread(target=lambda: (send_frame(left, EVENT, big), send_frame(left, RUN, "{}")))
        sender.start()
        assert recv_frame(right) == (EVENT, big)
        assert recv_frame(right) == (RUN, "{}")
        sender.join()
        left.close()
        assert recv_frame(right) is None


def test_corrupt_length_is_refused() -> None:
    with pytest.raises(ExecutorError, match="corrupt"):
        FrameReader().feed(b"\xff\xff\xff\xff")


def test_event_file_round_trip(tmp_path: Path) -> None:
    log_path = str(tmp_path / "logs" / "deep" / "try=1.log")
    event = TaskEvent(TaskKey("d", "r", "t", 1), "success", xcom={"v": {"json": [1, 2]}}, skip=("x",))

    write_event_file(event_path(log_path), event)
    write_event_file(event_path(log_path), event)  # replacing works too

    assert event_path(log_path) == log_path + ".event.json"
    assert read_event_file(log_path) == event
    assert [p.name for p in (tmp_path / "logs" / "deep").iterdir()] == ["try=1.log.event.json"]


def test_missing_or_unreadable_event_file_reads_as_none(tmp_path: Path) -> None:
    log_path = str(tmp_path / "try=1.log")
    assert read_event_file(log_path) is None
    Path(event_path(log_path)).write_text('{"key": ')
    assert read_event_file(log_path) is None
