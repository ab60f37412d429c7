"""Status snapshots of running stream-app instances, for the web UI and ``headwater`` commands.

Every few seconds each instance run by ``headwater stream run`` replaces its file
``$HEADWATER_HOME/stream/apps/<app>/<instance-id>.json`` (written to a temporary file in the
same folder, then renamed over the old one: a reader never sees half a file). The
instance id is ``<hostname>-<pid>``. Format 1, a JSON object::

    {
      "format": 1,
      "app": "scorer", "group_id": "scorer", "instance_id": "box-4242",
      "instance": 2,                      # number under --instances N (null when run alone)
      "pid": 4242, "hostname": "box",
      "state": "running",                 # running | stopped (clean exit) | failed (the app raised)
      "error": null,                      # "ValueError: ..." when failed
      "started": "2026-11-22T03:00:00.000000+00:00",    # UTC, ISO 8601
      "heartbeat": "2026-11-22T03:05:02.000000+00:00",  # time of this write
      "interval": 2.0,                    # seconds between writes
      "metrics_port": 9108,               # /metrics on 127.0.0.1, or null
      "sources": ["houses"], "sinks": ["priced"], "dlq_topic": "scorer.dlq",
      "counters": {"records_in": 10500, "records_out": 10400, "records_dead_lettered": 100,
                   "batches": 21, "commits": 21,
                   "in_by_topic": {"houses": 10500}, "out_by_topic": {"priced": 10400},
                   "dead_by_topic": {"houses": 100}},
      "rates": {"records_in": 512.3, "records_out": 507.1, "records_dead_lettered": 5.0},  # per second,
                                          # since the previous write
      "batch_latency": {"count": 21, "p50": 0.004, "p95": 0.011, "p99": 0.02, "max": 0.03},
                                          # seconds, over the last 1,000 batches
      "batch_size": {"mean": 500.0, "last": 500},
      "partitions": [{"topic": "houses", "partition": 0, "lag": 12}],  # assigned now
      "lag": {"total": 12, "measured_at": "2026-11-22T03:05:01.000000+00:00"},
      "models": [{"step": "predict", "model": "house_prices@champion", "version": "house_prices:3"}],
      "predictions": [{"step": "predict", "model": "house_prices:3", "count": 10400,
                       "histogram": [[10000.0, 0], [14140.0, 3], ...]}],  # values in (previous bound, bound];
                                          # a last pair [largest value seen, n] holds those above the last bound
      "recent_alerts": [{"at": "...", "kind": "check" | "drift", "check": "not_null",
                         "column": "sqft", "count": 3, "message": "..."}],          # newest last
      "recent_dead_letters": [{"at": "...", "step": "decode:houses", "topic": "houses",
                               "partition": 0, "offset": 17, "error": "DecodeError: ..."}]  # newest last
    }

:func:`read_app_statuses` reads them all: an instance whose heartbeat is older than
``stale_after`` seconds is shown as ``stopped`` (``stale`` true), and the file of an
instance whose process is gone (same host, pid not alive) is removed after it is read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headwater.settings import Settings

STATUS_FORMAT = 1
DEFAULT_STALE_AFTER = 15.0  # seconds: several missed writes at the default 2 s interval


def apps_folder(settings: Settings) -> Path:
    """``$HEADWATER_HOME/stream/apps``: one folder per app, one file per instance."""
    return settings.home / "stream" / "apps"


def instance_id(hostname: str | None = None, pid: int | None = None) -> str:
    """``<hostname>-<pid>``, with characters unsafe in a file name replaced."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", hostname or socket.gethostname()) or "host"
    return f"{host}-{pid if pid is not None else os.getpid()}"


def status_path(settings: Settings, app: str, instance: str) -> Path:
    """Where instance ``instance`` of ``app`` writes its snapshot."""
    if app in ("", ".", "..") or "/" in app or os.sep in app:
        raise ValueError(f"not a stream app name: {app!r}")
    return apps_folder(settings) / app / f"{instance}.json"


def write_status(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON, atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"), default=str)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass
class AppStatus:
    """One instance as a reader sees it: ``state`` after the staleness and liveness checks, and the file's data."""

    app: str
    instance_id: str
    pid: int | None
    hostname: str | None
    state: str  # running | stopped | failed
    stale: bool  # the heartbeat is older than stale_after (the process hangs or died without a word)
    heartbeat: dt.datetime | None
    data: dict[str, Any]
    path: Path

    @property
    def running(self) -> bool:
        return self.state == "running"


def _time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_app_statuses(
    settings: Settings,
    *,
    app: str | None = None,
    stale_after: float = DEFAULT_STALE_AFTER,
    now: dt.datetime | None = None,
    remove_dead: bool = True,
) -> list[AppStatus]:
    """Every instance snapshot (of ``app``, or of all apps), sorted by app then instance.

    An instance whose heartbeat is older than ``stale_after`` seconds, or whose process is
    gone (same host, pid not alive), is reported ``stopped`` unless its file already says
    ``stopped`` or ``failed``. With ``remove_dead`` the files of processes that are gone are
    deleted once read, so they show one last time. Files that are not valid snapshots are skipped.
    """
    root = apps_folder(settings)
    if not root.is_dir():
        return []
    now = now or dt.datetime.now(dt.UTC)
    host = socket.gethostname()
    folders = [root / app] if app is not None else sorted(p for p in root.iterdir() if p.is_dir())
    out: list[AppStatus] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict) or data.get("format") != STATUS_FORMAT:
                continue
            pid = data.get("pid") if isinstance(data.get("pid"), int) else None
            heartbeat = _time(data.get("heartbeat"))
            state = str(data.get("state") or "running")
            stale = heartbeat is None or (now - heartbeat).total_seconds() > stale_after
            gone = pid is not None and data.get("hostname") == host and not _pid_alive(pid)
            if state == "running" and (stale or gone):
                state = "stopped"
            if gone and remove_dead:
                with contextlib.suppress(OSError):
                    path.unlink()
            out.append(AppStatus(
                app=str(data.get("app") or folder.name), instance_id=path.stem, pid=pid,
                hostname=data.get("hostname"), state=state, stale=stale and data.get("state") == "running",
                heartbeat=heartbeat, data=data, path=path,
            ))
    return out
