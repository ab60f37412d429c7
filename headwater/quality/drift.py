"""Drift: how far recent data has moved from the training profile, per feature.

Population stability index (PSI)
--------------------------------
For bins with expected (training) shares ``e_i`` and observed (window) shares ``a_i``::

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i),   a_i, e_i clipped below at eps = 1e-4

(the clipping keeps empty bins finite: an empty bin on one side counts as a share of 1e-4).
0 means the same distribution; the usual reading is < 0.1 stable, 0.1-0.2 moderate shift,
> 0.2 significant shift, hence the default threshold of 0.2.

Where the bins come from, per feature:

- **numeric** columns: the profile's quantiles ``p01, p05, p25, p50, p75, p95, p99`` are the
  bin edges, bins closed on the right (``edge[i-1] < x <= edge[i]``), plus one below p01 and
  one above p99 (values beyond the training range land in the outer bins). The expected
  share of a bin is the difference of the training mass up to its edges: the profile's
  ``cdf`` (share of training values <= each quantile), or for profiles without it the
  quantile levels, ``0.01, 0.04, 0.20, 0.25, 0.25, 0.20, 0.04, 0.01``. Equal edges (ties: a
  value filling several quantile levels, like the zeros of ``sqft_basement``) are merged
  into one edge carrying the largest mass, so a point mass lands in one bin on both sides.
  With ``cdf`` this is exact for discrete columns too (bedrooms, floors); without it a tie
  is approximated by the highest level at that value.
- **categorical** columns (strings, and integer codes named in ``categorical=`` such as zip
  codes): one bin per training category, plus "other" for categories rarer than 0.5% in
  training and values never seen; shares from the profile's ``categories`` (or its ``top``
  categories, "other" taking the rest of the count).

Nulls and NaN are left out (they are the record checks' business).

Sampling noise: ``n`` records drawn from the training distribution itself give a PSI of
about ``chi2(k-1) / n`` for ``k`` bins (PSI is to first order the chi-square statistic over
``n``). A feature is therefore judged only once the window holds enough records that the
threshold lies six standard deviations above that noise:
``n >= (k - 1 + 6 * sqrt(2 (k - 1))) / threshold`` (147 records for 8 bins at 0.2, 700 for 70
zip codes), and never fewer than ``min_records``.

Shifts
------
``mean_shift`` and ``median_shift`` are ``(window statistic - training statistic) /
training std``, signed; thresholds apply to their absolute value. They are computed for
numeric features and alert only when a threshold is configured for them.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from headwater.clock import Clock, SystemClock
from headwater.errors import UserError
from headwater.ml.profile import QUANTILES

EPSILON = 1e-4
MIN_CATEGORY_SHARE = 0.005
METRICS: tuple[str, ...] = ("psi", "mean_shift", "median_shift")
DEFAULT_THRESHOLDS: dict[str, float] = {"psi": 0.2}
NOISE_SIGMAS = 6.0


class DriftConfigError(UserError):
    """A drift monitor is configured wrongly (unknown feature or metric, threshold <= 0, bad window)."""


# -- the formulas ----------------------------------------------------------------------


def psi(expected: Sequence[float] | np.ndarray, observed: Sequence[float] | np.ndarray, eps: float = EPSILON) -> float:
    """Population stability index of observed shares against expected shares (formula in the module docstring)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), eps)
    a = np.maximum(np.asarray(observed, dtype=np.float64), eps)
    if e.shape != a.shape:
        raise ValueError(f"psi: {e.shape[0]} expected shares for {a.shape[0]} observed")
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_bins(entry: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(edges, expected shares) of a numeric profile column from its quantiles; ties merged.

    ``len(shares) == len(edges) + 1``: below the first edge, between edges, above the last.
    The mass up to each edge is the profile's ``cdf`` when it has one (exact, ties included),
    else the quantile's level.
    """
    stored = entry.get("quantiles") or {}
    cdf = entry.get("cdf") or {}
    edges: list[float] = []
    cumulative: list[float] = []
    for label, level in sorted(QUANTILES.items(), key=lambda kv: kv[1]):
        value = stored.get(label)
        if value is None:
            continue
        mass = float(cdf[label]) if cdf.get(label) is not None else level
        if edges and float(value) <= edges[-1]:
            cumulative[-1] = max(cumulative[-1], mass)  # a tie: the point mass at this edge covers this level too
        else:
            edges.append(float(value))
            cumulative.append(mass)
    shares = np.maximum(np.diff(np.asarray([0.0, *cumulative, 1.0])), 0.0)
    return np.asarray(edges, dtype=np.float64), shares


def bin_shares(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Shares of ``values`` in the right-closed bins of ``edges`` (see :func:`quantile_bins`)."""
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def numeric_psi(entry: Mapping[str, Any], values: Sequence[float] | np.ndarray) -> float:
    """PSI of ``values`` against a numeric profile column's quantile bins."""
    edges, expected = quantile_bins(entry)
    array = np.asarray(values, dtype=np.float64)
    return psi(expected, bin_shares(edges, array[~np.isnan(array)]))


def category_shares(entry: Mapping[str, Any], min_share: float = MIN_CATEGORY_SHARE) -> tuple[list[Any], np.ndarray]:
    """(training values, expected shares with "other" last) of a profile column with categories or top.

    Categories rarer than ``min_share`` are pooled into "other" (with unseen values): a bin
    expected to hold a handful of a window's records only adds sampling noise to the PSI.
    """
    pairs = entry.get("categories")
    if pairs is None:
        pairs = entry.get("top") or []
    counts = np.asarray([c for _, c in pairs], dtype=np.float64)
    total = max(int(entry.get("count") or 0), int(counts.sum()), 1)
    keep = counts / total >= min_share
    kept = counts[keep]
    shares = np.append(kept / total, max(0.0, 1.0 - kept.sum() / total))
    return [v for (v, _), k in zip(pairs, keep, strict=True) if k], shares


def categorical_psi(entry: Mapping[str, Any], values: Iterable[Any]) -> float:
    """PSI of ``values`` (None left out) against a profile column's categories; unseen values count as "other"."""
    vocab, expected = category_shares(entry)
    index = {str(v): i for i, v in enumerate(vocab)}
    codes = np.asarray([index.get(str(v), len(vocab)) for v in values if v is not None], dtype=np.int64)
    observed = np.bincount(codes, minlength=len(vocab) + 1) / max(len(codes), 1)
    return psi(expected, observed)


def min_window(bins: int, threshold: float) -> int:
    """Records needed before a PSI over ``bins`` bins is judged against ``threshold`` (module docstring)."""
    dof = max(bins - 1, 1)
    return math.ceil((dof + NOISE_SIGMAS * math.sqrt(2 * dof)) / threshold)


# -- features --------------------------------------------------------------------------


@dataclass(eq=False)  # hashed by identity: a key of the metrics of one evaluation
class _Feature:
    name: str
    mode: str  # "numeric" or "categorical"
    entry: Mapping[str, Any]
    edges: np.ndarray = field(default_factory=lambda: np.empty(0))
    expected: np.ndarray = field(default_factory=lambda: np.empty(0))
    vocab: list[Any] = field(default_factory=list)
    integer_codes: bool = False

    @classmethod
    def build(cls, name: str, entry: Mapping[str, Any], categorical: bool) -> _Feature:
        dtype = str(entry.get("dtype", ""))
        if categorical:
            vocab, expected = category_shares(entry)
            return cls(name, "categorical", entry, expected=expected, vocab=vocab,
                       integer_codes=dtype.startswith(("Int", "UInt")))
        edges, expected = quantile_bins(entry)
        return cls(name, "numeric", entry, edges=edges, expected=expected)

    def expr(self, schema: Mapping[str, pl.DataType]) -> pl.Expr:
        """The column as float64 (categories as their index in the vocabulary, -1 unseen), null where it
        is null, missing, or of a type that holds no number (a list): the checks report those."""
        got = schema.get(self.name)
        value = pl.col(self.name)
        nothing = pl.lit(None, dtype=pl.Float64)
        if got is None or not (got.is_numeric() or got in (pl.String, pl.Boolean, pl.Null, pl.Categorical)):
            expr = nothing
        elif self.mode == "categorical":
            if self.integer_codes and got == pl.String:
                text = value.str.strip_chars().cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)
            elif self.integer_codes and got.is_numeric():
                text = value.cast(pl.Int64, strict=False)
            else:
                text = value
            text = text.cast(pl.String, strict=False)
            coded = text.replace_strict([str(v) for v in self.vocab], list(range(len(self.vocab))), default=-1,
                                        return_dtype=pl.Float64)
            expr = pl.when(text.is_null()).then(nothing).otherwise(coded)
        elif got == pl.String:
            expr = value.str.strip_chars().cast(pl.Float64, strict=False)
        else:
            expr = value.cast(pl.Float64, strict=False)
        # "+ 0 * row index": one value per row even when the expression is a bare literal.
        return (expr + pl.int_range(pl.len()).cast(pl.Float64) * 0).alias(self.name)

    def shares(self, values: np.ndarray) -> np.ndarray:
        """Observed shares of the window's (non-NaN) values in this feature's bins."""
        if self.mode == "numeric":
            return bin_shares(self.edges, values)
        codes = np.where(values >= 0, values, len(self.vocab)).astype(np.int64)
        return np.bincount(codes, minlength=len(self.expected)) / max(len(values), 1)

    def metrics(self, values: np.ndarray, mean: float | None = None, median: float | None = None) -> dict[str, float]:
        """PSI and shifts of the window's non-NaN ``values`` (``mean``/``median`` when already computed)."""
        out = {"psi": psi(self.expected, self.shares(values))}
        std = self.entry.get("std")
        if self.mode != "categorical" and std and values.size:
            if self.entry.get("mean") is not None:
                mean = float(values.mean()) if mean is None else mean
                out["mean_shift"] = (mean - float(self.entry["mean"])) / float(std)
            if self.entry.get("median") is not None:
                median = float(np.median(values)) if median is None else median
                out["median_shift"] = (median - float(self.entry["median"])) / float(std)
        return out


