"""Where a try's log and a run's artifacts live under ``$HEADWATER_HOME``."""

from __future__ import annotations

from pathlib import Path

from headwater.executor.base import TaskKey


def _safe(part: str) -> str:
    return part.replace("/", "_").replace("\\", "_")


def log_path(logs_folder: Path, key: TaskKey) -> Path:
    """``logs/dag_id=D/run_id=R/task_id=T/attempt=N.log`` (Airflow's layout)."""
    return (
        logs_folder
        / f"dag_id={_safe(key.dag_id)}"
        / f"run_id={_safe(key.run_id)}"
        / f"task_id={_safe(key.task_id)}"
        / f"attempt={key.try_number}.log"
    )


def artifact_dir(artifacts_folder: Path, dag_id: str, run_id: str) -> Path:
    """The folder for a run's large task results and files."""
    return artifacts_folder / _safe(dag_id) / _safe(run_id)
