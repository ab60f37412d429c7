"""``headwater stream run``: load a stream app from ``module:attribute`` and run it, once or as N processes.

One instance runs in this process. ``--instances N`` starts N child processes of
``headwater stream run module:app`` (same group, so they share the partitions) and
supervises them without importing the app itself:

1. Each child runs in its own process group, so a Ctrl-C on the terminal reaches only the
   supervisor, which then sends every child one SIGTERM (a second signal to the children
   would not be graceful). On Linux a child also gets SIGTERM if the supervisor dies.
2. SIGTERM/SIGINT to the supervisor: forward SIGTERM, wait for every child to drain its
   batch, flush, commit and exit; after ``stop_timeout`` seconds (or a second signal) the
   rest are killed.
3. A child that exits on its own is reported with its exit code or signal; with
   ``restart`` one that failed is started again after a back-off (1 s, doubling to 30 s).

Exit code: 0 when every instance stopped cleanly, 1 when one failed (and was not restarted)
or had to be killed.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import TYPE_CHECKING

from headwater.cli.output import say
from headwater.errors import UserError

if TYPE_CHECKING:
    from headwater.settings import Settings
    from headwater.stream.app import StreamApp

INSTANCE_VARIABLE = "HEADWATER_STREAM_INSTANCE"
INSTANCES_VARIABLE = "HEADWATER_STREAM_INSTANCES"
_TARGET_HINT = "write module:attribute, e.g. `headwater stream run scorer:app` (or path/to/scorer.py:app)"


# -- one instance, in this process -----------------------------------------------------


def _import(module_name: str) -> ModuleType:
    if module_name.endswith(".py") or os.sep in module_name:
        path = Path(module_name).resolve()
        if not path.is_file():
            raise UserError(f"no file {path} to load a stream app from", hint=_TARGET_HINT)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise UserError(f"cannot load {path} as a Python module", hint=_TARGET_HINT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        sys.path.insert(0, str(path.parent))  # its sibling modules import as they would under `python file.py`
        spec.loader.exec_module(module)
        return module
    cwd = os.getcwd()
    if cwd not in sys.path:  # as `python -m` does: modules of the current folder import
        sys.path.insert(0, cwd)
    return importlib.import_module(module_name)


def load_app(target: str) -> StreamApp:
    """The :class:`StreamApp` that ``module:attribute`` names: the object itself, or what a factory returns."""
    from headwater.stream.app import StreamApp

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr.isidentifier():
        raise UserError(f"cannot read the stream app {target!r}", hint=_TARGET_HINT)
    try:
        module = _import(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.split(".")[0] == exc.name.split(".")[0]:
            raise UserError(
                f"no module named {module_name!r} (looked in {os.getcwd()} and PYTHONPATH)",
                hint="run the command from the folder that holds it, or add that folder to PYTHONPATH",
            ) from exc
        raise UserError(f"importing {module_name} failed: {exc}", hint="install the missing package") from exc
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"importing {module_name} failed: {type(exc).__name__}: {exc}", hint="--debug shows the traceback"
        ) from exc
    obj = getattr(module, attr, None)
    if obj is None:
        apps = [n for n, v in vars(module).items() if isinstance(v, StreamApp)]
        close = difflib.get_close_matches(attr, [n for n in vars(module) if not n.startswith("_")], n=1)
        hint = f"did you mean {close[0]!r}?" if close else (
            f"stream apps in it: {', '.join(apps)}" if apps else "define app = StreamApp(...) in it"
        )
        raise UserError(f"module {module_name} has no attribute {attr!r}", hint=hint)
    if isinstance(obj, StreamApp):
        return obj
    if callable(obj):
        try:
            made = obj()
        except Exception as exc:
            raise UserError(
                f"{target}() failed: {type(exc).__name__}: {exc}", hint="--debug shows the traceback"
            ) from exc
        if isinstance(made, StreamApp):
            return made
        raise UserError(f"{target}() returned {type(made).__name__}, not a StreamApp",
                        hint="a factory must return the StreamApp to run")
    raise UserError(f"{target} is a {type(obj).__name__}, not a StreamApp or a function that returns one")


def run_one(settings: Settings, target: str, *, metrics_port: int = 0) -> None:
    """Pin math threads, load the app, run it until SIGTERM/SIGINT (then it drains and commits).

    While it runs it writes status snapshots and, with ``metrics_port``, serves ``/metrics``
    (:func:`headwater.monitoring.stream.monitored`).
    """
    from headwater.monitoring.stream import monitored
    from headwater.stream.connect import broker_label, open_broker

    try:
        from headwater.stream.threads import pin_math_threads
    except ImportError:  # pragma: no cover - the stream runtime without the helper
        pass
    else:
        pin_math_threads()  # before the app's module loads numpy & co.
    app = load_app(target)
    own = app.broker is None
    broker = open_broker(settings) if own else app.broker
    assert broker is not None
    instance = os.environ.get(INSTANCE_VARIABLE)
    who = f"stream app {app.name}" + (f" (instance {instance}/{os.environ.get(INSTANCES_VARIABLE, '?')})"
                                        if instance else "")
    topics = ", ".join(app.topology.source_topics())
    say(f"{who}: group {app.group_id}, reading {topics} on {broker_label(broker)} (pid {os.getpid()})")
    try:
        with monitored(app, settings, metrics_port=metrics_port,
                       instance=int(instance) if instance and instance.isdigit() else None) as monitor:
            if monitor.metrics_port:
                say(f"{who}: metrics on http://127.0.0.1:{monitor.metrics_port}/metrics")
            app.run(broker, monitor=monitor)
    finally:
        if own:
            broker.close()
    m = app.metrics
    say(f"{who} stopped: {m.records_in:,} records in, {m.records_out:,} out, "
        f"{m.records_dead_lettered:,} dead-lettered, {m.batches:,} batches")


# -- N instances, as child processes ----------------------------------------------------


def describe_exit(code: int) -> str:
    """``exited with code 3`` or ``killed by SIGKILL``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the kernel sends this child SIGTERM if the supervisor dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Instance:
    number: int
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    restart_at: float | None = None
    failed: bool = False


