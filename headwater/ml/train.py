"""The training helper: split, fit features on train only, fit an estimator, evaluate, record.

``train(...)`` is a plain function, so it runs inside a ``@task`` as it is. It does, in order
(each step timed into :attr:`TrainResult.timings`):

1. ``split``: train / validation / test (seeded random, or by time; :mod:`headwater.ml.split`);
2. ``profile``: the profile of the raw training split, target included (:mod:`headwater.ml.profile`);
3. ``fit_features``: the feature set's fitted state is learned on the **training split only**;
4. ``transform``: the three splits go through the frozen features;
5. ``fit_estimator``: a clone of ``estimator`` is fitted (the caller's object is left untouched;
   a ``random_state`` left at None is set to ``seed`` so a run is reproducible);
6. ``evaluate``: metrics on validation and test, beside the training-mean / majority baseline;
7. ``importances``: LightGBM's native gain importance; ``feature_importances_`` for other
   estimators that have one; otherwise permutation importance on a seeded sample of at most
   ``importance_sample`` validation rows (scored by RMSE, or log loss for classifiers with
   ``predict_proba``);
8. ``lineage``: the feature source hash, package versions and the content hash of every
   input path given in ``data_paths``.

The estimator sees the feature outputs as a float64 NumPy matrix (nulls as NaN, which both
HistGradientBoosting and LightGBM handle), in :attr:`TrainResult.feature_names` order.
"""

from __future__ import annotations

import hashlib
import math
import platform
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Protocol

import numpy as np
import polars as pl

from headwater.errors import UserError
from headwater.ml import metrics as m
from headwater.ml import target as tt
from headwater.ml.artifacts import ModelArtifact
from headwater.ml.profile import profile
from headwater.ml.registry import ModelRegistry, ModelVersion
from headwater.ml.split import DEFAULT_FRACTIONS, DEFAULT_SEED, Splits, split

TASKS = ("regression", "classification")
#: Packages whose versions are recorded with every model (those installed).
RECORDED_PACKAGES = ("headwater", "polars", "numpy", "scikit-learn", "lightgbm", "scipy")


class TrainingError(UserError):
    """Training was asked for with a bad argument or data it cannot use (missing target, nulls, text features)."""


class FittedFeatures(Protocol):
    """What training needs from a fitted feature set (:class:`headwater.ml.features.FittedFeatureSet`)."""

    @property
    def output_schema(self) -> Mapping[str, pl.DataType]: ...

    def transform(self, frame: pl.DataFrame) -> pl.DataFrame: ...

    def state(self) -> dict[str, Any]: ...


class Features(Protocol):
    """What training needs from a feature definition (:class:`headwater.ml.features.FeatureSet`)."""

    input_schema: dict[str, pl.DataType]

    def fit(self, frame: pl.DataFrame) -> FittedFeatures: ...

    def source_hash(self) -> str: ...


