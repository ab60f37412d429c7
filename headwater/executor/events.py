"""The event file: a try's terminal event, kept next to its log.

Whoever ends a try (the worker, or the executor when the worker died or was
killed) writes the terminal :class:`TaskEvent` to ``<log_path>.event.json``
before reporting it. A scheduler that was down while the try finished reads the
file to adopt the result instead of running the try again.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading

from headwater.executor.base import TaskEvent

EVENT_SUFFIX = ".event.json"


def event_path(log_path: str) -> str:
    """Where the terminal event of the try logging to ``log_path`` is kept."""
    return log_path + EVENT_SUFFIX


_counter = itertools.count()


def write_event_file(path: str, event: TaskEvent) -> None:
    """Write ``event`` to ``path`` atomically: readers see the old file or the whole new one.

    Steps: write a temporary file in the same folder, then rename it over
    ``path``. The rename is atomic on POSIX file systems, so a crashed process
    leaves either no file or a complete one.

    No fsync, on purpose: the file only has to outlive a killed scheduler, and the
    page cache does. After a power loss a missing or torn file reads as ``None``,
    which makes the scheduler retry the try (safe: tasks are idempotent). The fsync
    cost 4-5 ms per try on this disk, half of the scheduler-to-worker round trip.
    """
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    # One temporary file per call, not per process: two threads of one process may report the
    # same try (a kill and the cancelled future's callback in the Dask executor), and with a
    # shared name one's O_TRUNC could empty the file the other had just renamed into place.
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.{next(_counter)}.tmp"
    data = event.to_json().encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_event_file(log_path: str) -> TaskEvent | None:
    """The terminal event recorded for the try logging to ``log_path``, or ``None``.

    ``None`` means no try reported an end there: the file is missing, or it is not
    a readable event (which the atomic write makes impossible short of outside
    tampering).
    """
    try:
        with open(event_path(log_path), encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    try:
        return TaskEvent.from_json(text)
    except (ValueError, TypeError, KeyError):
        return None
