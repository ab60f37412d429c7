"""Batch scoring of files: ``headwater models score NAME@ALIAS INPUT OUTPUT``.

:func:`score_file` reads a CSV or Parquet file (by extension; a local path or any fsspec
URL) in chunks of ``chunk_rows`` with Polars' streaming engine
(``scan_csv``/``scan_parquet`` + ``collect_batches``), so a file larger than memory is
scored in bounded memory. Per chunk: :meth:`Scorer.validate` finds the rows that do not fit
the model's signature; those go to the rejects file (CSV: the row as read, its 0-based row
number ``row`` and ``reason``); the others are scored in one :meth:`Scorer.score` call and
written with the prediction and ``model_version`` columns added.

CSV is read as text (every column), so one odd value far into a file cannot break a
type inferred from its first rows: the model's input columns are parsed into their
declared types (the rows that do not parse are the rejects), the other columns are
passed through as text. Parquet columns keep their types.

Nothing is written at ``output`` until the whole file was scored: the output (and the
rejects file) are written under a temporary name beside it and renamed at the end; a
failure removes them. Parquet output is written chunk by chunk to part files in a
temporary folder, then joined into one file by ``sink_parquet`` (streaming, bounded memory).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from headwater.errors import UserError
from headwater.ml.scoring import Scorer, load_scorer

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
DEFAULT_CHUNK_ROWS = 100_000


class BatchScoringError(UserError):
    """A file cannot be scored (missing, unknown format, columns that do not fit)."""


@dataclass(frozen=True)
class ScoreSummary:
    """What :func:`score_file` did."""

    input: str
    output: str
    rejects: str | None  # the rejects file, or None when every row was scored
    model_version: str
    rows_in: int
    rows_scored: int
    rows_rejected: int
    chunks: int
    seconds: float


def file_format(url: str, *, role: str) -> str:
    """``"csv"`` or ``"parquet"`` from the file's extension."""
    suffix = Path(url.split("?", 1)[0]).suffix.lower()
    if suffix not in FORMATS:
        raise BatchScoringError(f"{role} {url!r}: unknown file type {suffix or '(no extension)'!r}",
                                hint="name it .csv or .parquet")
    return FORMATS[suffix]


def default_rejects(output: str) -> str:
    """Where the rejected rows go unless told: ``OUTPUT.rejects.csv``."""
    return f"{output}.rejects.csv"


