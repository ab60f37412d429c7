"""What every command needs: settings, the store, the DAG folder — built lazily, once.

Also the lookups commands share (a DAG, a task, a run from a date typed by a user),
each failing with one clear error and a "did you mean" hint.
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from headwater.errors import DagNotFoundError, TaskNotFoundError, UserError
from headwater.settings import Settings

if TYPE_CHECKING:
    from headwater.orchestration.discovery import ParseSummary
    from headwater.orchestration.spec import DagSpec
    from headwater.store.base import DagRecord, DagRunRecord, MetadataStore


def _did_you_mean(word: str, known: list[str]) -> str | None:
    close = difflib.get_close_matches(word, known, n=1)
    return f"did you mean {close[0]!r}?" if close else None


@dataclass
class Env:
    """Per-invocation state of the CLI."""

    dags_folder: Path | None = None
    debug: bool = False
    _fresh: bool = field(default=False, repr=False)  # the DAG folder was parsed in this invocation

    @cached_property
    def settings(self) -> Settings:
        """Settings from the environment, with ``--dags`` applied."""
        return Settings.from_env(dags_folder=self.dags_folder.resolve() if self.dags_folder else None)

    @cached_property
    def store(self) -> MetadataStore:
        """The metadata store, created on first use."""
        from headwater.store.sql import open_store

        self.settings.home.mkdir(parents=True, exist_ok=True)
        return open_store(self.settings.db_url, create=True)

    def refresh_dags(self, *, force: bool = False) -> ParseSummary:
        """Parse changed files of the DAG folder into the store; what was parsed (for metrics)."""
        from headwater.orchestration.discovery import refresh

        self._fresh = True
        return refresh(self.store, self.settings.dags_folder, timeout=self.settings.dag_parse_timeout, force=force)

    def dag(self, dag_id: str) -> DagRecord:
        """The DAG with this id, after parsing changed files; a clear error if unknown."""
        if not self._fresh:
            self.refresh_dags()
            self._fresh = True
        record = self.store.get_dag(dag_id)
        if record is not None and record.is_active:
            return record
        known = [d.dag_id for d in self.store.list_dags()]
        hint = _did_you_mean(dag_id, known) or "run `headwater dags list` to see the DAGs"
        errors = self.store.list_import_errors()
        if errors:
            hint += f" ({len(errors)} DAG file(s) failed to load: `headwater dags list` shows why)"
        raise DagNotFoundError(f"no DAG {dag_id!r} in {self.settings.dags_folder}", hint=hint)

    def task(self, dag_id: str, task_id: str) -> DagSpec:
        """The spec of a DAG that has this task; a clear error if it has not."""
        spec = self.dag(dag_id).spec
        if task_id not in spec.tasks:
            names = sorted(spec.tasks)
            shown = ", ".join(names[:12]) + (f" (+{len(names) - 12} more)" if len(names) > 12 else "")
            raise TaskNotFoundError(
                f"DAG {dag_id!r} has no task {task_id!r}",
                hint=_did_you_mean(task_id, names) or f"its tasks: {shown}",
            )
        return spec

    def run(self, dag_id: str, text: str) -> DagRunRecord:
        """The run a user means by ``text``: a run id, a logical date, or a day with one run.

        A date is also matched to the schedule's interval that contains it, so
        ``2021-01-01`` finds the run at ``2021-01-01 12:00`` of a DAG scheduled at noon.
        """
        from headwater.orchestration.runs import parse_date
        from headwater.orchestration.schedules import timetable_for

        record = self.dag(dag_id)
        store = self.store
        run = store.get_run(dag_id, text)
        if run is not None:
            return run
        hint = f"see its runs with `headwater runs list {dag_id}`"
        try:
            when = parse_date(text)
        except UserError as exc:
            raise UserError(f"DAG {dag_id!r} has no run {text!r}, and it is not a date", hint=hint) from exc
        run = store.find_run(dag_id, when)
        if run is not None:
            return run
        if len(text) <= 10:  # a day: the one run that day, if there is exactly one
            day = store.list_runs(dag_id, start=when, end=when + dt.timedelta(days=1, microseconds=-1), limit=3)
            if len(day) == 1:
                return day[0]
            if len(day) > 1:
                raise UserError(f"DAG {dag_id!r} has several runs on {text}",
                                hint="give the time as well (YYYY-MM-DDTHH:MM) or the run id; " + hint)
        try:
            start = timetable_for(record.spec.schedule, record.spec.start_date).interval_for(when).start
        except UserError:
            start = None
        run = store.find_run(dag_id, start) if start is not None else None
        if run is None:
            raise UserError(f"DAG {dag_id!r} has no run at {text}", hint=hint)
        return run
