"""Dead letters: records an app could not process, written to ``<app>.dlq`` as they arrived.

A dead-letter record has the **original** key, value, timestamp and headers of the input
record, followed by headers that say what went wrong and where it came from:

==============================  ===============================================
``headwater.error.type``        the exception class, e.g. ``msgspec.DecodeError``
``headwater.error.message``     its message (at most 2,000 bytes)
``headwater.error.traceback``   the last frames of the traceback (at most 4,000 bytes)
``headwater.error.step``        the step's name, e.g. ``map:score``, ``decode:houses``
``headwater.source.topic``      topic of the input record
``headwater.source.partition``  its partition (decimal text)
``headwater.source.offset``     its offset (decimal text)
``headwater.app``               the app's name
==============================  ===============================================

:meth:`DeadLetterRecord.parse` reads such a record back (tests, ``topics tail``, replays).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from headwater.stream.broker import Headers
from headwater.stream.chunk import Context, Output

ERROR_TYPE = "headwater.error.type"
ERROR_MESSAGE = "headwater.error.message"
ERROR_TRACEBACK = "headwater.error.traceback"
ERROR_STEP = "headwater.error.step"
SOURCE_TOPIC = "headwater.source.topic"
SOURCE_PARTITION = "headwater.source.partition"
SOURCE_OFFSET = "headwater.source.offset"
APP = "headwater.app"
OURS = frozenset({ERROR_TYPE, ERROR_MESSAGE, ERROR_TRACEBACK, ERROR_STEP, SOURCE_TOPIC, SOURCE_PARTITION,
                  SOURCE_OFFSET, APP})

_MESSAGE_LIMIT = 2000
_TRACEBACK_LIMIT = 4000


def dlq_topic(app_name: str) -> str:
    """The dead-letter topic of an app."""
    return f"{app_name}.dlq"


def error_type(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def dead_letter_output(ctx: Context, app_name: str) -> Output:
    """The dead letters of one micro-batch, as records ready to produce."""
    table = ctx.table
    out = Output()
    app = app_name.encode()
    for dead in ctx.dead:
        s = dead.src
        exc = dead.error
        tb = "".join(traceback.format_exception(exc, limit=-5)) if exc.__traceback__ is not None else ""
        ours: Headers = (
            (ERROR_TYPE, error_type(exc).encode()),
            (ERROR_MESSAGE, _clip(str(exc), _MESSAGE_LIMIT)),
            (ERROR_TRACEBACK, _clip(tb, _TRACEBACK_LIMIT, tail=True)),
            (ERROR_STEP, dead.step.encode()),
            (SOURCE_TOPIC, table.topics[s].encode()),
            (SOURCE_PARTITION, str(table.partitions[s]).encode()),
            (SOURCE_OFFSET, str(table.offsets[s]).encode()),
            (APP, app),
        )
        out.values.append(table.values[s])
        out.keys.append(table.keys[s])
        out.timestamps.append(table.timestamps[s])
        out.headers.append(tuple(table.headers[s]) + ours)
    return out


def _clip(text: str, limit: int, *, tail: bool = False) -> bytes:
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data
    return data[-limit:] if tail else data[:limit]


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A dead-letter record read back: the original record and why it was dead-lettered."""

    key: bytes | None
    value: bytes | None
    headers: Headers  # the original headers, without ours
    timestamp: int
    error_type: str
    error_message: str
    step: str
    topic: str
    partition: int
    offset: int
    app: str
    traceback: str = ""

    @classmethod
    def parse(cls, key: bytes | None, value: bytes | None, headers: Headers, timestamp: int) -> DeadLetterRecord:
        ours = {k: v.decode("utf-8", "replace") for k, v in headers if k in OURS}
        return cls(
            key=key,
            value=value,
            headers=tuple((k, v) for k, v in headers if k not in OURS),
            timestamp=timestamp,
            error_type=ours.get(ERROR_TYPE, ""),
            error_message=ours.get(ERROR_MESSAGE, ""),
            step=ours.get(ERROR_STEP, ""),
            topic=ours.get(SOURCE_TOPIC, ""),
            partition=int(ours.get(SOURCE_PARTITION, "-1")),
            offset=int(ours.get(SOURCE_OFFSET, "-1")),
            app=ours.get(APP, ""),
            traceback=ours.get(ERROR_TRACEBACK, ""),
        )