# -- the monitor -----------------------------------------------------------------------


class DriftMonitor:
    """Drift of a sliding window of records against a training profile, and alerts when it crosses thresholds.

    The window keeps the last ``window`` records (and, with ``window_seconds``, only those
    seen in that many seconds by ``clock``) in a fixed ring buffer: one float64 per record
    and feature plus one timestamp, so memory is ``window * (features + 1) * 8`` bytes
    whatever the traffic. Every ``every`` records (and/or ``every_seconds``) the window is
    evaluated; :meth:`observe` returns the alert records of those evaluations.

    ``thresholds``: metric -> threshold for every feature (default ``{"psi": 0.2}``), and
    feature -> {metric: threshold} to override per feature, e.g.
    ``{"psi": 0.25, "sqft_lot": {"psi": 0.5, "median_shift": 1.0}}``. An alert fires when a
    value goes above its threshold; it fires again for that feature and metric only after
    the value came back under it, or, if ``cooldown_seconds`` is set, after that long while
    it stays above.
    """

    def __init__(
        self,
        profile: Mapping[str, Any],
        *,
        features: Sequence[str] | None = None,
        signature: Mapping[str, Any] | None = None,
        categorical: Iterable[str] | None = None,
        window: int = 1000,
        window_seconds: float | None = None,
        every: int | None = 100,
        every_seconds: float | None = None,
        thresholds: Mapping[str, float | Mapping[str, float]] | None = None,
        min_records: int = 100,
        cooldown_seconds: float | None = None,
        clock: Clock | None = None,
        version_column: str = "model_version",
    ) -> None:
        if not isinstance(profile, Mapping) or not isinstance(profile.get("columns"), Mapping):
            raise DriftConfigError("a drift monitor needs a profile document with 'columns'",
                                   hint="pass ModelVersion.profile or headwater.ml.profile.profile(frame)")
        _positive_int("window", window)
        _positive_int("min_records", min_records)
        if every is not None:
            _positive_int("every", every)
        for label, seconds in (("window_seconds", window_seconds), ("every_seconds", every_seconds),
                               ("cooldown_seconds", cooldown_seconds)):
            if seconds is not None and (not isinstance(seconds, int | float) or seconds <= 0):
                raise DriftConfigError(f"{label} must be seconds > 0, got {seconds!r}")
        if every is None and every_seconds is None:
            raise DriftConfigError("the drift monitor is never evaluated: every and every_seconds are both None",
                                   hint="e.g. every=100 (records) or every_seconds=60")
        columns: Mapping[str, Mapping[str, Any]] = profile["columns"]
        forced = None if categorical is None else list(categorical)
        names = self._feature_names(columns, features, signature, forced)
        self.features = [
            _Feature.build(n, columns[n], n in forced if forced is not None else _is_categorical(columns[n]))
            for n in names
        ]
        self.thresholds = _thresholds(thresholds, names, self.features)
        # Records a feature needs before it is judged (sampling noise; see the module docstring).
        self._needed = [max(min_records, min_window(len(f.expected), self.thresholds[f.name].get(
            "psi", DEFAULT_THRESHOLDS["psi"]))) for f in self.features]
        self.window, self.window_seconds = window, window_seconds
        self.every, self.every_seconds = every, every_seconds
        self.min_records, self.cooldown_seconds = min_records, cooldown_seconds
        self.version_column = version_column
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._values = np.full((window, len(self.features)), np.nan)
        self._times = np.full(window, np.nan)
        self._head = 0  # next slot to write
        self._size = 0
        self._since_eval = 0
        self._last_eval = self._clock.monotonic()
        self._active: dict[tuple[str, str], float] = {}  # (feature, metric) -> monotonic time of its last alert
        self._version: str | None = None
        self._exprs: dict[tuple[tuple[str, pl.DataType], ...], list[pl.Expr]] = {}
        self.evaluations = 0
        self.alerts_fired = 0
        self.last: dict[str, dict[str, float]] = {}

    @staticmethod
    def _feature_names(
        columns: Mapping[str, Mapping[str, Any]], features: Sequence[str] | None,
        signature: Mapping[str, Any] | None, categorical: list[str] | None,
    ) -> list[str]:
        for option, given in (("features", features), ("categorical", categorical)):
            unknown = [n for n in given or [] if n not in columns]
            if unknown:
                raise DriftConfigError(f"drift monitor: {option}= names columns the training profile does not "
                                       f"describe: {unknown}", hint=f"pick among {sorted(columns)}")
        if features is not None:
            names = list(features)
            if not names:
                raise DriftConfigError("drift monitor: features= is empty", hint="name at least one feature")
            bad = [n for n in names if not _usable(columns[n], categorical is not None and n in categorical)]
            if bad:
                raise DriftConfigError(f"drift monitor: no distribution to compare for {bad} in the profile "
                                       "(not numeric with quantiles, nor categorical with categories or top values)",
                                       hint="monitor numeric or categorical columns")
            return names
        pool = [i["name"] for i in (signature or {}).get("inputs", [])] or list(columns)
        return [n for n in pool if n in columns and _default_feature(columns[n], categorical is not None
                                                                    and n in categorical)]

    # -- window ---------------------------------------------------------------------

    @property
    def window_size(self) -> int:
        """Records in the window now."""
        return self._size

    def _push(self, block: np.ndarray, when: float) -> None:
        n = len(block)
        if n >= self.window:
            block, n = block[-self.window:], self.window
        slots = (self._head + np.arange(n)) % self.window
        self._values[slots] = block
        self._times[slots] = when
        self._head = int((self._head + n) % self.window)
        self._size = min(self._size + n, self.window)

    def _current(self, now: float) -> np.ndarray:
        """Row mask of the window's records (filled slots, within ``window_seconds``)."""
        mask: np.ndarray = ~np.isnan(self._times)
        if self.window_seconds is not None:
            mask &= self._times >= now - self.window_seconds
        return mask

    def observe(self, frame: pl.DataFrame) -> list[dict[str, Any]]:
        """Add ``frame``'s records to the window; the alert records of the evaluations they triggered."""
        return [alert for _, alert in self.observe_rows(frame)]

    def observe_rows(self, frame: pl.DataFrame) -> list[tuple[int, dict[str, Any]]]:
        """As :meth:`observe`, each alert with the position in ``frame`` of the record that triggered it."""
        with self._lock:
            matrix = self._matrix(frame)
            versions = (frame.get_column(self.version_column).cast(pl.String, strict=False).to_list()
                        if self.version_column in frame.columns else None)
            now = self._clock.now().timestamp()
            alerts: list[tuple[int, dict[str, Any]]] = []
            pos = 0
            # Fed in slices that end where an evaluation falls due: every N records even inside a big batch.
            while pos < frame.height:
                left = frame.height - pos
                take = left if self.every is None else min(left, self.every - self._since_eval)
                self._push(matrix[pos:pos + take], now)
                pos += take
                self._since_eval += take
                if versions is not None and versions[pos - 1] is not None:
                    self._version = versions[pos - 1]
                due = self.every is not None and self._since_eval >= self.every
                if self.every_seconds is not None:
                    due = due or self._clock.monotonic() - self._last_eval >= self.every_seconds
                if due:
                    alerts.extend((pos - 1, alert) for alert in self._evaluate(now))
            return alerts

    def _matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """The frame's features as one float64 array (rows x features, NaN for null), from one select."""
        if not self.features or not frame.height:
            return np.empty((frame.height, len(self.features)))
        schema = frame.schema
        key = tuple(schema.items())
        exprs = self._exprs.get(key)
        if exprs is None:
            if len(self._exprs) >= 16:  # schemas vary (a text value in a numeric field): keep a few
                self._exprs.clear()
            exprs = self._exprs[key] = [f.expr(schema) for f in self.features]
        values = frame.select(exprs).to_numpy()
        return np.asarray(values, dtype=np.float64)

    def evaluate(self) -> dict[str, dict[str, float]]:
        """The metrics of the window now, per feature judged (no alerts: a read-only look)."""
        with self._lock:
            mask = self._current(self._clock.now().timestamp())
            return {f.name: m for f, m in self._metrics(mask).items()}

    def _metrics(self, mask: np.ndarray) -> dict[_Feature, dict[str, float]]:
        block = self._values[mask]
        valid = ~np.isnan(block)
        counts = valid.sum(axis=0)
        judged = [j for j in range(len(self.features)) if counts[j] >= self._needed[j]]
        if not judged:
            return {}
        # One sort of the whole block gives every feature's median (NaN sorts last) and values.
        ordered = np.sort(block, axis=0)
        out = {}
        for j in judged:
            n = int(counts[j])
            values = ordered[:n, j]
            median = float(values[n // 2]) if n % 2 else float((values[n // 2 - 1] + values[n // 2]) / 2)
            out[self.features[j]] = self.features[j].metrics(values, float(values.mean()), median)
        return out

    def _evaluate(self, now: float) -> list[dict[str, Any]]:
        self._since_eval = 0
        self._last_eval = mono = self._clock.monotonic()
        self.evaluations += 1
        mask = self._current(now)
        times = self._times[mask]
        alerts = []
        for feature, values in self._metrics(mask).items():
            self.last[feature.name] = values
            for metric, threshold in self.thresholds[feature.name].items():
                value = values.get(metric)
                if value is None:
                    continue
                key = (feature.name, metric)
                if abs(value) <= threshold:
                    self._active.pop(key, None)  # recovered: the next crossing alerts again
                    continue
                since = self._active.get(key)
                if since is not None and (self.cooldown_seconds is None or mono - since < self.cooldown_seconds):
                    continue
                self._active[key] = mono
                alerts.append(self._alert(feature.name, metric, value, threshold, int(mask.sum()), times))
        self.alerts_fired += len(alerts)
        return alerts

    def _alert(self, feature: str, metric: str, value: float, threshold: float, size: int,
               times: np.ndarray) -> dict[str, Any]:
        return {
            "type": "drift",
            "feature": feature,
            "metric": metric,
            "value": value,
            "threshold": threshold,
            "window_size": size,
            "window_start": _iso(float(times.min())) if times.size else None,
            "window_end": _iso(float(times.max())) if times.size else None,
            "model_version": self._version,
        }

    def table(self) -> Any:
        """The last metrics per feature as a Rich table, with thresholds; alerting values in red."""
        return drift_table(self.snapshot(), self.thresholds)

    def snapshot(self) -> dict[str, Any]:
        """Plain counters and the last metrics per feature (for an app's metrics and Prometheus)."""
        with self._lock:
            return {"window_size": self._size, "evaluations": self.evaluations, "alerts": self.alerts_fired,
                    "alerting": sorted(f"{f}:{m}" for f, m in self._active),
                    "last": {f: dict(m) for f, m in self.last.items()}}


def drift_table(snapshot: Mapping[str, Any], thresholds: Mapping[str, Mapping[str, float]] | None = None) -> Any:
    """A Rich table of a monitor's last metrics per feature (``DriftMonitor.snapshot()``), alerting ones marked."""
    from rich.table import Table

    alerting = set(snapshot.get("alerting", []))
    table = Table(title=f"Drift over the last {snapshot.get('window_size', 0):,} records")
    table.add_column("feature")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    for feature, values in sorted(snapshot.get("last", {}).items()):
        cells = []
        for metric in METRICS:
            value = values.get(metric)
            limit = (thresholds or {}).get(feature, {}).get(metric)
            text = "" if value is None else f"{value:.3f}" + (f" / {limit:g}" if limit is not None else "")
            cells.append(f"[bold red]{text}[/]" if f"{feature}:{metric}" in alerting else text)
        table.add_row(feature, *cells)
    return table


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()


def _positive_int(label: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise DriftConfigError(f"{label} must be a positive number of records, got {value!r}")


def _is_categorical(entry: Mapping[str, Any]) -> bool:
    return entry.get("kind") == "categorical" or bool(entry.get("categorical"))


def _usable(entry: Mapping[str, Any], forced: bool) -> bool:
    if forced or _is_categorical(entry):
        return bool(entry.get("categories") or entry.get("top"))
    return entry.get("kind") == "numeric" and any(v is not None for v in (entry.get("quantiles") or {}).values())


def _default_feature(entry: Mapping[str, Any], forced: bool) -> bool:
    """Monitored unless told otherwise: numeric columns, and categorical ones whose whole vocabulary is known."""
    if forced or _is_categorical(entry):
        return "categories" in entry
    return _usable(entry, False)


def _thresholds(
    given: Mapping[str, float | Mapping[str, float]] | None, names: list[str], features: list[_Feature]
) -> dict[str, dict[str, float]]:
    defaults = dict(DEFAULT_THRESHOLDS)
    overrides: dict[str, dict[str, float]] = {}
    for key, value in (given or {}).items():
        if isinstance(value, Mapping):
            if key not in names:
                raise DriftConfigError(f"thresholds for {key!r}, which is not a monitored feature",
                                       hint=f"monitored features: {names}")
            overrides[key] = {m: _threshold(f"{key}.{m}", m, v) for m, v in value.items()}
        elif key in METRICS:
            defaults[key] = _threshold(key, key, value)
        else:
            raise DriftConfigError(
                f"thresholds: {key!r} is neither a metric nor a feature given a mapping",
                hint=f"metrics: {', '.join(METRICS)}; per feature: {{'sqft_living': {{'psi': 0.1}}}}",
            )
    out: dict[str, dict[str, float]] = {}
    for feature in features:
        merged = {**defaults, **overrides.get(feature.name, {})}
        if feature.mode == "categorical":
            merged = {m: t for m, t in merged.items() if m == "psi"}
        out[feature.name] = merged
    return out


def _threshold(label: str, metric: str, value: Any) -> float:
    if metric not in METRICS:
        raise DriftConfigError(f"thresholds: unknown metric in {label!r}", hint=f"metrics: {', '.join(METRICS)}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise DriftConfigError(f"threshold {label} must be a number > 0, got {value!r}",
                               hint="PSI: 0.1 moderate, 0.2 significant shift; shifts in training standard deviations")
    return float(value)
