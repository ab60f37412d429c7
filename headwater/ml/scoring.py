"""Scoring a registered model: the one way stream apps, REST serving and batch scoring load a model.

:func:`load_scorer` turns a registry reference (``"house_prices@champion"``, ``"house_prices:3"``)
into a :class:`Scorer`: the estimator from the artifact, the fitted features rebuilt from their
JSON state on the user's :class:`~headwater.ml.features.FeatureSet`, and the signature's
target transform. The feature definition is code, never shipped in the artifact; it is found:

1. from ``features=`` when the caller gives it (a ``FeatureSet`` or a function returning one);
2. else from the version's lineage (``lineage["feature_definition"]``, written at training by
   :meth:`~headwater.ml.features.FeatureSet.definition_ref`): the module is imported by name,
   or, when it is not on ``sys.path``, loaded from the file recorded beside it.

:class:`ModelFollower` holds a scorer for a reference and re-resolves the reference at most
every ``reload_interval`` seconds: when the alias moved, the new version is loaded completely
before the follower switches, and a version that fails to load leaves the old one in use.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from headwater.clock import Clock, SystemClock
from headwater.errors import UserError
from headwater.ml import target as tt
from headwater.ml.treewalk import MAX_ROWS as SMALL_MAX_ROWS  # numpy only: scikit-learn is not imported here

log = logging.getLogger(__name__)

DEFAULT_RELOAD_INTERVAL = 5.0


class ScorerSetupError(UserError):
    """A registered model cannot be used for scoring (no feature definition, or its state does not fit)."""


@dataclass(frozen=True, slots=True)
class Scorer:
    """One loaded model version: fitted features, estimator, and the label written to every output."""

    label: str  # "house_prices:3"
    features: Any  # FittedFeatureSet
    estimator: Any
    names: list[str]  # feature columns, in the order the estimator was trained on
    target_transform: str | None = None
    version: Any = None  # the ModelVersion (signature, metrics), when loaded from a registry
    # estimator.predict for a few rows without its fixed per-call cost, when the model allows (treewalk).
    small_predict: Any = field(default=None, compare=False, repr=False)
    # The features come out as the matrix's columns, in order, all integer, float or boolean:
    # a few rows can then go to numpy as Python values (see score).
    rows_matrix: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.small_predict is None and type(self.estimator).__module__.startswith("sklearn."):
            from headwater.ml.treewalk import small_batch_predictor

            object.__setattr__(self, "small_predict", small_batch_predictor(self.estimator))
        schema = getattr(self.features, "output_schema", None)
        if isinstance(schema, Mapping) and list(schema) == list(self.names) and all(
                t.is_integer() or t.is_float() or t == pl.Boolean for t in schema.values()):
            object.__setattr__(self, "rows_matrix", True)

    def validate(self, frame: pl.DataFrame) -> pl.Series:
        """Per row, why it does not fit the model's input signature (null for the rows that fit)."""
        return self.features.validate_rows(frame)  # type: ignore[no-any-return]

    def score(self, frame: pl.DataFrame) -> np.ndarray:
        """Predictions for the rows of ``frame`` (already validated), in one estimator call."""
        feats = self.features.transform(frame, coerce=True)
        # The same matrix as training builds (headwater.ml.train): Float64 columns in signature order.
        if self.rows_matrix and 0 < feats.height <= SMALL_MAX_ROWS:
            # The same float64 values as the cast below (ints and booleans convert exactly or
            # round to nearest in both, null becomes NaN), without a Polars query run: 0.005
            # against 0.28 ms for one row of 36 columns.
            x = np.array(feats.rows(), dtype=np.float64)
        else:
            x = feats.select(pl.col(self.names).cast(pl.Float64)).to_numpy()
        if self.small_predict is not None and len(x) <= SMALL_MAX_ROWS:
            raw = self.small_predict(x)  # equal bit for bit; a REST request's one record costs 10x less
        else:
            raw = np.asarray(self.estimator.predict(x))
        return tt.inverse(self.target_transform, raw)


def find_definition(mv: Any) -> Any:
    """The feature definition recorded in a version's lineage: a ``FeatureSet`` or the function that builds it."""
    ref = (mv.lineage or {}).get("feature_definition")
    if not ref:
        raise ScorerSetupError(
            f"model {mv.ref} does not record where its feature definition lives",
            hint="pass features=your_feature_set (the FeatureSet, or the function returning it, used in training)",
        )
    module_name, attr, file = ref["module"], ref["attr"], ref.get("file") or ""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if not file or not Path(file).is_file():
            raise ScorerSetupError(
                f"model {mv.ref}: cannot import its feature module {module_name!r} ({exc})",
                hint="put the module on PYTHONPATH, run from the project folder, or pass features=",
            ) from exc
        module = _load_file(module_name, file)
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ScorerSetupError(
                f"model {mv.ref}: {module_name}.{attr} (its feature definition) does not exist any more",
                hint="restore it, or pass features= with the FeatureSet the model was trained with",
            )
    return target


