"""``Stream.predict``: score every micro-batch with a registered model, and follow its alias.

Per micro-batch the step (1) takes the model it holds, re-resolving the reference
(``"house_prices@champion"``) through the registry at most every ``reload_interval``
seconds and only when a new batch starts, so a batch in flight always finishes on the
model it started with; (2) checks the rows against the feature set's input signature
(:meth:`~headwater.ml.features.FeatureSet.validate_rows`) and dead-letters the rows that
do not fit, with the reason; (3) transforms the other rows with the fitted features and
predicts them in one call; (4) adds the prediction column and the ``model_version`` column
(``"house_prices:3"``) to every record.

When the alias moved, the new version is loaded (estimator from the artifact, features
rebuilt from their JSON state on the user's :class:`~headwater.ml.features.FeatureSet`)
before the step switches; if that load fails the step keeps the model it has, logs why,
and tries again after ``reload_interval``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from headwater.clock import Clock, SystemClock
from headwater.errors import UserError
from headwater.stream.chunk import Chunk, Context, isolate
from headwater.stream.steps import BatchStep

log = logging.getLogger(__name__)

DEFAULT_RELOAD_INTERVAL = 5.0


class SignatureMismatchError(UserError):
    """A record does not match the model's input signature (missing feature, wrong type, unparseable value)."""


class PredictSetupError(UserError):
    """The model of a ``predict`` step cannot be used (no feature definition, or its state does not fit)."""


@dataclass(frozen=True, slots=True)
class Scorer:
    """One loaded model version: fitted features, estimator, and the label written to every output."""

    label: str  # "house_prices:3"
    features: Any  # FittedFeatureSet
    estimator: Any
    names: list[str]  # feature columns, in the order the estimator was trained on

    def score(self, frame: pl.DataFrame) -> Any:
        """Predictions for the rows of ``frame`` (already validated), in one estimator call."""
        feats = self.features.transform(frame, coerce=True)
        # The same matrix as training builds (headwater.ml.train): Float64 columns in signature order.
        x = feats.select(pl.col(self.names).cast(pl.Float64)).to_numpy()
        return self.estimator.predict(x)


