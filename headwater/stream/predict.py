"""``Stream.predict``: score every micro-batch with a registered model, and follow its alias.

Per micro-batch the step (1) takes the model it holds, re-resolving the reference
(``"house_prices@champion"``) through the registry at most every ``reload_interval``
seconds and only when a new batch starts, so a batch in flight always finishes on the
model it started with, and uses the version that an earlier step of the batch following
the same reference (``check``) picked, if any (:attr:`~headwater.stream.chunk.Context.pins`);
(2) checks the rows against the feature set's input signature
(:meth:`~headwater.ml.features.FeatureSet.validate_rows`) and dead-letters the rows that
do not fit, with the reason; (3) transforms the other rows with the fitted features and
predicts them in one call; (4) adds the prediction column and the ``model_version`` column
(``"house_prices:3"``) to every record.

Loading and following the alias is :class:`headwater.ml.scoring.ModelFollower`'s: when the
alias moved, the new version is loaded (estimator from the artifact, features rebuilt from
their JSON state on the user's :class:`~headwater.ml.features.FeatureSet`, found from
``features=`` or the version's lineage) before the step switches; if that load fails the
step keeps the model it has, logs why, and tries again after ``reload_interval``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import polars as pl

from headwater.clock import Clock
from headwater.errors import UserError
from headwater.ml.scoring import DEFAULT_RELOAD_INTERVAL, ModelFollower, Scorer, ScorerSetupError
from headwater.monitoring import hooks
from headwater.stream.chunk import Chunk, Context, isolate
from headwater.stream.steps import BatchStep


class SignatureMismatchError(UserError):
    """A record does not match the model's input signature (missing feature, wrong type, unparseable value)."""


# Kept under its old name: apps catch it when a model cannot be used.
PredictSetupError = ScorerSetupError


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
        if output == version_column:
            raise PredictSetupError(
                f"predict({model_ref!r}): output and version_column are both {output!r}",
                hint="give the prediction another column name, e.g. output='predicted_price'",
            )
        self.model_ref = model_ref
        self.output = output
        self.version_column = version_column
        self.follower = ModelFollower(model_ref, registry=registry, features=features, reload_interval=reload_interval,
                                      clock=clock, allow_pickle=allow_pickle, trusted=trusted)
        self._lock = threading.Lock()
        self._scorer: Scorer | None = None
        # Marks the batch the scorer was picked for: that batch's own dead-letter list. Not id(ctx):
        # a finished batch's Context is freed and the next one may get its id (seen in the tests).
        # Holding the small list, not the Context, lets the batch's input table be freed.
        self._batch: object = None

    @property
    def reload_interval(self) -> float:
        return self.follower.reload_interval

    # -- the model ----------------------------------------------------------------

    @property
    def scorer(self) -> Scorer | None:
        """The model version in use (None before the first batch)."""
        return self._scorer

    def scorer_for(self, ctx: Context) -> Scorer:
        """The model for the batch of ``ctx``: the same for every chunk of one batch; may switch between batches."""
        with self._lock:
            if self._scorer is not None and self._batch is ctx.dead:
                return self._scorer
            self._scorer = self.follower.current(ctx.pins)
            self._batch = ctx.dead
            return self._scorer

    # -- a micro-batch --------------------------------------------------------------

    def apply(self, chunk: Chunk, ctx: Context) -> list[Chunk]:
        # Picked outside isolate(): a model that cannot load stops the app, it is not bad data.
        scorer = self.scorer_for(ctx)

        def check(part: Chunk) -> tuple[Chunk, pl.Series]:
            framed = part.as_frame()
            assert framed.frame is not None
            return framed, scorer.validate(framed.frame)

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
        hooks.predictions(self.name, scorer.label, predictions)  # the prediction histogram, once per chunk
        return part.with_frame(out, None)

    def transform(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, list[int] | None]:
        raise NotImplementedError("Predict works through apply(): it needs the batch to pick its model")

