"""Streaming: topics (embedded log or Kafka) and stream apps that process micro-batches.

Stream apps need only::

    from headwater.stream import StreamApp, Json, Schema

Those names load on first use, so ``import headwater.stream`` and the broker modules do
not import Polars or msgspec.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "StreamApp": "headwater.stream.app",
    "Stream": "headwater.stream.dsl",
    "Bytes": "headwater.stream.serde",
    "Str": "headwater.stream.serde",
    "Json": "headwater.stream.serde",
    "Schema": "headwater.stream.serde",
    "pin_math_threads": "headwater.stream.threads",
    "ReferenceTable": "headwater.stream.tables",
}

__all__ = ["Bytes", "Json", "ReferenceTable", "Schema", "Str", "Stream", "StreamApp", "pin_math_threads"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'headwater.stream' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from headwater.stream.app import StreamApp
    from headwater.stream.dsl import Stream
    from headwater.stream.serde import Bytes, Json, Schema, Str
    from headwater.stream.tables import ReferenceTable
    from headwater.stream.threads import pin_math_threads
