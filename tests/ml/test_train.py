"""The training helper on a synthetic house-sales frame: sane metrics, features fitted on train only, records."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from threadpoolctl import threadpool_limits

from headwater.ml.features import FeatureSet
from headwater.ml.registry import BetterThanChampion
from headwater.ml.registry_sql import SqlModelRegistry
from headwater.ml.split import frame_hash, split
from headwater.ml.train import TrainingError, TrainResult, content_hash, json_safe_params, train
from headwater.ml.transforms import Feature, Impute, OneHot, Ordinal
from headwater.store.sql import open_store

ZIPCODES = [f"980{n:02d}" for n in range(1, 13)]


def house_sales(n: int = 3000, seed: int = 42) -> pl.DataFrame:
    """Price driven by sqft, grade and zipcode, with noise; some sqft missing; a sale date rising with the row."""
    rng = np.random.default_rng(seed)
    sqft = rng.gamma(shape=6.0, scale=350.0, size=n) + 400
    grade = rng.integers(3, 13, size=n)
    zip_index = rng.integers(0, len(ZIPCODES), size=n)
    zip_effect = np.linspace(-150_000, 250_000, len(ZIPCODES))[zip_index]
    price = 150.0 * sqft + 40_000.0 * grade + zip_effect + rng.normal(0, 40_000, size=n) + 200_000
    sqft_with_gaps = np.where(rng.random(n) < 0.05, np.nan, sqft)
    return pl.DataFrame(
        {
            "sqft": pl.Series(sqft_with_gaps).fill_nan(None),
            "grade": grade,
            "zipcode": np.array(ZIPCODES)[zip_index],
            "sold_on": [dt.date(2014, 5, 1) + dt.timedelta(days=int(d)) for d in np.sort(rng.integers(0, 365, n))],
            "price": price,
        }
    )


def house_features() -> FeatureSet:
    return FeatureSet(
        "house_prices",
        inputs={"sqft": pl.Float64, "grade": pl.Int64, "zipcode": pl.String},
        features=[
            Impute("sqft", "median"),
            Feature("grade", "grade"),
            OneHot("zipcode"),
        ],
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The test machine's two cores are shared: OpenMP threads fighting over them make small fits 5-10x slower.
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return house_sales()


def _assert_complete_record(result: TrainResult) -> None:
    assert set(result.metrics) == {"validation", "test"}
    for part in ("validation", "test"):
        for name in ("rmse", "mae", "r2", "mape"):
            assert result.metrics[part][name] is not None
            assert result.baselines[part][name] is not None
    assert set(result.importances) == set(result.feature_names) == set(result.output_schema)
    assert len(result.feature_names) == 2 + len(ZIPCODES) + 2  # sqft, grade, one-hot + other + null
    assert set(result.timings) == {
        "split",
        "profile",
        "fit_features",
        "transform",
        "fit_estimator",
        "evaluate",
        "importances",
        "lineage",
        "total",
    }
    assert all(seconds >= 0 for seconds in result.timings.values())
    assert result.profile["profile_version"] == 1
    assert result.profile["row_count"] == result.split["sizes"]["train"] == 2100
    assert result.lineage["feature_source_hash"] == house_features().source_hash()
    assert {"python", "polars", "numpy", "scikit-learn", "lightgbm"} <= set(result.lineage["packages"])
    registration = result.to_registration()
    json.dumps({k: v for k, v in registration.items() if k != "artifact"}, allow_nan=False)


def test_histgradientboosting_regression_beats_the_mean(frame: pl.DataFrame) -> None:
    estimator = HistGradientBoostingRegressor(max_iter=60, learning_rate=0.15)
    result = train(frame, target="price", features=house_features(), estimator=estimator, seed=3)
    ratio = result.ratio_to_baseline("rmse", "test")
    assert ratio is not None and ratio < 0.7
    assert result.ratio_to_baseline("rmse", "validation") < 0.7  # type: ignore[operator]
    assert result.metrics["test"]["r2"] > 0.5  # type: ignore[operator]
    _assert_complete_record(result)
    # HGB has no native importances: permutation on a bounded validation sample, sqft and grade matter most.
    assert result.importance_method == "permutation"
    assert result.importance_details == {
        "rows": 600,
        "repeats": 5,
        "scoring": "neg_root_mean_squared_error",
        "rows_from": "validation",
    }
    top_two = sorted(result.importances, key=result.importances.__getitem__, reverse=True)[:2]
    assert set(top_two) == {"sqft", "grade"}
    # the caller's estimator is left unfitted; the fitted clone got the seed
    assert not hasattr(estimator, "n_iter_")
    assert result.params["random_state"] == 3
    assert result.params["max_iter"] == 60


def test_lightgbm_regression_beats_the_mean_with_native_importances(frame: pl.DataFrame) -> None:
    estimator = LGBMRegressor(n_estimators=80, learning_rate=0.1, num_leaves=15, verbose=-1, n_jobs=1)
    result = train(frame, target="price", features=house_features(), estimator=estimator)
    ratio = result.ratio_to_baseline("rmse")
    assert ratio is not None and ratio < 0.7
    _assert_complete_record(result)
    assert result.importance_method == "lightgbm_gain"
    assert result.importances["sqft"] > 0 and result.importances["grade"] > 0
    assert result.lineage["estimator_class"] == "lightgbm.sklearn.LGBMRegressor"
    # predictions go through the same fitted features
    parts = split(frame, seed=0)
    assert np.allclose(
        result.predict(parts.test),
        result.estimator.predict(result.features.transform(parts.test).cast(pl.Float64).to_numpy()),
    )


def test_features_are_fitted_on_the_training_split_only(frame: pl.DataFrame) -> None:
    # A time split: later sales come last. Shift their sqft up so any leak moves the median.
    shifted = frame.with_columns(
        pl.when(pl.col("sold_on") >= dt.date(2015, 1, 1)).then(pl.col("sqft") * 3).otherwise(pl.col("sqft"))
    )
    result = train(
        shifted,
        target="price",
        features=house_features(),
        estimator=HistGradientBoostingRegressor(max_iter=10),
        time_column="sold_on",
    )
    parts = split(shifted, time_column="sold_on")
    train_median = parts.train.get_column("sqft").median()
    all_median = shifted.get_column("sqft").median()
    assert train_median != pytest.approx(all_median, rel=1e-3)
    state = result.features.state()
    imputed = next(f for f in state["features"] if f["name"] == "sqft")["state"]["value"]
    assert imputed == train_median
    assert result.split["method"] == "time"
    assert result.split["boundaries"]["train_end"] < result.split["boundaries"]["validation_end"]
    # the profile is of the raw training split too
    assert result.profile["columns"]["sqft"]["median"] == train_median


def test_any_sklearn_estimator_is_accepted(frame: pl.DataFrame) -> None:
    result = train(frame, target="price", features=house_features(), estimator=LinearRegression())
    assert result.ratio_to_baseline("rmse") < 0.7  # type: ignore[operator]
    assert result.importance_method == "permutation"
    assert "random_state" not in result.params


def _labelled(frame: pl.DataFrame, labels: tuple[object, object]) -> pl.DataFrame:
    threshold = frame.get_column("price").median()
    return frame.with_columns(
        pl.when(pl.col("price") > threshold).then(pl.lit(labels[1])).otherwise(pl.lit(labels[0])).alias("expensive")
    ).drop("price")


@pytest.mark.parametrize(
    "estimator",
    [
        HistGradientBoostingClassifier(max_iter=40),
        LGBMClassifier(n_estimators=60, num_leaves=15, verbose=-1, n_jobs=1),
    ],
    ids=["hgb", "lightgbm"],
)
def test_binary_classification(frame: pl.DataFrame, estimator: object) -> None:
    result = train(
        _labelled(frame, (0, 1)),
        target="expensive",
        features=house_features(),
        estimator=estimator,
        task="classification",
    )
    for part in ("validation", "test"):
        assert result.metrics[part]["roc_auc"] > 0.8  # type: ignore[operator]
        assert result.metrics[part]["accuracy"] > result.baselines[part]["accuracy"]  # type: ignore[operator]
        assert result.metrics[part]["log_loss"] < result.baselines[part]["log_loss"]  # type: ignore[operator]
        assert result.metrics[part]["f1"] is not None
    assert result.classes == [0, 1]
    signature = result.signature()
    assert (signature["outputs"], signature["classes"]) == ([{"name": "expensive", "dtype": "Int32"}], [0, 1])
    assert set(result.importances) == set(result.feature_names)


def test_string_labels_and_permutation_by_log_loss(frame: pl.DataFrame) -> None:
    result = train(
        _labelled(frame, ("cheap", "dear")),
        target="expensive",
        features=house_features(),
        estimator=HistGradientBoostingClassifier(max_iter=20),
        task="classification",
        importance_sample=300,
        importance_repeats=2,
    )
    assert result.classes == ["cheap", "dear"]
    assert result.metrics["test"]["roc_auc"] > 0.8  # type: ignore[operator]
    assert result.importance_details["scoring"] == "neg_log_loss"
    assert result.importance_details["rows"] == 300


def test_signature_and_registration_payload(frame: pl.DataFrame) -> None:
    result = train(frame, target="price", features=house_features(), estimator=LinearRegression())
    signature = result.signature()
    assert signature["inputs"] == [
        {"name": "sqft", "dtype": "Float64"},
        {"name": "grade", "dtype": "Int64"},
        {"name": "zipcode", "dtype": "String"},
    ]
    assert signature["features"][0] == {"name": "sqft", "dtype": "Float64"}
    assert signature["outputs"] == [{"name": "price", "dtype": "Float64"}]
    assert signature["task"] == "regression"
    payload = result.to_registration({"dag_id": "houses", "run_id": "r1", "task_id": "fit"})
    assert set(payload) == {"artifact", "signature", "profile", "metrics", "params", "lineage"}
    assert payload["artifact"].estimator is result.estimator
    assert payload["artifact"].feature_state["format"] == "headwater.features/1"
    assert set(payload["metrics"]) == {"validation", "test", "baseline", "importances", "timings"}
    lineage = payload["lineage"]
    assert (lineage["dag_id"], lineage["run_id"], lineage["task_id"]) == ("houses", "r1", "fit")
    assert lineage["split"]["sizes"] == {"train": 2100, "validation": 600, "test": 300}
    parts = split(frame, seed=0)
    assert lineage["splits"]["test"] == {"data_hash": frame_hash(parts.test), "rows": 300}
    json.dumps({k: v for k, v in payload.items() if k != "artifact"}, allow_nan=False)


def test_register_load_and_gate_in_the_real_registry(frame: pl.DataFrame, tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'headwater.db'}", create=True) as store:
        registry = SqlModelRegistry(store, tmp_path / "models")
        weak = HistGradientBoostingRegressor(max_iter=5)
        first = train(frame, target="price", features=house_features(), estimator=weak)
        v1 = first.register(registry, "house_prices", author="ana", lineage={"run_id": "r1"})
        assert (v1.version, v1.author, v1.lineage["run_id"]) == (1, "ana", "r1")
        assert v1.metric("test", "rmse") == first.metrics["test"]["rmse"]
        assert v1.signature == first.signature() and v1.profile == first.profile
        gate = BetterThanChampion("rmse", by=0.05)
        assert registry.evaluate_policy("house_prices", 1, gate, promote=True).approved

        # price is additive in the features: a linear model beats five boosting rounds by far
        second = train(frame, target="price", features=house_features(), estimator=LinearRegression())
        v2 = second.register(registry, "house_prices", author="ana")
        decision = registry.evaluate_policy("house_prices", v2.version, gate, promote=True)
        assert decision.approved, decision.reason  # same test split (same data hash), lower RMSE
        third = train(frame, target="price", features=house_features(), estimator=weak)
        v3 = third.register(registry, "house_prices", author="ana")
        assert not registry.evaluate_policy("house_prices", v3.version, gate, promote=True).approved
        assert registry.get("house_prices", 3).status == "rejected"
        loaded = registry.load("house_prices@champion")
        assert loaded.version.version == 2
        features = house_features().load_state(loaded.feature_state)
        parts = split(frame, seed=0)
        matrix = features.transform(parts.test).cast(pl.Float64).to_numpy()
        assert np.allclose(loaded.estimator.predict(matrix), second.predict(parts.test))


def test_data_paths_are_hashed_into_the_lineage(frame: pl.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "sales.parquet"
    frame.write_parquet(path)
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "a.csv").write_text("x\n1\n")
    (folder / "b.csv").write_text("x\n2\n")
    result = train(
        pl.read_parquet(path),
        target="price",
        features=house_features(),
        estimator=LinearRegression(),
        data_paths=[str(path), str(folder)],
    )
    data = result.lineage["data"]
    assert data[0] == {
        "path": str(path),
        "sha256": "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(),
        "bytes": path.stat().st_size,
    }
    assert data[1]["bytes"] == 8
    # a folder's hash covers file names as well as contents
    (folder / "b.csv").rename(folder / "c.csv")
    assert content_hash(str(folder))["sha256"] != data[1]["sha256"]
    with pytest.raises(TrainingError, match="does not exist"):
        content_hash(str(tmp_path / "nowhere.csv"))


def test_params_are_json_data() -> None:
    params = json_safe_params(LGBMRegressor(n_estimators=5, class_weight={"a": 1.0}, min_split_gain=float("inf")))
    assert params["n_estimators"] == 5
    assert params["class_weight"] == {"a": 1.0}
    assert params["min_split_gain"] == "inf"
    json.dumps(params, allow_nan=False)


def test_errors_name_the_problem(frame: pl.DataFrame) -> None:
    with pytest.raises(TrainingError, match="'cost' is not in the frame"):
        train(frame, target="cost", features=house_features(), estimator=LinearRegression())
    with pytest.raises(TrainingError, match="task must be one of"):
        train(frame, target="price", features=house_features(), estimator=LinearRegression(), task="ranking")
    with pytest.raises(TrainingError, match="reads the target column 'grade'"):
        train(frame, target="grade", features=house_features(), estimator=LinearRegression())
    with_gaps = frame.with_columns(pl.when(pl.col("grade") == 5).then(None).otherwise(pl.col("price")).alias("price"))
    with pytest.raises(TrainingError, match="null or NaN value"):
        train(with_gaps, target="price", features=house_features(), estimator=LinearRegression())
    text = FeatureSet("t", inputs={"zipcode": pl.String}, features=[Feature("zipcode", "zipcode")])
    with pytest.raises(TrainingError, match="not numeric"):
        train(frame, target="price", features=text, estimator=LinearRegression())
    with pytest.raises(TrainingError, match="regression target 'zipcode'"):
        train(frame, target="zipcode", features=house_features_without_zip(), estimator=LinearRegression())


def house_features_without_zip() -> FeatureSet:
    return FeatureSet(
        "nozip",
        inputs={"sqft": pl.Float64},
        features=[Impute("sqft"), Ordinal(pl.col("sqft").cast(pl.String), name="s")],
    )


class _MeanCentred:
    """A feature set written without headwater.ml.features: the protocol train() needs is enough."""

    def __init__(self, mean: float | None = None) -> None:
        self.input_schema = {"sqft": pl.Float64()}
        self.output_schema = {"sqft_centred": pl.Float64()}
        self.mean = mean

    def fit(self, frame: pl.DataFrame) -> _MeanCentred:
        return _MeanCentred(frame.get_column("sqft").mean())  # type: ignore[arg-type]

    def transform(self, frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select((pl.col("sqft").fill_null(self.mean) - self.mean).alias("sqft_centred"))

    def state(self) -> dict[str, object]:
        return {"mean": self.mean}

    def source_hash(self) -> str:
        return "sha256:test-double"


def test_any_object_with_the_feature_protocol_works(frame: pl.DataFrame) -> None:
    result = train(frame, target="price", features=_MeanCentred(), estimator=LinearRegression())
    parts = split(frame, seed=0)
    assert result.features.state() == {"mean": parts.train.get_column("sqft").mean()}
    assert result.feature_names == ["sqft_centred"]
    assert result.lineage["feature_source_hash"] == "sha256:test-double"
    assert result.lineage["feature_set"] is None
    assert result.ratio_to_baseline("rmse") < 1.0  # type: ignore[operator]
