"""Child process of DAG discovery: import DAG files, report specs or errors as JSON lines.

Run as ``python -m headwater.orchestration.parse_child FILE...`` with the result pipe's
file descriptor in ``HEADWATER_PARSE_FD``. User output goes to stdout/stderr, never to
the result pipe.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any


def _lineno(exc: BaseException, path: str) -> int | None:
    if isinstance(exc, SyntaxError) and exc.lineno and (True):
        return exc.lineno
    line = getattr(exc, "lineno", None)
    if isinstance(line, int):
        return line
    found = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if os.path.abspath(frame.f_code.co_filename) == path:
            found = lineno
    if found is None and exc.__cause__ is not None:
        return _lineno(exc.__cause__, path)
    return found


def _kind(exc: BaseException) -> str:
    from headwater.errors import CycleError, DagDefinitionError

    if isinstance(exc, CycleError):
        return "cycle"
    if isinstance(exc, DagDefinitionError):
        return "definition"
    if isinstance(exc, SyntaxError) or isinstance(exc.__cause__, SyntaxError):
        return "syntax"
    return "import"


def parse_one(path: str) -> dict[str, Any]:
    """Import one file and describe its DAGs, or the error that stopped it."""
    from headwater.orchestration.discovery import file_hash
    from headwater.orchestration.runtime import load_dag_file

    started = time.perf_counter()
    specs: list[str] = []
    errors: list[dict[str, Any]] = []
    try:
        from pathlib import Path

        source_hash = file_hash(Path(path))
        seen: set[str] = set()
        for dag in load_dag_file(path):
            if dag.dag_id in seen:
                errors.append({"message": f"dag_id {dag.dag_id!r} is defined twice in this file",
                               "kind": "duplicate"})
                continue
            seen.add(dag.dag_id)
            specs.append(dag.to_spec(fileloc=path, source_hash=source_hash).to_json())
    except BaseException as exc:  # a DAG file may raise anything, SystemExit included
        cause = exc.__cause__ if exc.__cause__ is not None and "DagImportError" in type(exc).__name__ else exc
        message = f"{type(cause).__name__}: {cause}".strip()
        errors.append({"message": message[:2000], "lineno": _lineno(exc, path), "kind": _kind(exc)})
    return {"path": path, "specs": specs, "errors": errors, "duration": time.perf_counter() - started}


def main(argv: list[str]) -> int:
    fd = int(os.environ["HEADWATER_PARSE_FD"])
    with os.fdopen(fd, "wb", buffering=0) as out:
        for path in argv:
            line = json.dumps(parse_one(os.path.abspath(path))).encode() + b"\n"
            out.write(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
