"""Train/validation/test splits: seeded random, or by time (train on the oldest rows).

A random split is a function of the seed, the row count and the row order only: the same
frame in the same order with the same seed gives the same three frames, on any machine
(NumPy's PCG64 generator). Each split keeps the frame's row order.

A time split sorts by ``time_column`` (stable, so rows with equal times keep their order) and
cuts it into oldest / middle / newest. Rows sharing a timestamp are never cut apart: a cut that
falls inside a run of equal times moves to the end of that run, so validation and test only
hold times strictly later than training. The sizes can therefore differ slightly from the
fractions; :attr:`Splits.sizes` reports what was produced.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from headwater.errors import UserError

DEFAULT_FRACTIONS = (0.7, 0.2, 0.1)
DEFAULT_SEED = 0


class SplitError(UserError):
    """A split was asked for with bad fractions, a missing or unusable time column, or too few rows."""


@dataclass(frozen=True)
class Splits:
    """The three parts of a frame, and how they were made (``describe()`` gives the JSON facts)."""

    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    method: str  # "random" or "time"
    fractions: tuple[float, float, float]
    seed: int | None = None
    time_column: str | None = None
    #: For a time split: the last time in train and in validation, ISO 8601 (None when that part is empty).
    boundaries: dict[str, Any] = field(default_factory=dict)

    @property
    def sizes(self) -> dict[str, int]:
        """Row counts per part."""
        return {"train": self.train.height, "validation": self.validation.height, "test": self.test.height}

    def data_hashes(self) -> dict[str, dict[str, Any]]:
        """Per part, ``{"data_hash": frame_hash(part), "rows": n}``: what the registry compares metrics on."""
        parts = {"train": self.train, "validation": self.validation, "test": self.test}
        return {name: {"data_hash": frame_hash(part), "rows": part.height} for name, part in parts.items()}

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable facts about the split, stored with the model."""
        return {
            "method": self.method,
            "fractions": list(self.fractions),
            "seed": self.seed,
            "time_column": self.time_column,
            "sizes": self.sizes,
            "boundaries": dict(self.boundaries),
        }


def _column_bytes(series: pl.Series) -> list[bytes]:
    """Bytes that identify a column's values exactly: a null mask, then fixed-width values or length-prefixed text."""
    nulls = series.is_null().to_numpy().astype(np.uint8).tobytes()
    dtype = series.dtype
    if dtype == pl.Boolean:
        return [nulls, series.fill_null(False).cast(pl.UInt8).to_numpy().tobytes()]
    if dtype.is_numeric() and not dtype.is_decimal():
        values = series.fill_null(0).to_numpy()
        return [nulls, values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()]
    if dtype.is_temporal():
        return [nulls, series.to_physical().fill_null(0).to_numpy().astype("<i8").tobytes()]
    if dtype == pl.String or dtype.is_decimal() or isinstance(dtype, pl.Categorical | pl.Enum):
        text = series.cast(pl.String).fill_null("")
    else:  # lists, structs, binary: their Python repr (slow, but rare in training frames)
        text = pl.Series([repr(v) for v in series.to_list()], dtype=pl.String)
    lengths = text.str.len_bytes().cast(pl.UInt64).to_numpy().astype("<u8").tobytes()
    joined = text.str.join("").item() if text.len() else ""
    return [nulls, lengths + joined.encode("utf-8")]


