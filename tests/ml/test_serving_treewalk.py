"""The few-rows path of REST scoring (headwater.ml.treewalk) predicts exactly what scikit-learn does."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from headwater.ml.treewalk import MAX_ROWS, small_batch_predictor

N_FEATURES = 5


def _training(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, N_FEATURES))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values: the NaN direction is learnt per node
    y = np.nan_to_num(x[:, 0]) * 3 + np.nan_to_num(x[:, 1]) ** 2 + rng.normal(size=400)
    return x, y


@pytest.fixture(scope="module")
def model() -> HistGradientBoostingRegressor:
    x, y = _training(7)
    return HistGradientBoostingRegressor(max_iter=30, max_leaf_nodes=15, early_stopping=False).fit(x, y)


@pytest.fixture(scope="module")
def thresholds(model: HistGradientBoostingRegressor) -> list[float]:
    # Values exactly on split thresholds, to test the "<=" side of every comparison.
    nodes = np.concatenate([p[0].nodes for p in model._predictors])
    return sorted(set(nodes["num_threshold"][nodes["is_leaf"] == 0].tolist()))


@pytest.fixture(scope="module")
def walk(model: HistGradientBoostingRegressor) -> Any:
    predict = small_batch_predictor(model)
    assert predict is not None
    return predict


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=np.float64).tobytes()


cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=-3, max_value=3),
    st.just(math.nan),
    st.integers(min_value=0, max_value=10_000),  # an index into the thresholds
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(cells, min_size=N_FEATURES, max_size=N_FEATURES), min_size=1, max_size=MAX_ROWS))
def test_the_walk_equals_sklearn_bit_for_bit(
    model: HistGradientBoostingRegressor, walk: Any, thresholds: list[float], rows: list[list[float | int]]
) -> None:
    x = np.array([[thresholds[c % len(thresholds)] if isinstance(c, int) else c for c in row] for row in rows],
                 dtype=np.float64)
    assert _bits(walk(x)) == _bits(model.predict(x))


def test_the_walk_equals_sklearn_on_the_training_rows(model: HistGradientBoostingRegressor) -> None:
    x, _ = _training(7)
    predict = small_batch_predictor(model)
    assert predict is not None
    ours = np.concatenate([predict(x[i:i + MAX_ROWS]) for i in range(0, len(x), MAX_ROWS)])
    assert _bits(ours) == _bits(model.predict(x))


def test_models_the_walk_does_not_cover_keep_sklearn() -> None:
    x, y = _training(3)
    categorical = np.where(np.isnan(x[:, :1]), np.nan, np.abs(np.round(x[:, :1] * 2)))
    with_categories = HistGradientBoostingRegressor(max_iter=5, categorical_features=[0]).fit(
        np.hstack([categorical, x[:, 1:]]), y)
    classifier = HistGradientBoostingClassifier(max_iter=5).fit(np.nan_to_num(x), y > 0)
    poisson = HistGradientBoostingRegressor(max_iter=5, loss="poisson").fit(np.nan_to_num(x), np.abs(y))
    assert small_batch_predictor(with_categories) is None
    assert small_batch_predictor(classifier) is None
    assert small_batch_predictor(poisson) is None  # a log link: predict is exp(raw), not the raw sum
    assert small_batch_predictor(object()) is None


def test_a_matrix_of_another_shape_or_type_goes_to_sklearn(model: HistGradientBoostingRegressor) -> None:
    predict = small_batch_predictor(model)
    assert predict is not None
    x32 = np.zeros((2, N_FEATURES), dtype=np.float32)
    assert _bits(predict(x32)) == _bits(model.predict(x32))
    with pytest.raises(ValueError, match="features"):
        predict(np.zeros((1, N_FEATURES + 1)))  # sklearn's own error for a wrong width


def test_a_scorer_gives_a_few_rows_what_it_gives_them_in_a_big_frame() -> None:
    # The whole few-rows path of REST scoring (rows to numpy, the tree walk) against the
    # batch path (a Polars cast to a matrix, sklearn's predict), bit for bit, nulls included.
    from headwater.ml.registry_sql import memory_registry
    from headwater.ml.scoring import load_scorer
    from headwater.ml.train import train
    from tests.ml.house_features import house_features, synthetic_houses

    houses = synthetic_houses(300, seed=4)
    result = train(houses, target="price", features=house_features(),
                   estimator=HistGradientBoostingRegressor(max_iter=15, random_state=0), seed=0,
                   importance_sample=20, importance_repeats=1, target_transform="log1p")
    registry = memory_registry()
    result.register(registry, "houses", author="test")
    scorer = load_scorer(registry, "houses:1")
    assert scorer.small_predict is not None and scorer.rows_matrix
    frame = synthetic_houses(60, seed=5).drop("price")
    assert frame["bathrooms"].null_count() > 0  # a null feature value goes through the few-rows path too
    whole = scorer.score(frame)
    assert len(whole) > MAX_ROWS  # the whole frame takes sklearn's path
    for start, n in zip(range(0, 60, 5), [1, 2, 3, 5, 8, 1, 4, 6, 7, 2, 3, 8], strict=True):
        assert _bits(scorer.score(frame.slice(start, n))) == _bits(whole[start:start + n]), (start, n)
