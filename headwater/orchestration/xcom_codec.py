"""XCom values on the wire: small JSON inline, everything else as a file reference.

An XComValue (see :mod:`headwater.executor.base`) is ``{"json": v}`` for a value
that survives a JSON round trip unchanged and fits in the inline limit, else
``{"ref": path, "format": "json" | "pickle", "size": bytes}`` for a file written
under the run's artifact folder. Values JSON would change (tuples, non-string
keys, datetimes, data frames) are pickled so the next task gets them back as they
were.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from collections.abc import Mapping
from typing import Any

from headwater.errors import TaskFailNoRetryError

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def _json_text(value: Any) -> str | None:
    """The JSON text of ``value`` if decoding it gives ``value`` back exactly, else None."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return text if json.loads(text) == value else None


def _write_atomically(path: str, data: bytes) -> None:
    # A reader must never see a half-written result: write aside, then rename.
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".xcom.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def encode_xcom(value: Any, *, task_id: str, key: str, artifact_dir: str, inline_limit: int) -> dict[str, Any]:
    """Turn one result into an XComValue dict, writing a file when it is big or not JSON."""
    text = _json_text(value)
    if text is not None and len(text.encode()) <= inline_limit:
        return {"json": value}
    if not artifact_dir:
        raise TaskFailNoRetryError(
            f"result {key!r} of task {task_id!r} is too big or not JSON, and the workload has no artifact_dir"
        )
    base = os.path.join(artifact_dir, _UNSAFE.sub("_", task_id), _UNSAFE.sub("_", key) or "_")
    if text is not None:
        data = text.encode()
        path, fmt = base + ".json", "json"
    else:
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise TaskFailNoRetryError(
                f"result {key!r} of task {task_id!r} ({type(value).__name__}) is neither JSON nor picklable: {exc}"
            ) from exc
        path, fmt = base + ".pickle", "pickle"
    _write_atomically(path, data)
    return {"ref": os.path.abspath(path), "format": fmt, "size": len(data)}


def decode_xcom(value: Mapping[str, Any]) -> Any:
    """Turn an XComValue dict back into the value (reading the file of a reference)."""
    if "json" in value:
        return value["json"]
    if "ref" in value:
        if value.get("format") == "pickle":
            with open(value["ref"], "rb") as fh:
                return pickle.load(fh)
        with open(value["ref"], encoding="utf-8") as fh:
            return json.load(fh)
    raise ValueError(f"not an XCom value: {dict(value)!r}")
