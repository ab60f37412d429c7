"""Fixtures of the streaming tests.

``broker``: one of every broker implementation, so a test written once runs on each:
``memory`` (the in-process fake), ``embedded`` (the log in a fresh folder) and ``kafka``
(marked ``service``: a :class:`KafkaBroker` on the Tansu broker of ``tests/stream/tansu.py``,
shared by the session, so tests use unique topic and group names; see ``unique``).
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater.stream.broker import Broker
from headwater.stream.log import EmbeddedBroker
from headwater.stream.memory import MemoryBroker

# Session timeout of embedded consumers in tests: evictions and rebalances within a second.
TEST_SESSION_TIMEOUT = 1.0


def _kafka_broker(request: pytest.FixtureRequest) -> Any:
    """A KafkaBroker on the shared Tansu broker, or a skip saying why there is none."""
    try:
        tansu = importlib.import_module("tests.stream.tansu")
    except ImportError as exc:
        pytest.skip(f"tests/stream/tansu.py (the Tansu broker fixture) cannot be imported: {exc}")
    if not hasattr(tansu, "tansu_bootstrap") or not hasattr(tansu, "kafka_broker_factory"):
        pytest.skip("tests/stream/tansu.py has no tansu_bootstrap fixture / kafka_broker_factory yet")
    # Registered here, not imported by this conftest, so the memory and embedded runs do
    # not depend on that module (or on confluent-kafka) at all.
    plugins = request.config.pluginmanager
    if not plugins.is_registered(tansu):
        plugins.register(tansu, "headwater-tests-tansu")
    bootstrap = request.getfixturevalue("tansu_bootstrap")
    return tansu.kafka_broker_factory(bootstrap)


@pytest.fixture(params=["memory", "embedded", pytest.param("kafka", marks=pytest.mark.service)])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """Each broker implementation in turn."""
    made: Any
    if request.param == "memory":
        made = MemoryBroker()
    elif request.param == "embedded":
        made = EmbeddedBroker(tmp_path / "topics", session_timeout=TEST_SESSION_TIMEOUT)
    else:
        made = _kafka_broker(request)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("orders")`` -> ``"orders-1a2b3c4d"``: names that never clash on a shared broker."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:8]}"