def _load_file(module_name: str, file: str) -> Any:
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ScorerSetupError(f"cannot load feature module {module_name!r} from {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ScorerSetupError(f"feature module {file} fails to load: {exc}") from exc
    return module


def fitted_features(state: Any, definition: Any, mv: Any) -> Any:
    """The fitted feature set of version ``mv`` from its stored ``state``."""
    if hasattr(state, "transform") and hasattr(state, "validate_rows"):
        return state  # the artifact already holds a fitted feature set
    from headwater.ml.features import FeatureSet

    definition = definition if definition is not None else find_definition(mv)
    try:
        fitted = FeatureSet.from_state(definition, state)
    except UserError as exc:
        raise ScorerSetupError(f"features of model {mv.ref} do not load: {exc}",
                               hint="pass the FeatureSet the model was trained with") from exc
    recorded = (mv.lineage or {}).get("feature_source_hash")
    if recorded and recorded != fitted.definition.source_hash():
        # Not refused: an edited comment changes the hash too. The output schema was checked.
        log.warning("model %s: its feature code changed since training (source hash %s, now %s)",
                    mv.ref, recorded[:19], fitted.definition.source_hash()[:19])
    return fitted


def load_scorer(
    registry: Any,
    ref: Any,
    *,
    features: Any = None,
    allow_pickle: bool = False,
    trusted: Sequence[str] = (),
) -> Scorer:
    """A :class:`Scorer` for ``ref`` (a reference string or a resolved ``ModelVersion``)."""
    mv = registry.resolve(ref) if isinstance(ref, str) else ref
    # Pinned to the resolved version: an alias may move again between resolve and load.
    loaded = registry.load(mv.ref, allow_pickle=allow_pickle, trusted=trusted)
    fitted = fitted_features(loaded.feature_state, features, mv)
    signature = mv.signature or {}
    names = [f["name"] for f in signature.get("features", [])] or list(fitted.output_schema)
    return Scorer(mv.ref, fitted, loaded.estimator, names, signature.get("target_transform"), mv)


class ModelFollower:
    """Holds the scorer of a reference and follows its alias (see the module docstring)."""

    def __init__(
        self,
        model_ref: str,
        *,
        registry: Any = None,
        features: Any = None,
        reload_interval: float = DEFAULT_RELOAD_INTERVAL,
        clock: Clock | None = None,
        allow_pickle: bool = False,
        trusted: Sequence[str] = (),
    ) -> None:
        if reload_interval < 0:
            raise ScorerSetupError(f"{model_ref!r}: reload_interval must be >= 0, got {reload_interval}")
        self.model_ref = model_ref
        self.reload_interval = reload_interval
        self._registry = registry
        self._features = features
        self._clock = clock or SystemClock()
        self._allow_pickle = allow_pickle
        self._trusted = tuple(trusted)
        self._lock = threading.Lock()
        self._scorer: Scorer | None = None
        self._checked_at = 0.0

    @property
    def registry(self) -> Any:
        if self._registry is None:
            # Opened on first use, not when declared: declaring an app or a server touches nothing.
            from headwater.ml.registry_sql import open_registry
            from headwater.settings import Settings

            self._registry = open_registry(Settings.from_env())
        return self._registry

    @property
    def loaded(self) -> Scorer | None:
        """The scorer in use, without checking the alias (None before the first :meth:`current`)."""
        return self._scorer

    def current(self, pins: dict[str, str] | None = None) -> Scorer:
        """The scorer to use now: loaded on first call; re-resolved when ``reload_interval`` has passed.

        ``pins`` (a stream batch's :attr:`~headwater.stream.chunk.Context.pins`) makes steps that
        follow the same reference agree: when another step of the batch already picked a version
        of ``model_ref``, that version is used (loaded now if needed); otherwise the version chosen
        here is pinned for the steps after.
        """
        with self._lock:
            now = self._clock.monotonic()
            pinned = pins.get(self.model_ref) if pins is not None else None
            if pinned is not None:
                if self._scorer is None or self._scorer.label != pinned:
                    self._switch_to(pinned)
                    self._checked_at = now
                return self._scorer  # type: ignore[return-value]
            if self._scorer is None:
                self._scorer = self._load(self.model_ref)
                self._checked_at = now
            elif now - self._checked_at >= self.reload_interval:
                self._checked_at = now
                self._maybe_switch()
            if pins is not None:
                pins.setdefault(self.model_ref, self._scorer.label)
            return self._scorer

    def _switch_to(self, version_ref: str) -> None:
        """Use ``version_ref`` (another step of the batch chose it); keep the model we have if it cannot load."""
        try:
            scorer = self._load(version_ref)
        except Exception as exc:
            if self._scorer is None:
                raise
            log.warning("%s: could not load %s as the other steps of the batch did, keeping %s: %s",
                        self.model_ref, version_ref, self._scorer.label, exc)
            return
        if self._scorer is not None:
            log.info("%s now scored by %s (was %s)", self.model_ref, scorer.label, self._scorer.label)
        self._scorer = scorer

    def _load(self, ref: Any) -> Scorer:
        return load_scorer(self.registry, ref, features=self._features, allow_pickle=self._allow_pickle,
                           trusted=self._trusted)

    def _maybe_switch(self) -> None:
        assert self._scorer is not None
        try:
            mv = self.registry.resolve(self.model_ref)
            if mv.ref == self._scorer.label:
                return
            scorer = self._load(mv)
        except Exception as exc:  # a running app or server keeps scoring with the model it has
            log.warning("%s: could not reload, keeping %s: %s", self.model_ref, self._scorer.label, exc)
            return
        log.info("%s now scored by %s (was %s)", self.model_ref, scorer.label, self._scorer.label)
        self._scorer = scorer
