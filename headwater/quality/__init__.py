"""Knowing the data: record checks and drift monitoring against a model's training profile.

- :mod:`headwater.quality.checks`: :class:`ProfileChecks` and :func:`check_frame`, per-row
  violations (missing column, wrong type, null, out of range, unseen category) as a
  ``list[str]`` column, with a summary of counts per check and column;
- :mod:`headwater.quality.drift`: population stability index and mean/median shifts from the
  profile's stored quantiles and categories, and :class:`DriftMonitor` over a sliding window;
- :mod:`headwater.quality.stream`: the stream steps behind ``Stream.check`` and
  ``Stream.monitor_drift``, and :func:`quality_metrics` (their counters, for an app's metrics).

Names are exported lazily: ``import headwater.quality`` loads neither Polars nor NumPy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ProfileChecks": "headwater.quality.checks",
    "CheckResult": "headwater.quality.checks",
    "CheckSummary": "headwater.quality.checks",
    "CheckConfigError": "headwater.quality.checks",
    "DataCheckError": "headwater.quality.checks",
    "check_frame": "headwater.quality.checks",
    "DriftMonitor": "headwater.quality.drift",
    "DriftConfigError": "headwater.quality.drift",
    "psi": "headwater.quality.drift",
    "numeric_psi": "headwater.quality.drift",
    "categorical_psi": "headwater.quality.drift",
    "drift_table": "headwater.quality.drift",
    "quality_metrics": "headwater.quality.stream",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'headwater.quality' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
