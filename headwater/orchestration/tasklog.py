"""Sending a try's logging and printed output to its log file.

Several tries may run in one process at once (on threads of an in-process
executor), so nothing is pointed at one file globally. Instead, while any try
runs, one routing handler sits on the ``headwater.task`` logger (and on the root
logger, for the user's own loggers) and ``sys.stdout``/``sys.stderr`` are routing
streams; each writes to the log file of the try running on the current thread,
and lets other threads' output through as before.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from headwater.orchestration.baseoperator import TASK_LOGGER

LOG_FORMAT = "[%(asctime)s] {%(filename)s:%(lineno)d} %(levelname)s - %(message)s"

_local = threading.local()
_lock = threading.Lock()


def _current() -> IO[str] | None:
    return getattr(_local, "stream", None)


class _RoutingHandler(logging.Handler):
    """Writes a record to the current thread's try log; records of other threads are dropped."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        formatter = logging.Formatter(LOG_FORMAT)
        formatter.converter = time.gmtime  # log times in UTC, like everything else
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        stream = _current()
        if stream is None:
            return
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


class _RoutingStream(io.TextIOBase):
    """Stands in for ``sys.stdout``/``sys.stderr``: the try's log on task threads, else the original."""

    def __init__(self, original: Any) -> None:
        super().__init__()
        self.original = original

    def _target(self) -> Any:
        return _current() or self.original

    def write(self, text: str) -> int:
        self._target().write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(Exception):
            self._target().flush()

    def fileno(self) -> int:
        return int(self._target().fileno())

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


class _MaskingStream:
    """A try's log file with given secret values written as ``***`` (secret DAG params)."""

    def __init__(self, stream: IO[str], secrets: set[str]) -> None:
        self.stream = stream
        self.secrets = sorted(secrets, key=len, reverse=True)  # a secret holding another: masked whole

    def write(self, text: str) -> int:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def mask_in_log(secrets: set[str]) -> None:
    """From now on, write ``secrets`` as ``***`` in the current thread's try log (inside :func:`task_log`).

    Only the worker knows a secret param's value (the stored spec holds ``***``), so it
    is masked here, where the log is written; readers of the file cannot do it.
    """
    stream = _current()
    if stream is not None and secrets:
        _local.stream = _MaskingStream(stream, secrets)


class _Router:
    """Installs the routing handler and streams while at least one try is running."""

    def __init__(self) -> None:
        self.active = 0
        self.handler = _RoutingHandler()
        self.saved: dict[str, Any] = {}

    def acquire(self) -> None:
        with _lock:
            self.active += 1
            if self.active > 1:
                return
            task_logger = logging.getLogger(TASK_LOGGER)
            self.saved = {
                "stdout": sys.stdout,
                "stderr": sys.stderr,
                "propagate": task_logger.propagate,
                "level": task_logger.level,
            }
            # Task records go only to the try's log, never to the console of an
            # in-process run; the user's own loggers still reach the root logger.
            task_logger.propagate = False
            task_logger.setLevel(logging.INFO)
            task_logger.addHandler(self.handler)
            logging.getLogger().addHandler(self.handler)
            sys.stdout = _RoutingStream(sys.stdout)
            sys.stderr = _RoutingStream(sys.stderr)

    def release(self) -> None:
        with _lock:
            self.active -= 1
            if self.active > 0:
                return
            task_logger = logging.getLogger(TASK_LOGGER)
            task_logger.removeHandler(self.handler)
            logging.getLogger().removeHandler(self.handler)
            task_logger.propagate = self.saved["propagate"]
            task_logger.setLevel(self.saved["level"])
            # Restore only what we installed; someone else may have replaced it since.
            if isinstance(sys.stdout, _RoutingStream):
                sys.stdout = self.saved["stdout"]
            if isinstance(sys.stderr, _RoutingStream):
                sys.stderr = self.saved["stderr"]


_ROUTER = _Router()


@contextlib.contextmanager
def task_log(log_path: str) -> Iterator[logging.Logger]:
    """Send this thread's logging and output to ``log_path`` (appended) inside the block."""
    if log_path:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        stream: IO[str] = open(log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed below
    else:
        stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    previous = _current()
    _local.stream = stream
    _ROUTER.acquire()
    try:
        yield logging.getLogger(TASK_LOGGER)
    finally:
        _ROUTER.release()
        _local.stream = previous
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        stream.close()
