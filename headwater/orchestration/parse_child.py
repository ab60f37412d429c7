"""Child process of DAG discovery: import DAG files, report specs or errors as JSON lines.

Run as ``python -m headwater.orchestration.parse_child FILE...`` with the result pipe's
file descriptor in ``HEADWATER_PARSE_FD``. User output goes to stdout/stderr, never to
the result pipe. The child writes, one JSON object a line:

1. ``{"event": "ready"}`` once it has started (the parent's timeout for a file
   starts with the file, not with the interpreter);
2. for each file ``{"event": "start", "path": ...}``, then
   ``{"event": "result", "path", "specs", "errors", "duration"}``.

A file that ends the process (``os._exit``) gets its result written first, with the
line that called it; the parent then starts a new child for the remaining files.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import IO, Any, NoReturn

_SYSTEM_EXIT = "SystemExit"


def _error(message: str, lineno: int | None, kind: str) -> dict[str, Any]:
    return {"message": message[:2000], "lineno": lineno, "kind": kind}


def _strip_location(message: str, path: str, lineno: int | None) -> str:
    """The error without the ``path:line:`` prefix: the store keeps path and line apart."""
    for prefix in (f"{path}:{lineno}: ", f"{path}: "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def parse_one(path: str) -> dict[str, Any]:
    """Import one file and describe its DAGs, or the error that stopped it.

    Specs carry no source hash: the store takes the file's, which the parent computes.
    """
    from headwater.orchestration.runtime import import_dag_file

    result = import_dag_file(path)
    errors: list[dict[str, Any]] = []
    if result.error is not None:
        message = _strip_location(result.error, result.path, result.lineno)
        kind = result.kind or "import"
        if message.startswith(_SYSTEM_EXIT):
            # sys.exit() at import: say so plainly instead of "SystemExit: 1".
            code = message[len(_SYSTEM_EXIT) :].lstrip(": ").strip()
            message = f"the file called sys.exit({code}) while being imported; DAG files must not exit"
            kind = "exit"
        errors.append(_error(message, result.lineno, kind))
    return {
        "event": "result",
        "path": result.path,
        "specs": [spec.to_json() for spec in result.specs],
        "errors": errors,
        "duration": result.duration,
        "lines": {dag.dag_id: dag.lineno for dag in result.dags if dag.lineno},
    }


def _caller_line(path: str) -> int | None:
    """The deepest line of ``path`` on the current stack (where ``os._exit`` was called)."""
    frame = sys._getframe(1)
    while frame is not None:
        if os.path.abspath(frame.f_code.co_filename) == path:
            return frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _guard_os_exit(out: IO[bytes], current: list[str]) -> Callable[[int], NoReturn]:
    """Make ``os._exit`` in a DAG file report the file before the process ends."""
    real_exit = os._exit

    def exit_from_dag_file(status: int) -> NoReturn:
        if current:
            path = current[-1]
            message = f"the file called os._exit({status}) while being imported; DAG files must not exit"
            _write(out, {"event": "result", "path": path, "specs": [], "duration": 0.0,
                         "errors": [_error(message, _caller_line(path), "exit")]})
        real_exit(status)

    os._exit = exit_from_dag_file
    return real_exit


def _write(out: IO[bytes], payload: dict[str, Any]) -> None:
    out.write(json.dumps(payload).encode() + b"\n")
    out.flush()


def main(argv: list[str]) -> NoReturn:
    """Parse each file in ``argv`` and exit without waiting for threads DAG files started."""
    fd = int(os.environ["HEADWATER_PARSE_FD"])
    out = os.fdopen(fd, "wb", buffering=0)
    current: list[str] = []
    real_exit = _guard_os_exit(out, current)
    import headwater.orchestration.runtime  # noqa: F401  (before "ready": not part of any file's time)

    _write(out, {"event": "ready"})
    for arg in argv:
        path = os.path.abspath(arg)
        _write(out, {"event": "start", "path": path})
        current.append(path)
        _write(out, parse_one(path))
        current.pop()
    out.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # A DAG file may have started non-daemon threads or atexit hooks: do not wait for them.
    real_exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
