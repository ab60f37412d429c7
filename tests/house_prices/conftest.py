"""The house-price scenario on its 3,000-row sample: one home trained once per session by the real CLI.

``examples/`` goes on ``sys.path`` so the tests import the scenario's modules as the DAG and
the stream app do (``house_prices.features``, ``house_prices.stream_app``...).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from house_prices import scenario  # noqa: E402
from house_prices.lake import DATA  # noqa: E402

SAMPLE = DATA / "sample.csv"


@dataclass
class Trained:
    """A home where ``dags test house_prices`` ran once on ``source``; ``conf`` is what it was given."""

    home: scenario.Home
    conf: dict[str, Any]
    first_run: Any  # the CompletedProcess of the first dags test

    def dags_test(self, **extra: Any) -> Any:
        return self.home.cli("dags", "test", "house_prices", "--conf", json.dumps({**self.conf, **extra}),
                             check=False)

    @property
    def folders(self) -> dict[str, Path]:
        return self.home.lake(self.conf)


def train_home(path: Path, source: Path = SAMPLE) -> Trained:
    home = scenario.Home(path)
    home.cli("db", "init")
    conf = {"source": str(source)}
    first = home.cli("dags", "test", "house_prices", "--conf", json.dumps(conf), check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    return Trained(home, conf, first)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """The sample trained once for the session (the DAG through the real CLI)."""
    yield train_home(tmp_path_factory.mktemp("house_prices") / "home")
