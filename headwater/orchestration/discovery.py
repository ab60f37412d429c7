"""DAG discovery: parse every ``*.py`` in the DAG folder in a subprocess, with a timeout.

User code never runs in the scheduler's process. A child process imports the files
one by one and reports each file's DAG specs (or its error) on a dedicated pipe; the
parent enforces the per-file timeout by killing the child and starting a new one for
the remaining files. Unchanged files (same mtime and size) are not parsed again.

A broken file becomes an import error in the store, with file, line and kind
(``syntax``, ``import``, ``cycle``, ``duplicate``, ``definition``, ``exit`` for
``sys.exit``/``os._exit`` at import, ``timeout``, ``crash`` when the child died),
and never stops other files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from headwater.errors import InfrastructureError
from headwater.orchestration.spec import DagSpec
from headwater.store.base import DagFileRecord, ImportErrorRecord, MetadataStore


@dataclass
class FileResult:
    """One file's parse: the specs it defines, or what went wrong."""

    path: str
    specs: list[DagSpec] = field(default_factory=list)
    errors: list[ImportErrorRecord] = field(default_factory=list)
    duration: float = 0.0
    lines: dict[str, int] = field(default_factory=dict)  # dag_id -> line that created it


@dataclass
class ParseSummary:
    """What a refresh of the DAG folder did."""

    parsed: list[FileResult] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[ImportErrorRecord]:
        return [e for r in self.parsed for e in r.errors]


def dag_files(folder: Path) -> list[Path]:
    """Python files in the DAG folder, skipping hidden, private and cache paths."""
    if not folder.is_dir():
        return []
    out = []
    for path in folder.rglob("*.py"):
        rel = path.relative_to(folder).parts
        if any(part.startswith((".", "_")) for part in rel):
            continue
        out.append(path.resolve())
    return sorted(out)


