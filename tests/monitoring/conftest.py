"""The orchestration tests' throwaway home (real SQLite file, real CLI subprocesses)."""

from __future__ import annotations

from tests.orchestration.conftest import Home, home

__all__ = ["Home", "home"]