@dataclass(frozen=True)
class TrainResult:
    """Everything a training run produced; every field but ``estimator`` and ``features`` is JSON data.

    ``metrics`` and ``baselines`` map ``"validation"``/``"test"`` (the non-empty parts) to
    metric dicts (:mod:`headwater.ml.metrics`). ``importances`` maps every feature output to a
    number; ``importance_method`` says how it was computed (``"lightgbm_gain"``,
    ``"native"``, ``"permutation"``).
    """

    task: str
    target: str
    target_dtype: str
    estimator: Any
    features: FittedFeatures
    feature_names: list[str]
    input_schema: dict[str, str]
    output_schema: dict[str, str]
    classes: list[Any] | None
    metrics: dict[str, m.Metrics]
    baselines: dict[str, m.Metrics]
    params: dict[str, Any]
    importances: dict[str, float]
    importance_method: str
    importance_details: dict[str, Any]
    profile: dict[str, Any]
    split: dict[str, Any]
    timings: dict[str, float]
    lineage: dict[str, Any] = field(default_factory=dict)
    target_transform: str | None = None

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Predictions for a raw frame (same columns as training), through the fitted features."""
        raw = np.asarray(self.estimator.predict(_matrix(self.features.transform(frame), self.feature_names)))
        return tt.inverse(self.target_transform, raw) if self.task == "regression" else raw

    def ratio_to_baseline(self, metric: str, part: str = "test") -> float | None:
        """``metric`` on ``part`` divided by the baseline's (RMSE 0.5 means half the mean predictor's error)."""
        return m.ratio_to_baseline(self.metrics.get(part, {}), self.baselines.get(part, {}), metric)

    def signature(self) -> dict[str, Any]:
        """The model's signature: raw input columns and dtypes, feature outputs, and what it predicts.

        ``{"inputs": [{"name", "dtype"}], "features": [{"name", "dtype"}], "outputs": [{"name", "dtype"}],
        "task": ..., "classes": [...]}`` (``classes`` for classification only).
        """
        result: dict[str, Any] = {
            "inputs": [{"name": name, "dtype": dtype} for name, dtype in self.input_schema.items()],
            "features": [{"name": name, "dtype": dtype} for name, dtype in self.output_schema.items()],
            "outputs": [{"name": self.target, "dtype": self.target_dtype}],
            "task": self.task,
        }
        if self.target_transform is not None:
            result["target_transform"] = self.target_transform
        if self.classes is not None:
            result["classes"] = list(self.classes)
        return result

    def to_registration(self, lineage: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The keyword arguments of ``ModelRegistry.register`` (after the name), all but the artifact JSON data.

        Where the records go, following the registry's conventions:

        - ``metrics``: ``{"validation": {...}, "test": {...}}`` (what policies compare), plus
          ``"baseline": {"validation": {...}, "test": {...}}``, ``"importances": {"method", "details",
          "values"}`` and ``"timings": {step: seconds}``;
        - ``lineage``: this run's lineage (feature source hash, packages, data paths, and
          ``splits[part]["data_hash"]``, which ``BetterThanChampion`` compares), the split's
          description under ``"split"``, then ``lineage`` given here (DAG id, run id, task id).
        """
        merged_lineage = {**self.lineage, "split": self.split, **dict(lineage or {})}
        return {
            "artifact": ModelArtifact(estimator=self.estimator, feature_state=self.features.state()),
            "signature": self.signature(),
            "profile": self.profile,
            "metrics": {
                **self.metrics,
                "baseline": self.baselines,
                "importances": {
                    "method": self.importance_method,
                    "details": self.importance_details,
                    "values": self.importances,
                },
                "timings": self.timings,
            },
            "params": self.params,
            "lineage": merged_lineage,
        }

    def register(
        self,
        registry: ModelRegistry,
        name: str,
        *,
        author: str = "",
        lineage: Mapping[str, Any] | None = None,
        allow_pickle: bool = False,
    ) -> ModelVersion:
        """Register this model as a new version of ``name`` in ``registry`` (a ``ModelRegistry``); returns the version.

        ``lineage`` adds what only the caller knows, e.g. ``{"dag_id": ..., "run_id": ..., "task_id": ...}``.
        The artifact format is chosen by the registry (LightGBM text, skops); ``allow_pickle``
        is for estimators neither format can hold.
        """
        return registry.register(name, **self.to_registration(lineage), author=author, allow_pickle=allow_pickle)


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - start


def train(
    frame: pl.DataFrame,
    *,
    target: str,
    features: Features,
    estimator: Any,
    task: str = "regression",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    time_column: str | None = None,
    splits: Splits | None = None,
    seed: int = DEFAULT_SEED,
    data_paths: Sequence[str] | str | None = None,
    importance_sample: int = 2000,
    importance_repeats: int = 5,
    target_transform: str | None = None,
) -> TrainResult:
    """Train ``estimator`` on ``frame`` through ``features`` and record the run (steps in the module docstring).

    ``splits`` takes a split made beforehand (then ``fractions``, ``time_column`` and the
    split part of ``seed`` are unused). ``data_paths`` are the files ``frame`` was read from,
    hashed into the lineage. ``target_transform`` (``"log1p"`` or ``"log"``, regression only)
    fits the estimator on the transformed target; predictions and metrics are on the original scale.
    """
    tt.check(target_transform, task)
    _check_arguments(frame if splits is None else splits.train, target, features, task)
    timer = _Timer()
    started = time.perf_counter()

    with timer.step("split"):
        parts = splits if splits is not None else split(frame, fractions=fractions, seed=seed, time_column=time_column)
    for part_name, part in (("train", parts.train), ("validation", parts.validation), ("test", parts.test)):
        _check_target(part, target, part_name)
    if parts.train.height == 0:
        raise TrainingError("the training split is empty", hint="give more rows or a larger train fraction")

    with timer.step("profile"):
        train_profile = profile(parts.train)

    with timer.step("fit_features"):
        fitted = features.fit(parts.train)  # the training split only: no validation or test row shapes the state

    with timer.step("transform"):
        names = list(fitted.output_schema)
        _check_numeric(fitted.output_schema)
        x = {
            part_name: _matrix(fitted.transform(part), names)
            for part_name, part in (("train", parts.train), ("validation", parts.validation), ("test", parts.test))
        }
        y = {
            "train": _target(parts.train, target, task),
            "validation": _target(parts.validation, target, task),
            "test": _target(parts.test, target, task),
        }

    with timer.step("fit_estimator"):
        model = _prepare(estimator, seed)
        model.fit(x["train"], tt.forward(target_transform, y["train"]))

    with timer.step("evaluate"):
        classes = [_plain(c) for c in model.classes_] if task == "classification" else None
        results: dict[str, m.Metrics] = {}
        baselines: dict[str, m.Metrics] = {}
        for part_name in ("validation", "test"):
            if len(y[part_name]) == 0:
                continue
            results[part_name], baselines[part_name] = _evaluate(
                model, task, x[part_name], y[part_name], y["train"], target_transform
            )

    with timer.step("importances"):
        sample_from = "validation" if len(y["validation"]) else "train"
        # Permutation importance scores the estimator itself, so on the scale it was fitted on.
        y_fitted_scale = tt.forward(target_transform, y[sample_from])
        importances, method, details = _importances(
            model, task, names, x[sample_from], y_fitted_scale, seed, importance_sample, importance_repeats
        )
        details["rows_from"] = sample_from if method == "permutation" else None

    with timer.step("lineage"):
        lineage = _lineage(features, model, seed, data_paths)
        lineage["splits"] = parts.data_hashes()

    timer.timings["total"] = time.perf_counter() - started
    return TrainResult(
        task=task,
        target=target,
        target_dtype=str(parts.train.schema[target]),
        estimator=model,
        features=fitted,
        feature_names=names,
        input_schema={name: str(dtype) for name, dtype in features.input_schema.items()},
        output_schema={name: str(dtype) for name, dtype in fitted.output_schema.items()},
        classes=classes,
        metrics=results,
        baselines=baselines,
        params=json_safe_params(model),
        importances=importances,
        importance_method=method,
        importance_details=details,
        profile=train_profile,
        split=parts.describe(),
        timings=timer.timings,
        lineage=lineage,
        target_transform=target_transform,
    )


