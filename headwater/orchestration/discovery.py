"""DAG discovery: parse every ``*.py`` in the DAG folder in a subprocess, with a timeout.

User code never runs in the scheduler's process. A child process imports the files
one by one and reports each file's DAG specs (or its error) on a dedicated pipe; the
parent enforces the per-file timeout by killing the child and starting a new one for
the remaining files. Unchanged files (same mtime and size) are not parsed again.

A broken file (syntax error, import error, cycle, duplicate dag_id, timeout) becomes
an import error in the store, with file and line, and never stops other files.
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
from typing import Any

from headwater.orchestration.spec import DagSpec
from headwater.store.base import DagFileRecord, ImportErrorRecord, MetadataStore


@dataclass
class FileResult:
    """One file's parse: the specs it defines, or what went wrong."""

    path: str
    specs: list[DagSpec] = field(default_factory=list)
    errors: list[ImportErrorRecord] = field(default_factory=list)
    duration: float = 0.0


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
    """Bring the store's DAGs in line with the DAG folder; parse only changed files."""
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
    if not todo:
        return summary
    owners = {d.dag_id: d.fileloc for d in store.list_dags()}
    now = dt.datetime.now(dt.UTC)
    for result in parse_files(todo, timeout=timeout):
        _reject_duplicates(result, owners)
        path = Path(result.path)
        st = path.stat()
        record = DagFileRecord(
            path=result.path,
            mtime=st.st_mtime,
            size=st.st_size,
            source_hash=file_hash(path),
            dag_ids=[s.dag_id for s in result.specs],
            last_parsed_at=now,
            parse_duration=result.duration,
        )
        for err in result.errors:
            err.created_at = now
        store.record_parse(record, result.specs, result.errors)
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
                    kind="duplicate",
                )
            )
        else:
            keep.append(spec)
    result.specs = keep


def parse_files(paths: list[Path], *, timeout: float) -> list[FileResult]:
    """Parse files in a child process, one at a time, killing it on a timeout."""
    results: list[FileResult] = []
    pending = [str(p) for p in paths]
    while pending:
        done = _parse_batch(pending, timeout)
        results.extend(done)
        pending = pending[len(done) :]
    return results


def _parse_batch(paths: list[str], timeout: float) -> list[FileResult]:
    read_fd, write_fd = os.pipe()
    env = dict(os.environ, HEADWATER_PARSE_FD=str(write_fd))
    with tempfile.TemporaryFile() as errlog:
        proc = subprocess.Popen(
            [sys.executable, "-m", "headwater.orchestration.parse_child", *paths],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
            pass_fds=(write_fd,),
            env=env,
            start_new_session=True,
        )
        os.close(write_fd)
        out: list[FileResult] = []
        with os.fdopen(read_fd, "rb") as reader:
            import selectors

            sel = selectors.DefaultSelector()
            sel.register(reader, selectors.EVENT_READ)
            buf = b""
            deadline = time.monotonic() + timeout + 5.0  # first file also pays interpreter start
            while len(out) < len(paths):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    _kill(proc)
                    out.append(_timeout_result(paths[len(out)], timeout))
                    return out
                chunk = os.read(reader.fileno(), 65536)
                if not chunk:  # child died without reporting this file
                    proc.wait()
                    errlog.seek(0)
                    tail = errlog.read().decode(errors="replace").strip().splitlines()[-1:]
                    msg = f"the parse process died (exit code {proc.returncode}) {' '.join(tail)}".strip()
                    out.append(FileResult(paths[len(out)], errors=[ImportErrorRecord(paths[len(out)], msg)]))
                    return out
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    out.append(_decode(json.loads(line)))
                    deadline = time.monotonic() + timeout
        proc.wait()
    return out


def _kill(proc: subprocess.Popen[bytes]) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError):
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
    )