class Supervisor:
    """Runs ``count`` instances of ``command`` and keeps them as the module docstring says."""

    def __init__(
        self,
        command: list[str],
        count: int,
        *,
        restart: bool = False,
        stop_timeout: float = 60.0,
        env: dict[str, str] | None = None,
        report: Callable[[str], None] = say,
    ) -> None:
        self.command = command
        self.instances = [Instance(i) for i in range(1, count + 1)]
        self.restart = restart
        self.stop_timeout = stop_timeout
        self.env = dict(os.environ if env is None else env)
        self.report = report
        self._signals = 0

    def _start(self, inst: Instance) -> None:
        env = dict(self.env, **{INSTANCE_VARIABLE: str(inst.number), INSTANCES_VARIABLE: str(len(self.instances))})
        inst.proc = subprocess.Popen(self.command, env=env, process_group=0, preexec_fn=_child_setup)
        inst.restart_at = None
        self.report(f"instance {inst.number} started (pid {inst.proc.pid})")

    def _live(self) -> list[Instance]:
        return [i for i in self.instances if i.proc is not None]

    def _signal(self, sig: signal.Signals) -> None:
        for inst in self._live():
            assert inst.proc is not None
            with contextlib.suppress(ProcessLookupError):
                inst.proc.send_signal(sig)

    @contextlib.contextmanager
    def _handle_signals(self) -> Iterator[None]:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._signals += 1

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _reap(self, inst: Instance, stopping: bool) -> None:
        assert inst.proc is not None
        code = inst.proc.returncode
        pid = inst.proc.pid
        inst.proc = None
        if stopping:
            inst.failed = inst.failed or code != 0
            self.report(f"instance {inst.number} (pid {pid}) stopped" if code == 0
                        else f"instance {inst.number} (pid {pid}) {describe_exit(code)} while stopping")
            return
        if code == 0:
            self.report(f"instance {inst.number} (pid {pid}) finished")
            return
        if self.restart:
            delay = min(30.0, 2.0 ** min(inst.restarts, 5))
            inst.restarts += 1
            inst.restart_at = time.monotonic() + delay
            self.report(f"instance {inst.number} (pid {pid}) {describe_exit(code)}; restarting it in {delay:.0f} s")
        else:
            inst.failed = True
            others = len(self._live())
            self.report(f"instance {inst.number} (pid {pid}) {describe_exit(code)}; "
                        f"{others} instance(s) left take over its partitions")

    def run(self) -> int:
        """Start the instances, supervise them until they are all gone; the exit code."""
        deadline: float | None = None
        with self._handle_signals():
            for inst in self.instances:
                self._start(inst)
            while True:
                stopping = self._signals > 0
                if stopping and deadline is None:
                    self.report(f"stopping {len(self._live())} instance(s): each finishes its batch and commits")
                    self._signal(signal.SIGTERM)
                    deadline = time.monotonic() + self.stop_timeout
                if deadline is not None and (self._signals > 1 or time.monotonic() > deadline) and self._live():
                    self.report(f"killing {len(self._live())} instance(s) that did not stop in time")
                    self._signal(signal.SIGKILL)
                    for inst in self._live():
                        inst.failed = True
                for inst in self.instances:
                    if inst.proc is not None and inst.proc.poll() is not None:
                        self._reap(inst, stopping)
                    elif (inst.proc is None and inst.restart_at is not None and not stopping
                          and time.monotonic() >= inst.restart_at):
                        self._start(inst)
                pending = any(i.restart_at is not None for i in self.instances) and not stopping
                if not self._live() and not pending:
                    break
                time.sleep(0.05)
        failed = [i.number for i in self.instances if i.failed]
        if failed:
            self.report(f"{len(failed)} instance(s) failed: {', '.join(map(str, failed))}")
        return 1 if failed else 0


def child_command(target: str, *, debug: bool = False) -> list[str]:
    """The command line of one instance."""
    return [sys.executable, "-m", "headwater", *(["--debug"] if debug else []), "stream", "run", target]