# -- checks ------------------------------------------------------------------------------


def _check_arguments(frame: pl.DataFrame, target: str, features: Features, task: str) -> None:
    if task not in TASKS:
        raise TrainingError(f"task must be one of {TASKS}, got {task!r}")
    if target not in frame.columns:
        raise TrainingError(
            f"target column {target!r} is not in the frame", hint=f"columns are: {', '.join(frame.columns)}"
        )
    if target in features.input_schema:
        raise TrainingError(
            f"the feature set reads the target column {target!r}",
            hint="remove it from the feature set's inputs: it is unknown at scoring time and leaks the answer",
        )


def _check_target(part: pl.DataFrame, target: str, part_name: str) -> None:
    column = part.get_column(target)
    bad = column.null_count() + (int(column.is_nan().sum()) if column.dtype.is_float() else 0)
    if bad:
        raise TrainingError(
            f"target column {target!r} has {bad} null or NaN value(s) in the {part_name} split",
            hint=f'drop those rows first, e.g. frame.filter(pl.col("{target}").is_not_null())',
        )


def _check_numeric(schema: Mapping[str, pl.DataType]) -> None:
    text = [name for name, dtype in schema.items() if not (dtype.is_numeric() or dtype == pl.Boolean)]
    if text:
        raise TrainingError(
            f"feature outputs {text} are not numeric; estimators take numbers",
            hint="encode them in the feature set (OneHot, Ordinal, FrequencyEncode)",
        )


# -- data --------------------------------------------------------------------------------


def _matrix(frame: pl.DataFrame, names: list[str]) -> np.ndarray:
    if not names:
        return np.empty((frame.height, 0), dtype=np.float64)
    return frame.select(pl.col(names).cast(pl.Float64)).to_numpy().astype(np.float64, copy=False)


def _target(frame: pl.DataFrame, target: str, task: str) -> np.ndarray:
    column = frame.get_column(target)
    if task == "regression":
        if not (column.dtype.is_numeric() or column.dtype == pl.Boolean):
            raise TrainingError(
                f"regression target {target!r} has dtype {column.dtype}", hint='use task="classification" for labels'
            )
        return column.cast(pl.Float64).to_numpy()
    return column.to_numpy()


def _prepare(estimator: Any, seed: int) -> Any:
    from sklearn.base import clone

    model = clone(estimator)
    params = model.get_params(deep=False)
    if "random_state" in params and params["random_state"] is None:
        model.set_params(random_state=seed)
    return model


def _evaluate(
    model: Any, task: str, x: np.ndarray, y: np.ndarray, y_train: np.ndarray, target_transform: str | None = None
) -> tuple[m.Metrics, m.Metrics]:
    if task == "regression":
        pred = tt.inverse(target_transform, np.asarray(model.predict(x), dtype=np.float64))
        return m.regression_metrics(y, pred), m.regression_baseline(y_train, y)
    classes = np.asarray(model.classes_)
    pred = np.asarray(model.predict(x))
    proba = model.predict_proba(x) if hasattr(model, "predict_proba") else None
    return m.classification_metrics(y, pred, proba, classes), m.classification_baseline(y_train, y, classes)


