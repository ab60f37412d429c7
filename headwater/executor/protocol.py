"""Framing of the messages between a :class:`LocalExecutor` and its worker processes.

A frame is a 4-byte big-endian length followed by that many bytes: the message
kind in ASCII, a newline, then a JSON body. Kinds:

- ``hello`` (worker to executor, once): the worker is up; the body is ``{"pid": N}``.
- ``run`` (executor to worker): the body is a :class:`~headwater.executor.base.Workload`.
- ``event`` (worker to executor): the body is a :class:`~headwater.executor.base.TaskEvent`,
  first ``running``, then the terminal one.

The channel is a dedicated socket, never the worker's fd 1 or 2: user code may
write anything there.
"""

from __future__ import annotations

import socket
import struct

from headwater.errors import ExecutorError

HELLO = "hello"
RUN = "run"
EVENT = "event"

_HEADER = struct.Struct(">I")
# A frame larger than this is a bug (or a corrupt stream), not a big task result:
# large XCom values travel as files, not inline.
MAX_FRAME = 1 << 30


def encode_frame(kind: str, body: str) -> bytes:
    """Return the bytes of one frame carrying ``body`` (JSON text) of ``kind``."""
    payload = kind.encode("ascii") + b"\n" + body.encode("utf-8")
    if len(payload) > MAX_FRAME:
        raise ExecutorError(
            f"message of {len(payload)} bytes is larger than the {MAX_FRAME}-byte frame limit",
            hint="return large task results as files (XCom references), not inline values",
        )
    return _HEADER.pack(len(payload)) + payload


def _decode_payload(payload: bytes | bytearray | memoryview) -> tuple[str, str]:
    data = bytes(payload)
    kind, sep, body = data.partition(b"\n")
    if not sep:
        raise ExecutorError(f"malformed frame without a kind line: {data[:60]!r}")
    return kind.decode("ascii"), body.decode("utf-8")


class FrameReader:
    """Reassembles frames from the chunks a non-blocking reader receives."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[str, str]]:
        """Add received bytes; return the ``(kind, body)`` of every frame now complete."""
        self._buf += data
        frames: list[tuple[str, str]] = []
        pos = 0
        size = len(self._buf)
        while size - pos >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buf, pos)
            if length > MAX_FRAME:
                raise ExecutorError(f"frame length {length} exceeds the limit: the stream is corrupt")
            end = pos + _HEADER.size + length
            if end > size:
                break
            frames.append(_decode_payload(memoryview(self._buf)[pos + _HEADER.size : end]))
            pos = end
        if pos:
            del self._buf[:pos]
        return frames

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)


def send_frame(sock: socket.socket, kind: str, body: str) -> None:
    """Write one frame, blocking until all of it is sent."""
    sock.sendall(encode_frame(kind, body))


def _recv_exactly(sock: socket.socket, count: int) -> bytes | None:
    buf = bytearray(count)
    view = memoryview(buf)
    got = 0
    while got < count:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return bytes(buf)


def recv_frame(sock: socket.socket) -> tuple[str, str] | None:
    """Block until one whole frame arrives; ``None`` when the peer closed the channel."""
    header = _recv_exactly(sock, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ExecutorError(f"frame length {length} exceeds the limit: the stream is corrupt")
    payload = _recv_exactly(sock, length)
    if payload is None:
        return None
    return _decode_payload(payload)
