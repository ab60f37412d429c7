"""A stand-in scheduler for the parent-death test, run as a script.

It starts a LocalExecutor with 2 workers, has one run a task that starts a
``sleep`` child, prints the pids as one JSON line, then waits to be SIGKILLed.

usage: python orphan_scheduler.py RUNNER IMPORT_ROOT FOLDER SLEEP_ARG
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from headwater.executor.base import RunInfo, TaskKey, Workload
from headwater.executor.local import LocalExecutor


def main() -> None:
    runner, import_root, folder, sleep_arg = sys.argv[1:]
    pid_file = Path(folder) / "child.pid"
    executor = LocalExecutor(parallelism=2, runner=runner, env={"PYTHONPATH": import_root})
    executor.start()
    when = "2024-01-01T00:00:00+00:00"
    executor.submit(
        Workload(
            key=TaskKey("dag", "manual__1", "orphan", 1),
            fileloc="unused.py",
            run=RunInfo("manual__1", when, when, when),
            log_path=str(Path(folder) / "orphan.log"),
            artifact_dir=folder,
            params={"action": "spawn_sleep", "sleep_arg": sleep_arg, "pid_file": str(pid_file)},
        )
    )
    running = executor.events(10.0)
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    report = {
        "task_worker": running[0].pid if running else None,
        "workers": executor.worker_pids(),
        "child": int(pid_file.read_text()),
    }
    print(json.dumps(report), flush=True)
    time.sleep(60)


if __name__ == "__main__":
    main()