# -- importances -------------------------------------------------------------------------


def _is_lightgbm(model: Any) -> bool:
    return type(model).__module__.split(".")[0] == "lightgbm" and hasattr(model, "booster_")


def _importances(
    model: Any,
    task: str,
    names: list[str],
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    sample: int,
    repeats: int,
) -> tuple[dict[str, float], str, dict[str, Any]]:
    if _is_lightgbm(model):
        values = model.booster_.feature_importance(importance_type="gain")
        return _named(names, values), "lightgbm_gain", {"importance_type": "gain"}
    native = getattr(model, "feature_importances_", None)
    if native is not None:
        return _named(names, native), "native", {"attribute": "feature_importances_"}
    from sklearn.inspection import permutation_importance
    from threadpoolctl import threadpool_limits

    rows = min(sample, len(y))
    if rows == 0 or not names:
        return dict.fromkeys(names, 0.0), "permutation", {"rows": 0, "repeats": repeats, "scoring": None}
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(y), size=rows, replace=False))
    if task == "regression":
        scoring = "neg_root_mean_squared_error"
    else:
        # log loss needs every class in the sample; accuracy is the fallback that always works.
        scoring = "neg_log_loss" if hasattr(model, "predict_proba") and _all_classes(model, y[chosen]) else "accuracy"
    # One thread: these are many small predictions, where OpenMP start-up and synchronisation
    # cost more than the trees (measured 8x slower with 2 threads on a busy 2-core machine).
    with threadpool_limits(limits=1):
        result = permutation_importance(
            model, x[chosen], y[chosen], scoring=scoring, n_repeats=repeats, random_state=seed % 2**32
        )
    details = {"rows": rows, "repeats": repeats, "scoring": scoring}
    return _named(names, result.importances_mean), "permutation", details


def _all_classes(model: Any, y: np.ndarray) -> bool:
    return bool(np.isin(np.asarray(model.classes_), y).all())


def _named(names: list[str], values: Any) -> dict[str, float]:
    numbers = np.asarray(values, dtype=np.float64)
    return {name: (float(v) if math.isfinite(v) else 0.0) for name, v in zip(names, numbers, strict=True)}


# -- records -----------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _json_value(value: Any) -> Any:
    value = _plain(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return repr(value)  # classes, callables, nested estimators: a readable record, not a loadable one


def json_safe_params(estimator: Any) -> dict[str, Any]:
    """``estimator.get_params(deep=False)`` as JSON data; values that are not plain data become their ``repr``."""
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    return {str(name): _json_value(value) for name, value in sorted(params.items())}


def _package_versions(model: Any) -> dict[str, str]:
    names = list(RECORDED_PACKAGES)
    top = type(model).__module__.split(".")[0]
    # Import names and distribution names differ for a few common estimator packages.
    names.append({"sklearn": "scikit-learn", "xgboost": "xgboost", "catboost": "catboost"}.get(top, top))
    versions = {"python": platform.python_version()}
    for name in dict.fromkeys(names):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _definition_ref(features: Features) -> dict[str, str] | None:
    ref = getattr(features, "definition_ref", None)
    return ref() if callable(ref) else None


def content_hash(path: str) -> dict[str, Any]:
    """``{"path", "sha256", "bytes"}`` of a file, or of every file under a folder (names and contents, sorted).

    Any fsspec URL works; the file is read in 1 MiB chunks, so size is not bounded by memory.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(path)
    if not fs.exists(root):
        raise TrainingError(f"data path {path!r} does not exist", hint="pass the path the frame was read from")
    files = sorted(fs.find(root)) if fs.isdir(root) else [root]
    digest = hashlib.sha256()
    size = 0
    for name in files:
        if len(files) > 1 or fs.isdir(root):
            digest.update(name[len(root) :].lstrip("/").encode("utf-8") + b"\0")
        with fs.open(name, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    return {"path": path, "sha256": "sha256:" + digest.hexdigest(), "bytes": size}


def _lineage(features: Features, model: Any, seed: int, data_paths: Sequence[str] | str | None) -> dict[str, Any]:
    paths = [data_paths] if isinstance(data_paths, str) else list(data_paths or [])
    return {
        "feature_set": getattr(features, "name", None),
        "feature_source_hash": features.source_hash(),
        "feature_definition": _definition_ref(features),
        "estimator_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "seed": seed,
        "packages": _package_versions(model),
        "data": [content_hash(p) for p in paths],
    }