def score_file(
    model: str | Scorer,
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    registry: Any = None,
    features: Any = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    output_column: str = "prediction",
    version_column: str = "model_version",
    rejects: str | os.PathLike[str] | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> ScoreSummary:
    """Score the rows of ``input`` with ``model`` (a reference or a loaded :class:`Scorer`) into ``output``.

    ``on_progress(rows_read, total_rows_or_None)`` is called after every chunk (the total is
    known for Parquet). Raises :class:`BatchScoringError` before writing anything when the
    input is missing, of an unknown type, or lacks a column the model needs.
    """
    import fsspec

    started = time.perf_counter()
    src, dst = str(input), str(output)
    if chunk_rows < 1:
        raise BatchScoringError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if output_column == version_column:
        raise BatchScoringError(f"output column and version column are both {output_column!r}",
                                hint="pass another --output-column")
    in_format, out_format = file_format(src, role="input"), file_format(dst, role="output")
    in_fs, in_path = fsspec.core.url_to_fs(src)
    if not in_fs.exists(in_path):
        raise BatchScoringError(f"input file {src} does not exist",
                                hint="check the path (relative paths are from the current folder)")
    if registry is None and not isinstance(model, Scorer):
        from headwater.ml.registry_sql import open_registry
        from headwater.settings import Settings

        registry = open_registry(Settings.from_env())
    scorer = model if isinstance(model, Scorer) else load_scorer(registry, model, features=features)
    rejects_url = str(rejects) if rejects is not None else default_rejects(dst)

    with contextlib.ExitStack() as stack:
        source = _source(in_fs, in_path, stack)
        frame = pl.scan_csv(source, infer_schema=False) if in_format == "csv" else pl.scan_parquet(source)
        schema = frame.collect_schema()
        _check_columns(scorer, list(schema), src, output_column, version_column)
        total = frame.select(pl.len()).collect().item() if in_format == "parquet" else None
        out_schema = dict(schema) | (dict(scorer.features.input_schema) if in_format == "csv" else {})
        out_schema |= {output_column: pl.Float64(), version_column: pl.String()}
        writer = _Writer(dst, out_format, rejects_url, pl.Schema(out_schema))
        try:
            counts = _score_chunks(scorer, frame.collect_batches(chunk_size=chunk_rows), writer, in_format,
                                   output_column, version_column, total, on_progress)
            writer.commit()
        except BaseException:
            writer.discard()
            raise
    rows_in, rejected, chunks = counts
    return ScoreSummary(src, dst, rejects_url if rejected else None, scorer.label, rows_in, rows_in - rejected,
                        rejected, chunks, time.perf_counter() - started)


def _is_local(fs: Any) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _source(fs: Any, path: str, stack: contextlib.ExitStack) -> Any:
    """A local path for Polars to scan itself (streaming); else an open fsspec file."""
    if _is_local(fs):
        return path
    return stack.enter_context(fs.open(path, "rb"))


def _check_columns(scorer: Scorer, columns: list[str], src: str, output_column: str, version_column: str) -> None:
    needed = list(scorer.features.input_schema)
    missing = [c for c in needed if c not in columns]
    if missing:
        raise BatchScoringError(
            f"{src} lacks {len(missing)} column(s) that model {scorer.label} needs: {', '.join(missing)}",
            hint=f"the model reads {', '.join(needed)}",
        )
    for name in (output_column, version_column):
        if name in columns:
            raise BatchScoringError(f"{src} already has a column {name!r}",
                                    hint="pass --output-column with another name for the prediction")


def _score_chunks(
    scorer: Scorer,
    chunks: Iterator[pl.DataFrame],
    writer: _Writer,
    in_format: str,
    output_column: str,
    version_column: str,
    total: int | None,
    on_progress: Callable[[int, int | None], None] | None,
) -> tuple[int, int, int]:
    inputs = scorer.features.input_schema
    rows = rejected = n = 0
    for chunk in chunks:
        reasons = scorer.validate(chunk)
        bad = reasons.is_not_null()
        n_bad = int(bad.sum())
        if n_bad:
            writer.reject(chunk.with_columns(
                pl.int_range(rows, rows + chunk.height, dtype=pl.Int64).alias("row"), reasons.alias("reason"),
            ).filter(bad))
            chunk = chunk.filter(~bad)
        if chunk.height:
            predictions = scorer.score(chunk)
            if in_format == "csv":  # the model's columns in their declared types; the rest stays text
                chunk = chunk.with_columns(scorer.features.definition.conform(chunk.select(list(inputs)),
                                                                              coerce=True))
            writer.write(chunk.with_columns(pl.Series(output_column, predictions),
                                            pl.lit(scorer.label, dtype=pl.String).alias(version_column)))
        rows += chunk.height + n_bad
        rejected += n_bad
        n += 1
        if on_progress is not None:
            on_progress(rows, total)
    return rows, rejected, n


class _Writer:
    """Writes scored chunks and rejects under temporary names; :meth:`commit` renames them into place."""

    def __init__(self, output: str, out_format: str, rejects: str, schema: pl.Schema) -> None:
        import fsspec

        self.output, self.out_format, self.rejects = output, out_format, rejects
        self.fs, self.path = fsspec.core.url_to_fs(output)
        self.rfs, self.rpath = fsspec.core.url_to_fs(rejects)
        self.fs.makedirs(self.fs._parent(self.path), exist_ok=True)
        tag = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tmp = self.path + tag
        self.rtmp = self.rpath + tag
        self.schema = schema  # of the output, for an output without rows
        self._out: Any = None
        self._rej: Any = None
        self._parts: list[str] = []
        self._parts_dir: str | None = None

    def write(self, frame: pl.DataFrame) -> None:
        if self.out_format == "csv":
            first = self._out is None
            if first:
                self._out = self.fs.open(self.tmp, "wb")
            frame.write_csv(self._out, include_header=first)
            return
        if self._parts_dir is None:
            # Beside the output when local (same disk, cleaned with it); else the system's temp folder.
            near = self.fs._parent(self.path) if _is_local(self.fs) else None
            self._parts_dir = tempfile.mkdtemp(prefix=".hw-score-", dir=near)
        part = os.path.join(self._parts_dir, f"part-{len(self._parts):06d}.parquet")
        frame.write_parquet(part)
        self._parts.append(part)

    def reject(self, frame: pl.DataFrame) -> None:
        first = self._rej is None
        if first:
            self._rej = self.rfs.open(self.rtmp, "wb")
        frame.write_csv(self._rej, include_header=first)

    def commit(self) -> None:
        self._close()
        if self.out_format == "parquet":
            if self._parts:
                with self.fs.open(self.tmp, "wb") as out:
                    pl.scan_parquet(self._parts).sink_parquet(out)
            else:
                with self.fs.open(self.tmp, "wb") as out:  # every row rejected (or none)
                    pl.DataFrame(schema=self.schema).write_parquet(out)
        elif not self.fs.exists(self.tmp):
            with self.fs.open(self.tmp, "wb") as out:  # every row rejected (or none): the header alone
                pl.DataFrame(schema=self.schema).write_csv(out)
        self._move(self.fs, self.tmp, self.path)
        if self.rfs.exists(self.rtmp):
            self._move(self.rfs, self.rtmp, self.rpath)
        elif self.rfs.exists(self.rpath):
            self.rfs.rm(self.rpath)  # an older run's rejects: this output has none
        self._drop_parts()

    @staticmethod
    def _move(fs: Any, src: str, dst: str) -> None:
        if _is_local(fs):
            os.replace(src, dst)  # atomic on one file system
        else:
            fs.mv(src, dst)

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._close()
        for fs, path in ((self.fs, self.tmp), (self.rfs, self.rtmp)):
            with contextlib.suppress(Exception):
                if fs.exists(path):
                    fs.rm(path)
        self._drop_parts()

    def _close(self) -> None:
        for handle in (self._out, self._rej):
            if handle is not None:
                handle.close()
        self._out = self._rej = None

    def _drop_parts(self) -> None:
        if self._parts_dir is not None:
            shutil.rmtree(self._parts_dir, ignore_errors=True)
            self._parts_dir = None
