"""What every command needs: settings, the store, the DAG folder — built lazily, once."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from headwater.errors import DagNotFoundError
from headwater.settings import Settings

if TYPE_CHECKING:
    from headwater.store.base import DagRecord, MetadataStore


@dataclass
class Env:
    """Per-invocation state of the CLI."""

    dags_folder: Path | None = None
    debug: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    @cached_property
    def settings(self) -> Settings:
        return Settings.from_env(dags_folder=self.dags_folder.resolve() if self.dags_folder else None)

    @cached_property
    def store(self) -> MetadataStore:
        from headwater.store.sql import open_store

        self.settings.home.mkdir(parents=True, exist_ok=True)
        return open_store(self.settings.db_url, create=True)

    def refresh_dags(self, *, force: bool = False) -> None:
        """Parse changed files of the DAG folder into the store."""
        from headwater.orchestration.discovery import refresh

        refresh(self.store, self.settings.dags_folder, timeout=self.settings.dag_parse_timeout, force=force)

    def dag(self, dag_id: str) -> DagRecord:
        """The DAG with this id, after parsing changed files; a clear error if unknown."""
        self.refresh_dags()
        record = self.store.get_dag(dag_id)
        if record is not None and record.is_active:
            return record
        known = [d.dag_id for d in self.store.list_dags()]
        close = difflib.get_close_matches(dag_id, known, n=1)
        errors = self.store.list_import_errors()
        hint = f"did you mean {close[0]!r}?" if close else "run `headwater dags list` to see the DAGs"
        if errors:
            hint += f" ({len(errors)} DAG file(s) failed to load: `headwater dags list` shows why)"
        raise DagNotFoundError(
            f"no DAG {dag_id!r} in {self.settings.dags_folder}", hint=hint
        )