def frame_hash(frame: pl.DataFrame) -> str:
    """``sha256:<hex>`` of a frame's column names, dtypes and values, in order.

    Equal for equal data whatever the frame's chunking or the Polars version (unlike
    ``DataFrame.hash_rows``), so two models evaluated on the same test split can tell.
    """
    digest = hashlib.sha256()
    digest.update(f"rows={frame.height}\0".encode())
    for name, series in zip(frame.columns, frame.get_columns(), strict=True):
        digest.update(f"{name}\0{series.dtype}\0".encode())
        for part in _column_bytes(series):
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
    return "sha256:" + digest.hexdigest()


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate ``(train, validation, test)`` fractions: three finite numbers >= 0, train > 0, summing to 1."""
    values = tuple(fractions)
    if len(values) != 3:
        raise SplitError(
            f"fractions must be three numbers (train, validation, test), got {len(values)}: {values!r}",
            hint="for example fractions=(0.7, 0.2, 0.1)",
        )
    try:
        train, validation, test = (float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise SplitError(f"fractions must be numbers, got {values!r}") from exc
    if not all(math.isfinite(v) and v >= 0 for v in (train, validation, test)):
        raise SplitError(f"fractions must be finite and >= 0, got {values!r}")
    if train <= 0:
        raise SplitError(f"the train fraction must be > 0, got {values!r}")
    total = train + validation + test
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise SplitError(
            f"fractions must add up to 1, got {values!r} (sum {total:g})",
            hint="for example fractions=(0.7, 0.2, 0.1)",
        )
    return (train, validation, test)


def _counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """Row counts for train and validation; test takes the rest, so every row lands somewhere."""
    n_train = round(n * fractions[0])
    n_validation = min(round(n * fractions[1]), n - n_train)
    return n_train, n_validation


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def split(
    frame: pl.DataFrame,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = DEFAULT_SEED,
    time_column: str | None = None,
) -> Splits:
    """Split ``frame`` into train, validation and test.

    Without ``time_column``: a seeded random split. With it: a time split on that column
    (Date, Datetime or numeric, no nulls), train holding the oldest rows. See the module
    docstring for the guarantees.
    """
    checked = check_fractions(fractions)
    if frame.height == 0:
        raise SplitError("cannot split an empty frame", hint="check the query or file that produced it")
    if time_column is None:
        return _random_split(frame, checked, seed)
    return _time_split(frame, checked, time_column)


def _random_split(frame: pl.DataFrame, fractions: tuple[float, float, float], seed: int) -> Splits:
    n = frame.height
    n_train, n_validation = _counts(n, fractions)
    order = np.random.default_rng(seed).permutation(n)
    # Sorting each part's indices keeps the frame's own row order inside every part.
    parts = [
        np.sort(order[:n_train]),
        np.sort(order[n_train : n_train + n_validation]),
        np.sort(order[n_train + n_validation :]),
    ]
    train, validation, test = (frame[pl.Series(idx, dtype=pl.Int64)] for idx in parts)
    return Splits(train, validation, test, method="random", fractions=fractions, seed=seed)


def _time_split(frame: pl.DataFrame, fractions: tuple[float, float, float], time_column: str) -> Splits:
    if time_column not in frame.columns:
        raise SplitError(
            f"time_column {time_column!r} is not a column of the frame",
            hint=f"columns are: {', '.join(frame.columns)}",
        )
    dtype = frame.schema[time_column]
    if not (dtype.is_temporal() or dtype.is_numeric()):
        raise SplitError(
            f"time_column {time_column!r} has dtype {dtype}; a time split needs a Date, Datetime or numeric column",
            hint=f'parse it first, e.g. pl.col("{time_column}").str.to_date("%Y-%m-%d")',
        )
    nulls = frame.get_column(time_column).null_count()
    if nulls:
        raise SplitError(
            f"time_column {time_column!r} has {nulls} null value(s); a time split cannot place them",
            hint="drop or fill those rows before training",
        )
    ordered = frame.sort(time_column, maintain_order=True)
    times = ordered.get_column(time_column)
    n = ordered.height
    n_train, n_validation = _counts(n, fractions)

    def extend_over_ties(cut: int) -> int:
        # A cut between two equal times would put the same moment in two parts; move it past the run.
        if 0 < cut < n:
            return int(times.search_sorted(times[cut - 1], side="right"))
        return cut

    cut_train = extend_over_ties(n_train)
    cut_validation = extend_over_ties(max(cut_train, n_train + n_validation))
    train = ordered.slice(0, cut_train)
    validation = ordered.slice(cut_train, cut_validation - cut_train)
    test = ordered.slice(cut_validation)
    boundaries = {
        "train_end": _iso(times[cut_train - 1]) if cut_train else None,
        "validation_end": _iso(times[cut_validation - 1]) if cut_validation > cut_train else None,
    }
    return Splits(
        train,
        validation,
        test,
        method="time",
        fractions=fractions,
        time_column=time_column,
        boundaries=boundaries,
    )