def file_hash(path: Path) -> str:
    """Content hash of a DAG file: a new hash makes a new DAG version."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def refresh(
    store: MetadataStore, folder: Path, *, timeout: float = 30.0, force: bool = False
) -> ParseSummary:
    """Bring the store's DAGs in line with the DAG folder; parse only changed files.

    Files that lost a dag_id to another file (a "duplicate" error) are parsed again,
    last, whenever another file changed or went away: the id may be theirs now.
    """
    summary = ParseSummary()
    known = store.get_dag_files()
    files = dag_files(folder)
    present = {str(p) for p in files}
    todo: list[Path] = []
    for path in files:
        st = path.stat()
        rec = known.get(str(path))
        if force or rec is None or rec.mtime != st.st_mtime or rec.size != st.st_size:
            todo.append(path)
        else:
            summary.unchanged += 1
    folder_prefix = str(folder.resolve()) + os.sep
    for old in known:
        if old.startswith(folder_prefix) and old not in present:
            store.remove_dag_file(old)
            summary.removed.append(old)
    if not todo and not summary.removed:
        return summary
    losers = sorted({e.path for e in store.list_import_errors() if e.kind == "duplicate"} & present)
    again = [Path(p) for p in losers if Path(p) not in todo]
    summary.unchanged -= len(again)
    todo.extend(again)
    owners = {d.dag_id: d.fileloc for d in store.list_dags()}
    now = dt.datetime.now(dt.UTC)
    for result in parse_files(todo, timeout=timeout):
        _reject_duplicates(result, owners)
        path = Path(result.path)
        try:
            st = path.stat()
            source_hash = file_hash(path)
        except FileNotFoundError:  # deleted while we parsed it
            store.remove_dag_file(result.path)
            summary.removed.append(result.path)
            continue
        record = DagFileRecord(
            path=result.path,
            mtime=st.st_mtime,
            size=st.st_size,
            source_hash=source_hash,
            dag_ids=[s.dag_id for s in result.specs],
            last_parsed_at=now,
            parse_duration=result.duration,
        )
        for err in result.errors:
            err.created_at = now
        store.record_parse(record, result.specs, result.errors)
        if result.specs or not result.errors:  # as the store: a failed parse keeps the file's DAGs
            for dag_id in [d for d, owner in owners.items() if owner == result.path]:
                del owners[dag_id]
        for spec in result.specs:
            owners[spec.dag_id] = result.path
        summary.parsed.append(result)
    return summary


def _reject_duplicates(result: FileResult, owners: dict[str, str]) -> None:
    """A dag_id already defined by another file stays with that file."""
    keep: list[DagSpec] = []
    for spec in result.specs:
        owner = owners.get(spec.dag_id)
        if owner is not None and owner != result.path and Path(owner).exists():
            result.errors.append(
                ImportErrorRecord(
                    path=result.path,
                    message=f"dag_id {spec.dag_id!r} is already defined in {owner}",
                    lineno=result.lines.get(spec.dag_id),
                    kind="duplicate",
                )
            )
        else:
            keep.append(spec)
    result.specs = keep


def parse_files(paths: list[Path], *, timeout: float) -> list[FileResult]:
    """Parse files in child processes, in order; a file that hangs or kills its child
    gets an error and the next child goes on with the files after it."""
    results: list[FileResult] = []
    pending = [str(p) for p in paths]
    while pending:
        done = _parse_batch(pending, timeout)
        results.extend(done)
        pending = pending[len(done) :]
    return results


# The child's own start (interpreter, headwater imports) is not a DAG file's fault.
_START_TIMEOUT = 60.0


def _parse_batch(paths: list[str], timeout: float) -> list[FileResult]:
    """Parse files in one child until it finishes, dies or overruns ``timeout`` on a file.

    Returns results for a prefix of ``paths`` (at least one file).
    """
    read_fd, write_fd = os.pipe()
    env = dict(os.environ, HEADWATER_PARSE_FD=str(write_fd))
    with tempfile.TemporaryFile() as errlog:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "headwater.orchestration.parse_child", *paths],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errlog,
                pass_fds=(write_fd,),
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
        try:
            return _read_results(proc, read_fd, paths, timeout, errlog)
        finally:
            _kill(proc)


def _read_results(
    proc: subprocess.Popen[bytes], read_fd: int, paths: list[str], timeout: float, errlog: IO[bytes]
) -> list[FileResult]:
    import selectors

    out: list[FileResult] = []
    current: str | None = None  # the file the child is importing now
    with os.fdopen(read_fd, "rb") as reader, selectors.DefaultSelector() as sel:
        sel.register(reader, selectors.EVENT_READ)
        buf = b""
        deadline = time.monotonic() + _START_TIMEOUT
        while len(out) < len(paths):
            left = deadline - time.monotonic()
            chunk = os.read(reader.fileno(), 65536) if left > 0 and sel.select(left) else None
            if chunk is None:  # deadline passed
                if current is None:
                    raise InfrastructureError(
                        f"the DAG parse process did not start within {_START_TIMEOUT:g}s",
                        hint="check that `python -m headwater.orchestration.parse_child` runs here",
                    )
                out.append(_timeout_result(current, timeout))
                return out
            if not chunk:  # the child is gone
                if current is None:
                    if out:  # died between files: the next child takes the rest
                        return out
                    raise InfrastructureError(
                        f"the DAG parse process exited before parsing any file: {_tail(proc, errlog)}",
                        hint="run with --debug, or try `python -m headwater.orchestration.parse_child FILE`",
                    )
                message = f"the parse process died while importing the file ({_tail(proc, errlog)})"
                out.append(FileResult(current, errors=[ImportErrorRecord(current, message, kind="crash")]))
                return out
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                msg = json.loads(line)
                event = msg.get("event")
                if event == "start":
                    current = msg["path"]
                    deadline = time.monotonic() + timeout
                elif event == "result":
                    out.append(_decode(msg))
                    current = None
                    deadline = time.monotonic() + timeout
                else:  # "ready"
                    deadline = time.monotonic() + timeout
    return out


def _tail(proc: subprocess.Popen[bytes], errlog: IO[bytes]) -> str:
    """Exit code and the last line the child wrote to stderr."""
    try:
        code = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        code = None
    errlog.seek(0)
    lines = errlog.read().decode(errors="replace").strip().splitlines()
    text = f"exit code {code}"
    return f"{text}: {lines[-1].strip()}" if lines else text


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """End the child and anything a DAG file started in its session."""
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _timeout_result(path: str, timeout: float) -> FileResult:
    return FileResult(
        path,
        errors=[
            ImportErrorRecord(
                path,
                f"importing the file took longer than {timeout:g}s and was stopped",
                kind="timeout",
            )
        ],
        duration=timeout,
    )


def _decode(raw: dict[str, Any]) -> FileResult:
    return FileResult(
        path=raw["path"],
        specs=[DagSpec.from_json(s) for s in raw["specs"]],
        errors=[ImportErrorRecord(raw["path"], e["message"], e.get("lineno"), e.get("kind", "import"))
                for e in raw["errors"]],
        duration=raw["duration"],
        lines={k: int(v) for k, v in raw.get("lines", {}).items()},
    )
