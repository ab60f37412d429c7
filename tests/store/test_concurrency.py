"""Several processes write to one SQLite file at once (scheduler, workers, CLI)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import pytest

from headwater.orchestration.states import TaskState
from headwater.store.base import DagRunRecord, TaskInstanceRecord
from headwater.store.sql import open_store

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
WRITERS = 4
UNITS = 100


@pytest.mark.slow
def test_concurrent_writers_on_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'headwater.db'}"
    store = open_store(url, create=True)
    shared = DagRunRecord("d", "shared", T0, T0, T0, "manual")
    store.create_run(shared, [TaskInstanceRecord("d", "shared", f"t{w}") for w in range(WRITERS)])

    script = Path(__file__).with_name("concurrent_writer.py")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), url, str(w), str(UNITS), str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WRITERS)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("ready-*"))) < WRITERS and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        (tmp_path / "go").touch()
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for code, _out, err in results:
        assert code == 0, err

    for w in range(WRITERS):
        ti = store.get_task_instance("d", "shared", f"t{w}")
        assert ti is not None and (ti.state, ti.try_number) == (TaskState.RUNNING, UNITS)
        tries = store.list_tries("d", "shared", f"t{w}")
        assert [t.try_number for t in tries] == list(range(1, UNITS + 1))
        assert len(store.get_xcoms("d", "shared", [f"t{w}"])) == UNITS
    runs = store.list_runs("d", limit=None)
    assert len(runs) == 1 + WRITERS * (UNITS // 10)
    assert len(store.list_task_instances("d", task_ids=["only"])) == WRITERS * (UNITS // 10)
    store.close()
