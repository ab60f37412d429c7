"""Evaluation metrics for regression and classification, and the baselines to beat.

Every function returns a plain ``dict[str, float | None]`` (JSON-safe: ``None`` where a metric
is undefined, never NaN), so results can be stored with a model version and compared by a
promotion policy. scikit-learn computes every metric except MAPE:

- **MAPE** is the mean of ``|y - y_hat| / |y|`` over the rows whose target is not zero; rows
  with a zero target are left out (their count is reported as ``mape_zero_targets``), and MAPE
  is ``None`` when every target is zero. scikit-learn's ``mean_absolute_percentage_error``
  divides by machine epsilon instead, which turns one zero target into a value near 1e15 that
  hides every other row. Like scikit-learn's, the value is a fraction (0.12 means 12 %).
- **F1** is the positive-class F1 for two classes (the positive class is the greater label, as
  ``estimator.classes_`` sorts them) and the macro average over classes otherwise.
- **ROC AUC** uses the positive-class probability for two classes and one-vs-rest macro
  averaging for more; it is ``None`` when the evaluated targets hold a single class.
- **Log loss** is computed against the estimator's full class list, so a class absent from the
  evaluated rows does not fail.

Baselines (:func:`regression_baseline`, :func:`classification_baseline`) score the constant
prediction learned from the training targets: the mean, or the majority class with the
training class frequencies as probabilities. Callers assert "better than the mean by a margin"
with :func:`ratio_to_baseline`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

Metrics = dict[str, float | None]

REGRESSION_METRICS = ("rmse", "mae", "r2", "mape")
CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc", "log_loss")

#: Which way is better for each metric: ``"min"`` (lower is better) or ``"max"``.
DIRECTIONS: dict[str, str] = {
    "rmse": "min",
    "mae": "min",
    "r2": "max",
    "mape": "min",
    "accuracy": "max",
    "f1": "max",
    "roc_auc": "max",
    "log_loss": "min",
}


def _clean(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def mape(y_true: ArrayLike, y_pred: ArrayLike) -> float | None:
    """Mean absolute percentage error over the non-zero targets (see the module docstring)."""
    truth = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    nonzero = truth != 0
    if not nonzero.any():
        return None
    return _clean(np.mean(np.abs(truth[nonzero] - pred[nonzero]) / np.abs(truth[nonzero])))


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> Metrics:
    """RMSE, MAE, R² and MAPE of ``y_pred`` against ``y_true``; also ``n`` and ``mape_zero_targets``."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    truth = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    if truth.size == 0:
        return {"n": 0.0, "rmse": None, "mae": None, "r2": None, "mape": None, "mape_zero_targets": 0.0}
    # R² is undefined (scikit-learn warns) on fewer than two rows.
    r2 = _clean(r2_score(truth, pred)) if truth.size >= 2 else None
    return {
        "n": float(truth.size),
        "rmse": _clean(math.sqrt(mean_squared_error(truth, pred))),
        "mae": _clean(mean_absolute_error(truth, pred)),
        "r2": r2,
        "mape": mape(truth, pred),
        "mape_zero_targets": float(np.count_nonzero(truth == 0)),
    }


def classification_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    y_proba: ArrayLike | None,
    classes: Sequence[Any] | np.ndarray,
) -> Metrics:
    """Accuracy, F1, ROC AUC and log loss; also ``n``.

    ``y_proba`` is ``predict_proba``'s output (rows x ``classes``, in ``classes`` order); without
    it ROC AUC and log loss are ``None``. ``classes`` is ``estimator.classes_``.
    """
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    truth = np.asarray(y_true)
    pred = np.asarray(y_pred)
    labels = np.asarray(classes)
    result: Metrics = {"n": float(truth.size), "accuracy": None, "f1": None, "roc_auc": None, "log_loss": None}
    if truth.size == 0:
        return result
    binary = labels.size == 2
    result["accuracy"] = _clean(accuracy_score(truth, pred))
    if binary:
        result["f1"] = _clean(f1_score(truth, pred, labels=labels, pos_label=labels[1], zero_division=0.0))
    else:
        result["f1"] = _clean(f1_score(truth, pred, labels=labels, average="macro", zero_division=0.0))
    if y_proba is None:
        return result
    proba = np.asarray(y_proba, dtype=np.float64)
    result["log_loss"] = _clean(log_loss(truth, proba, labels=labels))
    if np.unique(truth).size >= 2:
        if binary:
            result["roc_auc"] = _clean(roc_auc_score(truth == labels[1], proba[:, 1]))
        else:
            present = np.isin(labels, truth)
            if present.all():
                result["roc_auc"] = _clean(roc_auc_score(truth, proba, multi_class="ovr", labels=labels))
    return result


def regression_baseline(y_train: ArrayLike, y_eval: ArrayLike) -> Metrics:
    """The metrics of always predicting the training mean, on ``y_eval``."""
    train = np.asarray(y_train, dtype=np.float64)
    truth = np.asarray(y_eval, dtype=np.float64)
    mean = float(train.mean()) if train.size else 0.0
    return regression_metrics(truth, np.full(truth.shape, mean))


def classification_baseline(y_train: ArrayLike, y_eval: ArrayLike, classes: Sequence[Any] | np.ndarray) -> Metrics:
    """The metrics of always predicting the training majority class, with the training frequencies as probabilities."""
    train = np.asarray(y_train)
    truth = np.asarray(y_eval)
    labels = np.asarray(classes)
    counts = np.array([np.count_nonzero(train == label) for label in labels], dtype=np.float64)
    frequencies = counts / counts.sum() if counts.sum() else np.full(labels.size, 1.0 / labels.size)
    majority = labels[int(np.argmax(counts))]
    pred = np.full(truth.shape, majority, dtype=labels.dtype)
    proba = np.tile(frequencies, (truth.size, 1))
    return classification_metrics(truth, pred, proba, labels)


def ratio_to_baseline(metrics: Metrics, baseline: Metrics, name: str) -> float | None:
    """``metrics[name] / baseline[name]``: below 1 is better for a ``"min"`` metric, above 1 for ``"max"``.

    ``None`` when either value is missing or the baseline is zero.
    """
    value, base = metrics.get(name), baseline.get(name)
    if value is None or base is None or base == 0:
        return None
    return value / base
