"""Predictions of a scikit-learn ``HistGradientBoostingRegressor`` for a few rows, without its per-call cost.

``estimator.predict`` on one row costs ~1.3 ms on this project's benchmark machine for
100 trees, nearly all fixed: input checks, then one Cython call per tree (allocation,
OpenMP set-up), ~13 us each. A REST request scores one record, so that fixed cost was a
third of the server's CPU per request. :func:`small_batch_predictor` reads the fitted
trees once into Python tuples and walks them per row in Python (~0.1 ms a row for 100
trees), which wins below ~10 rows; larger inputs keep ``estimator.predict``.

The walk is the one of scikit-learn's ``_predict_one_from_raw_data`` (a NaN follows
``missing_go_to_left``, else ``value <= num_threshold`` goes left) and the sum is done in
the same order from the same start (``0.0 + baseline``, then each tree's leaf value in
``_predictors`` order), all in IEEE float64, so the result is the same bit for bit
(property-tested against ``estimator.predict`` in ``tests/ml/test_serving_treewalk.py``).
Only the plain case is handled: a regressor with one tree per iteration, no categorical
split, an identity link (squared error); anything else returns ``None`` and keeps
scikit-learn's path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

MAX_ROWS = 8  # up to this many rows the walk is faster (measured: 0.1 ms a row against 1.3 ms + 7 us a row)

# One node: (is_leaf, leaf value, feature index, threshold, NaN goes left, left child, right child)
_Node = tuple[bool, float, int, float, bool, int, int]


def small_batch_predictor(estimator: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """A function equal to ``estimator.predict`` on float64 matrices of up to :data:`MAX_ROWS` rows, or None.

    None when the estimator is not a plain fitted ``HistGradientBoostingRegressor`` (see the
    module docstring); the caller then uses ``estimator.predict``.
    """
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
    except ImportError:  # pragma: no cover - scikit-learn is a dependency of the ml extra
        return None
    if type(estimator) is not HistGradientBoostingRegressor:
        return None
    predictors = getattr(estimator, "_predictors", None)
    baseline = getattr(estimator, "_baseline_prediction", None)
    link = getattr(getattr(estimator, "_loss", None), "link", None)
    if (predictors is None or baseline is None or np.shape(baseline) != (1, 1)
            or getattr(estimator, "n_trees_per_iteration_", None) != 1
            or type(link).__name__ != "IdentityLink"):
        return None
    trees: list[list[_Node]] = []
    for per_iteration in predictors:
        if len(per_iteration) != 1:
            return None
        nodes = per_iteration[0].nodes
        if nodes["is_categorical"].any():
            return None
        trees.append(list(zip(
            nodes["is_leaf"].astype(bool).tolist(), nodes["value"].tolist(), nodes["feature_idx"].tolist(),
            nodes["num_threshold"].tolist(), nodes["missing_go_to_left"].astype(bool).tolist(),
            nodes["left"].tolist(), nodes["right"].tolist(), strict=True)))
    start = float((np.zeros(1) + baseline[0, 0])[0])  # sklearn starts from np.zeros(...) + baseline
    n_features = int(estimator.n_features_in_)

    def walk(row: list[float]) -> float:
        total = start
        for nodes in trees:
            node = nodes[0]
            while not node[0]:
                value = row[node[2]]
                if value != value:  # NaN
                    node = nodes[node[5] if node[4] else node[6]]
                elif value <= node[3]:
                    node = nodes[node[5]]
                else:
                    node = nodes[node[6]]
            total += node[1]
        return total

    def predict(x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != n_features or x.dtype != np.float64:
            return np.asarray(estimator.predict(x))  # not the matrix this path is for: sklearn checks it
        return np.array([walk(row) for row in x.tolist()], dtype=np.float64)

    return predict
