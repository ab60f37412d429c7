"""A Prometheus histogram filled a whole array at a time (predictions of a micro-batch).

prometheus-client's ``Histogram`` observes one value per call: scoring 10,000 records would
be 10,000 Python calls. :class:`BulkHistogram` counts a batch with one NumPy
``searchsorted`` + ``bincount`` and exposes the usual ``_bucket``/``_sum``/``_count``
samples at scrape time, so its cost per batch does not grow with Python calls per record.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector


class BulkHistogram(Collector):
    """A labelled histogram with fixed upper bounds; :meth:`observe_many` adds an array of values."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        bounds = [float(b) for b in buckets]
        if not bounds or any(b >= a for b, a in itertools.pairwise(bounds)):
            raise ValueError(f"histogram buckets must increase, got {list(buckets)}")
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = bounds
        # Per label values: counts per bucket (last one is +Inf, not cumulative), [sum, max], created.
        self._series: dict[tuple[str, ...], tuple[list[int], list[float], float]] = {}
        self._lock = threading.Lock()

    def observe_many(self, labels: Sequence[str], values: Any) -> int:
        """Count every finite value of ``values`` (a NumPy array, Polars series or list); returns how many."""
        import numpy as np

        arr = np.asarray(values, dtype=np.float64).ravel()
        arr = arr[np.isfinite(arr)]
        if not arr.size:
            return 0
        # side="left": a value equal to a bound falls in that bucket (Prometheus' le is "<=").
        counts = np.bincount(np.searchsorted(self.bounds, arr, side="left"), minlength=len(self.bounds) + 1)
        total, top = float(arr.sum()), float(arr.max())
        key = tuple(labels)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = ([0] * (len(self.bounds) + 1), [0.0, top], time.time())
            buckets, stats, _created = series
            for i, n in enumerate(counts.tolist()):
                buckets[i] += n
            stats[0] += total
            stats[1] = max(stats[1], top)
        return int(arr.size)

    def counts(self, labels: Sequence[str]) -> list[list[float]]:
        """``[[upper bound, count], ...]`` of one series, counts per bucket (not cumulative), for JSON.

        Values above the last bound are in a last pair whose bound is the largest value seen
        (JSON has no infinity); it is left out when there are none.
        """
        with self._lock:
            series = self._series.get(tuple(labels))
            if series is None:
                return []
            buckets, stats, _created = series
            out = [[bound, float(n)] for bound, n in zip(self.bounds, buckets, strict=False)]
            if buckets[-1]:
                out.append([max(stats[1], self.bounds[-1]), float(buckets[-1])])
            return out

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            series = [(k, list(b), s[0]) for k, (b, s, _c) in self._series.items()]
        for labels, buckets, total in series:
            running = 0
            cumulative = []
            for bound, n in zip((*map(_bound_text, self.bounds), "+Inf"), buckets, strict=True):
                running += n
                cumulative.append((bound, running))
            family.add_metric(list(labels), cumulative, total)
        yield family


def _bound_text(bound: float) -> str:
    return repr(float(bound))
