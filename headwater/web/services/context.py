"""What every service call needs: settings and the metadata store, opened once per app."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from headwater.clock import Clock, SystemClock
from headwater.settings import Settings

if TYPE_CHECKING:
    from headwater.ml.registry_sql import SqlModelRegistry
    from headwater.store.base import MetadataStore
    from headwater.store.sql import SqlStore


@dataclass
class WebContext:
    """Settings, store and clock of one web app; services read and write through it."""

    settings: Settings
    clock: Clock = field(default_factory=SystemClock)

    @classmethod
    def around(cls, settings: Settings, store: MetadataStore, clock: Clock | None = None) -> WebContext:
        """A context over a store already open (the CLI's), so a command and the web share one code path."""
        ctx = cls(settings=settings, clock=clock or SystemClock())
        ctx.__dict__["store"] = store  # fills the cached property (the CLI's store is a SqlStore)
        return ctx

    @cached_property
    def store(self) -> SqlStore:
        """The metadata store, created on first use (schema made if missing)."""
        from headwater.store.sql import open_store

        self.settings.home.mkdir(parents=True, exist_ok=True)
        return open_store(self.settings.db_url, create=True)

    @cached_property
    def registry(self) -> SqlModelRegistry:
        """The model registry in the same database, artifacts under ``$HEADWATER_HOME/models``."""
        from headwater.ml.registry_sql import SqlModelRegistry

        return SqlModelRegistry(self.store, self.settings.home / "models", clock=self.clock)

    def close(self) -> None:
        """Release the store's connections."""
        if "store" in self.__dict__:
            self.store.close()
