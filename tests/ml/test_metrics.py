"""Metrics: values against hand computations, MAPE's zero-target rule, undefined cases, baselines."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from headwater.ml.metrics import (
    CLASSIFICATION_METRICS,
    DIRECTIONS,
    REGRESSION_METRICS,
    classification_baseline,
    classification_metrics,
    mape,
    ratio_to_baseline,
    regression_baseline,
    regression_metrics,
)


def test_regression_metrics_by_hand() -> None:
    truth = [1.0, 2.0, 3.0, 4.0]
    pred = [1.0, 2.0, 3.0, 6.0]
    m = regression_metrics(truth, pred)
    assert m["n"] == 4
    assert m["rmse"] == pytest.approx(1.0)  # sqrt(4 / 4)
    assert m["mae"] == pytest.approx(0.5)
    assert m["r2"] == pytest.approx(1 - 4 / 5)  # SSE 4, SST 5
    assert m["mape"] == pytest.approx((2 / 4) / 4)
    assert set(REGRESSION_METRICS) <= set(m)


def test_mape_leaves_zero_targets_out_and_says_how_many() -> None:
    m = regression_metrics([0.0, 10.0, 20.0], [5.0, 11.0, 18.0])
    assert m["mape"] == pytest.approx((0.1 + 0.1) / 2)
    assert m["mape_zero_targets"] == 1
    assert mape([0.0, 0.0], [1.0, 2.0]) is None


def test_undefined_metrics_are_none_and_the_result_is_json() -> None:
    assert regression_metrics([], [])["rmse"] is None
    assert regression_metrics([3.0], [2.0])["r2"] is None
    one_class = classification_metrics([1, 1], [1, 0], [[0.2, 0.8], [0.6, 0.4]], [0, 1])
    assert one_class["roc_auc"] is None
    assert one_class["accuracy"] == 0.5
    json.dumps(one_class, allow_nan=False)


def test_binary_classification_metrics() -> None:
    truth = np.array([0, 0, 1, 1, 1])
    proba1 = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
    pred = (proba1 >= 0.5).astype(int)
    m = classification_metrics(truth, pred, np.column_stack([1 - proba1, proba1]), [0, 1])
    assert m["accuracy"] == pytest.approx(3 / 5)
    # positive-class F1: tp=2, fp=1, fn=1
    assert m["f1"] == pytest.approx(2 / 3)
    # pairs (neg, pos) ranked right: (0.1 < all three), (0.6 > 0.4 wrong, < 0.8, < 0.9) -> 5 of 6
    assert m["roc_auc"] == pytest.approx(5 / 6)
    expected_ll = -np.mean(np.log([0.9, 0.4, 0.4, 0.8, 0.9]))
    assert m["log_loss"] == pytest.approx(expected_ll)
    assert set(CLASSIFICATION_METRICS) <= set(m)


def test_string_labels_and_multiclass() -> None:
    classes = np.array(["a", "b", "c"])
    truth = np.array(["a", "b", "c", "a"])
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3]])
    pred = classes[proba.argmax(axis=1)]
    m = classification_metrics(truth, pred, proba, classes)
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["roc_auc"] is not None and 0.5 < m["roc_auc"] <= 1.0
    assert m["log_loss"] is not None and m["log_loss"] > 0
    # a class missing from the evaluated rows: log loss still works, ROC AUC is undefined
    m2 = classification_metrics(truth[:2], pred[:2], proba[:2], classes)
    assert m2["log_loss"] is not None
    assert m2["roc_auc"] is None


def test_baselines_predict_the_training_mean_and_majority() -> None:
    base = regression_baseline([1.0, 3.0], [2.0, 4.0])  # always predicts 2
    assert base["rmse"] == pytest.approx(math.sqrt(2.0))
    assert base["mae"] == pytest.approx(1.0)
    cbase = classification_baseline([1, 1, 1, 0], [1, 0], [0, 1])
    assert cbase["accuracy"] == 0.5
    assert cbase["roc_auc"] == 0.5  # constant scores rank nothing
    assert cbase["log_loss"] == pytest.approx(-(math.log(0.75) + math.log(0.25)) / 2)


def test_ratio_to_baseline_and_directions() -> None:
    assert ratio_to_baseline({"rmse": 1.0}, {"rmse": 4.0}, "rmse") == 0.25
    assert ratio_to_baseline({"rmse": None}, {"rmse": 4.0}, "rmse") is None
    assert ratio_to_baseline({"rmse": 1.0}, {"rmse": 0.0}, "rmse") is None
    assert set(DIRECTIONS) == set(REGRESSION_METRICS) | set(CLASSIFICATION_METRICS)
