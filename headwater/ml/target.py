"""Target transforms: train on ``log1p(price)``, predict and report prices.

A regression target with a long right tail (prices, durations) is often learned better on a
log scale. The transform is part of the model's signature (``signature["target_transform"]``),
so every scorer (stream, REST, batch) applies the same inverse; metrics are always computed
on the original scale, so they compare with models trained without a transform.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from headwater.errors import UserError

Fn = Callable[[np.ndarray], np.ndarray]

# name -> (forward, inverse, bound: every target must be above it)
_TRANSFORMS: dict[str, tuple[Fn, Fn, float]] = {
    "log1p": (np.log1p, np.expm1, -1.0),
    "log": (np.log, np.exp, 0.0),
}
NAMES = tuple(_TRANSFORMS)


class TargetTransformError(UserError):
    """An unknown target transform, or a target it cannot be applied to."""


def check(name: str | None, task: str) -> None:
    """Refuse an unknown transform, or one given for classification."""
    if name is None:
        return
    if name not in _TRANSFORMS:
        raise TargetTransformError(f"unknown target_transform {name!r}", hint=f"use one of {', '.join(NAMES)} or None")
    if task != "regression":
        raise TargetTransformError(f"target_transform={name!r} is for regression, the task is {task!r}")


def forward(name: str | None, y: np.ndarray) -> np.ndarray:
    """``y`` on the scale the estimator is fitted on; every value must be in the transform's domain."""
    if name is None:
        return y
    fn, _, low = _TRANSFORMS[name]
    if len(y) and float(np.min(y)) <= low:
        raise TargetTransformError(
            f"target_transform={name!r} needs targets > {low:g}, the smallest is {float(np.min(y)):g}",
            hint="filter those rows out first, or train without a target transform",
        )
    return fn(y)


def inverse(name: str | None, predictions: np.ndarray) -> np.ndarray:
    """Estimator outputs back on the target's scale."""
    if name is None:
        return predictions
    return _TRANSFORMS[name][1](np.asarray(predictions, dtype=np.float64))