class Predict(BatchStep):
    """The batch step behind :meth:`headwater.stream.dsl.Stream.predict` (see the module docstring)."""

    kind = "predict"

    def __init__(
        self,
        name: str,
        model_ref: str,
        *,
        registry: Any = None,
        features: Any = None,
        output: str = "prediction",
        version_column: str = "model_version",
        reload_interval: float = DEFAULT_RELOAD_INTERVAL,
        clock: Clock | None = None,
        allow_pickle: bool = False,
        trusted: Sequence[str] = (),
    ) -> None:
        super().__init__(name)
        if reload_interval < 0:
            raise PredictSetupError(f"predict({model_ref!r}): reload_interval must be >= 0, got {reload_interval}")
        if output == version_column:
            raise PredictSetupError(
                f"predict({model_ref!r}): output and version_column are both {output!r}",
                hint="give the prediction another column name, e.g. output='predicted_price'",
            )
        self.model_ref = model_ref
        self.output = output
        self.version_column = version_column
        self.reload_interval = reload_interval
        self._registry = registry
        self._definition = features
        self._clock = clock or SystemClock()
        self._allow_pickle = allow_pickle
        self._trusted = tuple(trusted)
        self._lock = threading.Lock()
        self._scorer: Scorer | None = None
        self._checked_at = 0.0
        # Marks the batch the scorer was picked for: that batch's own dead-letter list. Not id(ctx):
        # a finished batch's Context is freed and the next one may get its id (seen in the tests).
        # Holding the small list, not the Context, lets the batch's input table be freed.
        self._batch: object = None

    # -- the model ----------------------------------------------------------------

    @property
    def scorer(self) -> Scorer | None:
        """The model version in use (None before the first batch)."""
        return self._scorer

    def _registry_or_default(self) -> Any:
        if self._registry is None:
            # Opened on first use, not when the app is declared: declaring touches nothing.
            from headwater.ml.registry_sql import open_registry
            from headwater.settings import Settings

            self._registry = open_registry(Settings.from_env())
        return self._registry

    def scorer_for(self, ctx: Context) -> Scorer:
        """The model for the batch of ``ctx``: the same for every chunk of one batch; may switch between batches."""
        with self._lock:
            if self._scorer is not None and self._batch is ctx.dead:
                return self._scorer
            now = self._clock.monotonic()
            if self._scorer is None:
                self._scorer = self._load(self._registry_or_default().resolve(self.model_ref))
                self._checked_at = now
            elif now - self._checked_at >= self.reload_interval:
                self._checked_at = now
                self._maybe_switch()
            self._batch = ctx.dead
            return self._scorer

    def _maybe_switch(self) -> None:
        assert self._scorer is not None
        try:
            mv = self._registry_or_default().resolve(self.model_ref)
            if mv.ref == self._scorer.label:
                return
            scorer = self._load(mv)
        except Exception as exc:  # a running app keeps scoring with the model it has
            log.warning("predict %s: could not reload %s, keeping %s: %s", self.name, self.model_ref,
                        self._scorer.label, exc)
            return
        log.info("predict %s: %s now scored by %s (was %s)", self.name, self.model_ref, scorer.label,
                 self._scorer.label)
        self._scorer = scorer

    def _load(self, mv: Any) -> Scorer:
        # Pinned to the resolved version: the alias may move again between resolve and load.
        loaded = self._registry_or_default().load(mv.ref, allow_pickle=self._allow_pickle, trusted=self._trusted)
        fitted = self._fitted(loaded.feature_state, mv.ref)
        names = [f["name"] for f in mv.signature.get("features", [])] or list(fitted.output_schema)
        return Scorer(mv.ref, fitted, loaded.estimator, names)

    def _fitted(self, state: Any, ref: str) -> Any:
        if hasattr(state, "transform") and hasattr(state, "validate_rows"):
            return state  # the artifact already holds a fitted feature set
        if self._definition is None:
            raise PredictSetupError(
                f"predict({self.model_ref!r}): model {ref} stores its features as JSON state and "
                "no feature definition was given to rebuild them",
                hint="pass features=your_feature_set (the FeatureSet, or the function returning it, used in training)",
            )
        from headwater.ml.features import FeatureSet

        try:
            return FeatureSet.from_state(self._definition, state)
        except UserError as exc:
            raise PredictSetupError(f"predict({self.model_ref!r}): features of model {ref} do not load: {exc}",
                                    hint="pass the FeatureSet the model was trained with") from exc

    # -- a micro-batch --------------------------------------------------------------

    def apply(self, chunk: Chunk, ctx: Context) -> list[Chunk]:
        # Picked outside isolate(): a model that cannot load stops the app, it is not bad data.
        scorer = self.scorer_for(ctx)

        def check(part: Chunk) -> tuple[Chunk, pl.Series]:
            framed = part.as_frame()
            assert framed.frame is not None
            return framed, scorer.features.validate_rows(framed.frame)

        good: list[Chunk] = []
        for framed, reasons in isolate(chunk, check, ctx, self.name):
            bad = reasons.is_not_null()
            if bad.any():
                # Only the rejected rows are visited one by one; a clean batch skips this.
                for i, reason in zip(bad.arg_true().to_list(), reasons.filter(bad).to_list(), strict=True):
                    ctx.dead_letter(framed.src[i], self.name, SignatureMismatchError(
                        f"record does not match the signature of model {scorer.label}: {reason}"))
                framed = framed.select((~bad).arg_true().to_list())
            if len(framed):
                good.append(framed)
        return [out for part in good for out in isolate(part, lambda p: self._score(p, scorer), ctx, self.name)]

    def _score(self, part: Chunk, scorer: Scorer) -> Chunk:
        assert part.frame is not None
        frame = part.frame
        predictions = scorer.score(frame)
        out = frame.with_columns(
            pl.Series(self.output, predictions),
            pl.lit(scorer.label, dtype=pl.String).alias(self.version_column),
        )
        return part.with_frame(out, None)

    def transform(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, list[int] | None]:
        raise NotImplementedError("Predict works through apply(): it needs the batch to pick its model")

