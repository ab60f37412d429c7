"""Where a quality step gets its training profile: given as is, or a registered model followed by reference.

``Stream.check("house_prices@champion")`` and ``Stream.monitor_drift("house_prices@champion",
...)`` resolve the reference through the registry on the first batch (declaring an app does
no I/O), build their checks or monitor from that version's ``profile`` and ``signature``,
and resolve it again at most every ``reload_interval`` seconds between batches, like
``Stream.predict``: when the alias moved, the new version's profile is used from then on
(a drift monitor starts a new window, since the old one was judged against another
profile). Steps of one app that follow the same reference agree batch by batch: the
first of them to look at the alias picks the version for the batch
(:attr:`headwater.stream.chunk.Context.pins`) and the others switch to it at once, whatever
their own ``reload_interval``. A new version whose profile cannot be used (a column named in the options is
gone) is logged and the step keeps the one it has; a first version that cannot be used
stops the app with the reason, as a model that cannot load does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from headwater.clock import Clock, SystemClock

log = logging.getLogger(__name__)

T = TypeVar("T")


class Fixed(Generic[T]):
    """A profile-based object built once, at declaration."""

    def __init__(self, built: T) -> None:
        self.built: T | None = built
        self.version: str | None = None

    def get(self, pins: dict[str, str] | None = None) -> T:
        assert self.built is not None
        return self.built


class Follow(Generic[T]):
    """A profile-based object rebuilt from the version a registry reference points to (module docstring)."""

    def __init__(
        self, ref: str, build: Callable[[Any], T], *, registry: Any = None, reload_interval: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self.ref = ref
        self._build = build
        self._registry = registry
        self.reload_interval = reload_interval
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self.built: T | None = None
        self.version: str | None = None
        self._checked_at = 0.0

    def _registry_or_default(self) -> Any:
        if self._registry is None:
            from headwater.ml.registry_sql import open_registry
            from headwater.settings import Settings

            self._registry = open_registry(Settings.from_env())
        return self._registry

    def get(self, pins: dict[str, str] | None = None) -> T:
        """The object for the version in use; ``pins`` as in
        :meth:`headwater.ml.scoring.ModelFollower.current`: the version another step of the batch
        chose for the same reference wins, else the one chosen here is pinned."""
        with self._lock:
            now = self._clock.monotonic()
            pinned = pins.get(self.ref) if pins is not None else None
            if pinned is not None:
                if self.built is None or self.version != pinned:
                    self._switch_to(pinned)
                    self._checked_at = now
                assert self.built is not None
                return self.built
            if self.built is None:
                mv = self._registry_or_default().resolve(self.ref)
                self.built, self.version, self._checked_at = self._build(mv), mv.ref, now
            elif now - self._checked_at >= self.reload_interval:
                self._checked_at = now
                self._maybe_switch()
            if pins is not None and self.version is not None:
                pins.setdefault(self.ref, self.version)
            return self.built

    def _switch_to(self, version_ref: str) -> None:
        try:
            mv = self._registry_or_default().resolve(version_ref)
            built = self._build(mv)
        except Exception as exc:
            if self.built is None:
                raise
            log.warning("profile of %s: could not use %s as the other steps of the batch did, keeping %s: %s",
                        self.ref, version_ref, self.version, exc)
            return
        if self.built is not None:
            log.info("profile of %s: now %s (was %s)", self.ref, mv.ref, self.version)
        self.built, self.version = built, mv.ref

    def _maybe_switch(self) -> None:
        try:
            mv = self._registry_or_default().resolve(self.ref)
            if mv.ref == self.version:
                return
            built = self._build(mv)
        except Exception as exc:  # a running app keeps checking with the profile it has
            log.warning("profile of %s: could not switch from %s: %s", self.ref, self.version, exc)
            return
        log.info("profile of %s: now %s (was %s)", self.ref, mv.ref, self.version)
        self.built, self.version = built, mv.ref
