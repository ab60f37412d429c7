"""Luigi-style targets: a task's output is a thing that either exists or does not.

A task declares its outputs as targets; before running it, the runtime asks each
target :meth:`Target.exists` and skips the task when all of them do. For that to
be safe a target must never exist half-written, so every write goes to a temporary
file and becomes the target in one atomic step when the ``with`` block ends
without an error (Luigi's ``atomic_file``). A crash or an exception in the middle
leaves no target behind, and the next run writes it again.

Paths are Jinja templates rendered against the task's context
(``LocalTarget("data/{{ ds }}/rows.csv")``): :meth:`Target.render` returns a
rendered copy, which is what the runtime checks and what ``run()`` should write.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from headwater.errors import TemplateError, UserError
from headwater.orchestration.templating import TemplateRenderer, needs_rendering

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

_READ_MODES = ("r", "rb")
_WRITE_MODES = ("w", "wb")
_FORMATS = (None, "text", "binary")


class Target(ABC):
    """Something a task produces: a file, an object in a bucket, a table partition.

    Subclasses implement :meth:`exists` and :meth:`open`; ``path`` is what
    identifies the target and may be a Jinja template until :meth:`render` is
    called.
    """

    path: str

    @abstractmethod
    def exists(self) -> bool:
        """True when the target has been completely written."""

    @abstractmethod
    def open(self, mode: str = "r") -> IO[Any]:
        """Open for reading (``"r"``, ``"rb"``) or for an atomic write (``"w"``, ``"wb"``).

        A write becomes visible only when the file is closed without an error;
        used as a context manager, an exception in the block discards it.
        """

    def render(self, context: Mapping[str, Any]) -> Target:
        """Return a copy whose templated path is rendered against ``context``."""
        rendered = render_path(self.path, context)
        if rendered == self.path:
            return self
        clone = copy.copy(self)
        clone._set_path(rendered)
        return clone

    def _set_path(self, path: str) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.path == self.path

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.path))


def render_path(path: str, context: Mapping[str, Any]) -> str:
    """Render a Jinja-templated path; paths without ``{{`` or ``{%`` come back unchanged.

    With a task in the context (a try's context) the path is rendered like the
    task's template fields, with the same filters and error messages; without
    one, with plain Jinja.
    """
    if not needs_rendering(path):
        return path
    task = context.get("task")
    if task is not None and hasattr(task, "template_ext"):
        return str(TemplateRenderer(task, context).render(path, f"outputs: {path}"))
    # Imported here: most targets have plain paths, and jinja2 costs import time.
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - paths, not HTML
    try:
        return env.from_string(path).render(**dict(context))
    except jinja2.TemplateError as exc:
        raise TemplateError(
            f"could not render the target path {path!r}: {exc}",
            hint="use variables of the task context, such as {{ ds }} or {{ params.name }}",
        ) from exc


def _check_mode(mode: str) -> None:
    if mode not in _READ_MODES + _WRITE_MODES:
        raise UserError(
            f"target open mode {mode!r} is not supported",
            hint=f"use one of {', '.join(_READ_MODES + _WRITE_MODES)}; appending would break atomic writes",
        )


class AtomicWriter:
    """A file being written that becomes the target only when closed without an error.

    Wraps the open temporary file; ``commit`` publishes it, ``abort`` throws it
    away. Closing it explicitly commits. Leaving a ``with`` block by an exception,
    or dropping the object without closing it, aborts.
    """

    def __init__(self, raw: IO[Any], commit: Callable[[], None], abort: Callable[[], None]) -> None:
        self._raw = raw
        self._commit = commit
        self._abort = abort
        self._done = False

    def write(self, data: Any) -> int:
        return self._raw.write(data)

    def writelines(self, lines: Any) -> None:
        self._raw.writelines(lines)

    def flush(self) -> None:
        self._raw.flush()

    @property
    def closed(self) -> bool:
        return self._done

    def close(self) -> None:
        """Publish what was written as the target."""
        if self._done:
            return
        self._done = True
        self._commit()

    def discard(self) -> None:
        """Throw away what was written; the target is left as it was."""
        if self._done:
            return
        self._done = True
        self._abort()

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def __getattr__(self, name: str) -> Any:
        # Everything else (encoding, writable, seek, ...) is the temporary file's.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._raw, name)

    def __del__(self) -> None:
        # Never publish a file nobody closed: it may be half-written.
        with contextlib.suppress(Exception):
            self.discard()


def _fsync_dir(folder: str) -> None:
    # The rename lives in the directory entry; without this a power cut can lose it.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_local_writer(path: str, mode: str) -> AtomicWriter:
    """Open a temporary file next to ``path`` that replaces ``path`` atomically on close.

    The temporary file is in the same directory so :func:`os.replace` is a rename
    on one filesystem, which POSIX makes atomic. Parent folders are created.
    """
    final = os.path.abspath(path)
    folder = os.path.dirname(final)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(final)}.", suffix=".tmp")
    raw: IO[Any] = os.fdopen(fd, "wb") if "b" in mode else os.fdopen(fd, "w", encoding="utf-8")

    def commit() -> None:
        # Step 1: data on disk, so the rename never publishes an empty file after a crash.
        try:
            raw.flush()
            os.fsync(raw.fileno())
        finally:
            raw.close()
        # Step 2: the rename is the moment the target starts to exist.
        os.replace(tmp, final)
        # Step 3: make the rename itself durable.
        _fsync_dir(folder)

    def abort() -> None:
        with contextlib.suppress(OSError):
            raw.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

    return AtomicWriter(raw, commit, abort)


class LocalTarget(Target):
    """A file on the local disk.

    ``format`` is ``None`` or ``"text"`` (UTF-8 text) or ``"binary"`` (``open("r")``
    and ``open("w")`` then read and write bytes).
    """

    def __init__(self, path: str | os.PathLike[str], format: str | None = None) -> None:
        if format not in _FORMATS:
            raise UserError(f"LocalTarget format {format!r} is not known", hint="use 'text' or 'binary'")
        self.path = os.fspath(path)
        self.format = format

    def __fspath__(self) -> str:
        return self.path

    @property
    def fs(self) -> AbstractFileSystem:
        """The fsspec local filesystem, for listing, globbing and copying."""
        import fsspec

        return fsspec.filesystem("file")

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def remove(self) -> None:
        """Delete the file; nothing happens when it does not exist."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _mode(self, mode: str) -> str:
        _check_mode(mode)
        if self.format == "binary" and "b" not in mode:
            return mode + "b"
        return mode

    def open(self, mode: str = "r") -> IO[Any]:
        mode = self._mode(mode)
        if mode in _WRITE_MODES:
            return cast(IO[Any], atomic_local_writer(self.path, mode))
        if "b" in mode:
            return open(self.path, "rb")
        return open(self.path, encoding="utf-8")

    @contextlib.contextmanager
    def temporary_path(self) -> Iterator[str]:
        """Yield a temporary path for tools that write files themselves; it becomes the target on success.

        ``with target.temporary_path() as tmp: frame.to_parquet(tmp)``
        """
        final = os.path.abspath(self.path)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            yield tmp
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.replace(tmp, final)
        _fsync_dir(os.path.dirname(final))

    def read_text(self) -> str:
        """The whole file as text."""
        return Path(self.path).read_text(encoding="utf-8")


class FsspecTarget(Target):
    """A file on any filesystem fsspec knows: ``s3://``, ``gs://``, ``memory://``, ``file://``...

    ``storage_options`` go to the filesystem (credentials, endpoint). fsspec is
    imported only when the target is first used.
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.path = url
        self.storage_options = storage_options
        self._fs: AbstractFileSystem | None = None
        self._fs_path = ""

    @property
    def url(self) -> str:
        return self.path

    def _set_path(self, path: str) -> None:
        self.path = path
        self._fs = None

    def _resolve(self) -> tuple[AbstractFileSystem, str]:
        if self._fs is None:
            from fsspec.core import url_to_fs

            self._fs, self._fs_path = url_to_fs(self.path, **self.storage_options)
        return self._fs, self._fs_path

    @property
    def fs(self) -> AbstractFileSystem:
        """The fsspec filesystem the URL points into."""
        return self._resolve()[0]

    def _is_local(self) -> bool:
        protocol = self.fs.protocol
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        return "file" in protocols or "local" in protocols

    def exists(self) -> bool:
        fs, path = self._resolve()
        return bool(fs.exists(path))

    def remove(self) -> None:
        """Delete the object; nothing happens when it does not exist."""
        fs, path = self._resolve()
        if fs.exists(path):
            fs.rm(path)

    def open(self, mode: str = "r") -> IO[Any]:
        _check_mode(mode)
        fs, path = self._resolve()
        if mode in _READ_MODES:
            if "b" in mode:
                return cast(IO[Any], fs.open(path, "rb"))
            return cast(IO[Any], fs.open(path, "r", encoding="utf-8"))
        if self._is_local():
            return cast(IO[Any], atomic_local_writer(path, mode))
        return cast(IO[Any], self._remote_writer(fs, path, mode))

    def _remote_writer(self, fs: AbstractFileSystem, path: str, mode: str) -> AtomicWriter:
        # On object stores a single PUT is already atomic: readers never see half an
        # object. But fsspec files commit the upload on close() even when the `with`
        # block raised, which would publish a partial object. So we write to a
        # temporary key and move it onto the real key only on success; the move is a
        # server-side copy, atomic at the destination, and a failure just deletes
        # the temporary key.
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        tmp = f"{path}.{uuid.uuid4().hex[:12]}.tmp"
        if parent:
            with contextlib.suppress(Exception):
                fs.makedirs(parent, exist_ok=True)
        raw = fs.open(tmp, "wb") if "b" in mode else fs.open(tmp, "w", encoding="utf-8")

        def commit() -> None:
            raw.close()
            fs.mv(tmp, path)

        def abort() -> None:
            discard = getattr(raw, "discard", None)
            with contextlib.suppress(Exception):
                if callable(discard):
                    discard()
                raw.close()
            with contextlib.suppress(Exception):
                if fs.exists(tmp):
                    fs.rm(tmp)

        return AtomicWriter(cast(IO[Any], raw), commit, abort)


FileSystemTarget = FsspecTarget
