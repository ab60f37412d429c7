"""A writer process for test_concurrency: ``python concurrent_writer.py URL WRITER UNITS FOLDER``.

Waits for the ``go`` file in FOLDER (so every writer starts at once), then commits
UNITS units of work to the store, each updating the writer's task instance and
adding a try and a result; every tenth unit also creates a run.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

from headwater.orchestration.states import TaskState
from headwater.store.base import DagRunRecord, TaskInstanceRecord, TryRecord, UnitOfWork, XComRecord
from headwater.store.sql import open_store

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def main(url: str, writer: int, units: int, folder: Path) -> None:
    store = open_store(url)
    (folder / f"ready-{writer}").touch()
    deadline = time.monotonic() + 60
    while not (folder / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go signal within 60 s")
        time.sleep(0.002)
    task_id = f"t{writer}"
    for i in range(1, units + 1):
        ti = store.get_task_instance("d", "shared", task_id)
        assert ti is not None
        ti.state = TaskState.RUNNING
        ti.try_number = i
        work = UnitOfWork(
            task_instances=[ti],
            tries=[TryRecord("d", "shared", task_id, i, TaskState.FAILED, reason=f"unit {i}")],
            xcoms=[XComRecord("d", "shared", task_id, f"k{i}", {"kind": "json", "value": i})],
        )
        store.commit(work)
        if i % 10 == 0:
            when = T0 + dt.timedelta(days=1 + writer * 1000 + i)
            run = DagRunRecord("d", f"w{writer}-{i}", when, when, when, "manual")
            store.create_run(run, [TaskInstanceRecord("d", run.run_id, "only")])
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
