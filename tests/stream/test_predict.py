"""``Stream.predict``: a registered house-price model scores micro-batches, dead-letters misfits, follows its alias."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from headwater.clock import FakeClock
from headwater.ml.registry_sql import SqlModelRegistry, memory_registry
from headwater.ml.train import TrainResult, train
from headwater.stream.app import StreamApp
from headwater.stream.chunk import Context, InputTable
from headwater.stream.memory import MemoryBroker
from headwater.stream.predict import Predict, PredictSetupError
from headwater.stream.testing import run_app
from tests.ml.house_features import house_features, synthetic_houses


def _train(iterations: int, seed: int) -> TrainResult:
    estimator = HistGradientBoostingRegressor(max_iter=iterations, random_state=seed)
    return train(synthetic_houses(600, seed=seed), target="price", features=house_features(), estimator=estimator,
                 seed=seed, importance_sample=100, importance_repeats=1)


@pytest.fixture(scope="module")
def models() -> tuple[TrainResult, TrainResult]:
    """Two different models of the same features (predictions differ), trained once for the module."""
    return _train(10, seed=1), _train(30, seed=2)


@pytest.fixture
def registry(models: tuple[TrainResult, TrainResult]) -> SqlModelRegistry:
    """A registry where version 1 is champion and version 2 is registered (approved, not promoted)."""
    reg = memory_registry()
    first, second = models
    first.register(reg, "house_prices", author="test")
    second.register(reg, "house_prices", author="test")
    reg.promote("house_prices", 1, who="test", reason="first model")
    reg.approve("house_prices", 2, who="test", reason="better")
    return reg


def _records(n: int, seed: int) -> list[dict[str, Any]]:
    frame = synthetic_houses(n, seed=seed).drop("price").with_row_index("id")
    return frame.with_columns(pl.col("id").cast(pl.Int64)).to_dicts()


def _expected(model: TrainResult, records: list[dict[str, Any]]) -> list[float]:
    # What the model gives for these rows computed directly: features, then one predict call.
    return [float(v) for v in model.predict(pl.DataFrame(records))]


def test_predictions_equal_the_model_on_the_whole_frame(
    registry: SqlModelRegistry, models: tuple[TrainResult, TrainResult]
) -> None:
    records = _records(300, seed=7)
    app = StreamApp("scorer")
    app.stream("houses").predict("house_prices@champion", output="predicted_price", registry=registry,
                                 features=house_features).to("scored")

    result = run_app(app, inputs={"houses": records}, max_batch_records=64)

    out = result.values("scored")
    assert [r["id"] for r in out] == [r["id"] for r in records]
    assert [r["predicted_price"] for r in out] == _expected(models[0], records)
    assert {r["model_version"] for r in out} == {"house_prices:1"}
    assert out[0]["sqft_living"] == records[0]["sqft_living"]  # the input fields are kept
    assert result.dead_letters == []


def test_records_that_do_not_match_the_signature_are_dead_lettered_with_the_reason(
    registry: SqlModelRegistry, models: tuple[TrainResult, TrainResult]
) -> None:
    records = _records(40, seed=8)
    missing = {k: v for k, v in records[3].items() if k != "sqft_living"}
    wrong_type = {**records[10], "grade": "excellent"}
    unparseable = {**records[20], "sqft_lot": "12x"}
    parseable = {**records[30], "sqft_lot": str(records[30]["sqft_lot"])}  # text that parses is scored
    inputs = [*records[:3], missing, *records[4:10], wrong_type, *records[11:20], unparseable, *records[21:30],
              parseable, *records[31:]]
    app = StreamApp("scorer")
    app.stream("houses").predict("house_prices@champion", registry=registry, features=house_features()).to("scored")

    result = run_app(app, inputs={"houses": inputs})

    good = [r for i, r in enumerate(records) if i not in (3, 10, 20)]
    out = result.values("scored")
    assert [r["id"] for r in out] == [r["id"] for r in good]
    assert [r["prediction"] for r in out] == _expected(models[0], good)
    dead = sorted(result.dead_letters, key=lambda d: d.offset)
    assert [d.offset for d in dead] == [3, 10, 20]
    assert {d.step for d in dead} == {"predict:house_prices@champion"}
    assert {d.error_type.rsplit(".", 1)[-1] for d in dead} == {"SignatureMismatchError"}
    assert "sqft_living" in dead[0].error_message and "house_prices:1" in dead[0].error_message
    assert "grade" in dead[1].error_message and "excellent" in dead[1].error_message
    assert "sqft_lot" in dead[2].error_message and "12x" in dead[2].error_message


def test_hot_reload_switches_between_batches_without_losing_or_rescoring_a_record(
    registry: SqlModelRegistry, models: tuple[TrainResult, TrainResult]
) -> None:
    clock = FakeClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    batches: list[tuple[list[int], set[str]]] = []

    def watch(frame: pl.DataFrame) -> pl.DataFrame:
        batches.append((frame["id"].to_list(), set(frame["model_version"].to_list())))
        if len(batches) == 2:
            # The alias moves mid-stream, but the reload interval has not passed: no switch yet.
            registry.promote("house_prices", 2, who="test", reason="challenger won")
        if len(batches) == 3:
            clock.advance(10)  # now it has: the next batch re-resolves the alias
        return frame

    records = _records(400, seed=9)
    app = StreamApp("scorer")
    (app.stream("houses")
        .predict("house_prices@champion", registry=registry, features=house_features, reload_interval=5, clock=clock)
        .map_batch(watch)
        .to("scored"))

    result = run_app(app, inputs={"houses": records}, max_batch_records=50)

    assert [s for _, s in batches] == [{"house_prices:1"}] * 3 + [{"house_prices:2"}] * (len(batches) - 3)
    assert len(batches) >= 8  # 400 records in batches of at most 50, each batch on one version
    assert [i for ids, _ in batches for i in ids] == [r["id"] for r in records]
    out = result.values("scored")
    assert [r["id"] for r in out] == [r["id"] for r in records]  # none lost, none twice, in order
    switch = sum(len(ids) for ids, _ in batches[:3])
    assert all(r["model_version"] == "house_prices:1" for r in out[:switch])
    assert all(r["model_version"] == "house_prices:2" for r in out[switch:])
    # Every output was scored by the version it names.
    assert [r["prediction"] for r in out[:switch]] == _expected(models[0], records[:switch])
    assert [r["prediction"] for r in out[switch:]] == _expected(models[1], records[switch:])
    assert not np.allclose(_expected(models[0], records[switch:]), _expected(models[1], records[switch:]))


def test_every_chunk_of_a_batch_gets_the_model_the_batch_started_with(registry: SqlModelRegistry) -> None:
    clock = FakeClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    step = Predict("predict", "house_prices@champion", registry=registry, features=house_features,
                   reload_interval=5, clock=clock)
    batch = Context(InputTable())
    assert step.scorer_for(batch).label == "house_prices:1"
    registry.promote("house_prices", 2, who="test", reason="challenger won")
    clock.advance(10)
    assert step.scorer_for(batch).label == "house_prices:1"  # a later chunk of the same batch (a merge, a branch)
    del batch  # the next batch (a new Context, possibly at the freed one's address) switches
    assert step.scorer_for(Context(InputTable())).label == "house_prices:2"


def test_a_second_run_on_the_same_group_continues_on_the_promoted_version(registry: SqlModelRegistry) -> None:
    broker = MemoryBroker()
    first, second = _records(30, seed=10), _records(30, seed=11)

    def app() -> StreamApp:
        made = StreamApp("scorer")
        made.stream("houses").predict("house_prices@champion", registry=registry, features=house_features,
                                      reload_interval=0).to("scored")
        return made

    scorer = app()
    run_app(scorer, inputs={"houses": first}, broker=broker)
    registry.promote("house_prices", 2, who="test", reason="challenger won")
    result = run_app(scorer, inputs={"houses": second}, broker=broker)

    out = result.values("scored")
    assert len(out) == 60
    assert [r["model_version"] for r in out] == ["house_prices:1"] * 30 + ["house_prices:2"] * 30


def test_the_feature_definition_is_found_from_the_models_lineage(
    registry: SqlModelRegistry, models: tuple[TrainResult, TrainResult]
) -> None:
    records = _records(50, seed=13)
    app = StreamApp("scorer")
    app.stream("houses").predict("house_prices@champion", registry=registry).to("scored")  # no features=

    out = run_app(app, inputs={"houses": records}).values("scored")

    assert registry.resolve("house_prices:1").lineage["feature_definition"]["attr"] == "house_features"
    assert [r["prediction"] for r in out] == _expected(models[0], records)


def test_a_model_without_a_feature_definition_stops_the_app_with_a_hint(
    models: tuple[TrainResult, TrainResult],
) -> None:
    reg = memory_registry()
    registration = models[0].to_registration()
    del registration["lineage"]["feature_definition"]  # as if trained from a REPL
    reg.register("house_prices", **registration, author="test")
    reg.promote("house_prices", 1, who="test", reason="only model")
    app = StreamApp("scorer")
    app.stream("houses").predict("house_prices@champion", registry=reg).to("scored")

    with pytest.raises(PredictSetupError, match="does not record where its feature definition lives") as info:
        run_app(app, inputs={"houses": _records(3, seed=12)})
    assert "features=" in (info.value.hint or "")
