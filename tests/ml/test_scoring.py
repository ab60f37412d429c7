"""Loading a registered model for scoring: features found from the lineage, target transforms, the follower."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from headwater.clock import FakeClock
from headwater.ml.registry_sql import memory_registry, open_registry
from headwater.ml.scoring import ModelFollower, ScorerSetupError, load_scorer
from headwater.ml.target import TargetTransformError
from headwater.ml.train import train
from headwater.settings import Settings
from tests.ml.house_features import house_features, synthetic_houses


def _train(seed: int = 1, **kwargs: object):  # type: ignore[no-untyped-def]
    return train(synthetic_houses(500, seed=seed), target="price", features=house_features(),
                 estimator=HistGradientBoostingRegressor(max_iter=15), seed=seed, importance_sample=50,
                 importance_repeats=1, **kwargs)


def test_log_target_is_fitted_on_logs_and_predicts_prices() -> None:
    result = _train(target_transform="log1p")
    frame = synthetic_houses(50, seed=9)

    raw = result.estimator.predict(result.features.transform(frame).select(result.feature_names).cast(pl.Float64)
                                   .to_numpy())
    assert result.signature()["target_transform"] == "log1p"
    assert float(np.max(raw)) < 20  # the estimator learned log prices (log1p(3e6) = 14.9)
    np.testing.assert_array_equal(result.predict(frame), np.expm1(raw))
    assert result.metrics["test"]["rmse"] > 1000  # metrics are reported on the price scale


def test_log_target_refuses_non_positive_targets_and_classification() -> None:
    frame = synthetic_houses(200, seed=3).with_columns(pl.lit(-5.0).alias("price"))
    with pytest.raises(TargetTransformError, match="needs targets > 0") as info:
        train(frame, target="price", features=house_features(), estimator=HistGradientBoostingRegressor(),
              target_transform="log")
    assert info.value.hint
    with pytest.raises(TargetTransformError, match="unknown target_transform"):
        _train(target_transform="sqrt")


def test_scorer_applies_features_model_and_inverse_transform() -> None:
    result = _train(target_transform="log1p")
    registry = memory_registry()
    result.register(registry, "houses", author="test")
    frame = synthetic_houses(80, seed=4)

    scorer = load_scorer(registry, "houses:1")  # no features=: found from the lineage

    assert scorer.label == "houses:1"
    np.testing.assert_array_equal(scorer.score(frame), result.predict(frame))
    assert scorer.validate(frame).null_count() == frame.height


def test_feature_module_is_loaded_from_its_file_when_not_importable(tmp_path: Path) -> None:
    # Trained in one process from a module in a folder of its own; scored in another process
    # whose sys.path does not have that folder.
    module_dir = tmp_path / "proj"
    module_dir.mkdir()
    source = Path(__file__).with_name("house_features.py").read_text()
    (module_dir / "my_house_features.py").write_text(source)
    home = tmp_path / "home"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(module_dir)!r})
        from sklearn.ensemble import HistGradientBoostingRegressor
        from my_house_features import house_features, synthetic_houses
        from headwater.ml import train, open_registry
        from headwater.settings import Settings
        reg = open_registry(Settings.from_env())
        r = train(synthetic_houses(300, seed=2), target="price", features=house_features(),
                  estimator=HistGradientBoostingRegressor(max_iter=10), importance_sample=20, importance_repeats=1)
        r.register(reg, "houses", author="t")
    """)
    env = {"HEADWATER_HOME": str(home), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tmp_path, timeout=120)

    old = os.environ.get("HEADWATER_HOME")
    os.environ["HEADWATER_HOME"] = str(home)
    try:
        registry = open_registry(Settings.from_env())
        scorer = load_scorer(registry, "houses")
    finally:
        if old is None:
            del os.environ["HEADWATER_HOME"]
        else:
            os.environ["HEADWATER_HOME"] = old
    assert "my_house_features" in sys.modules
    assert len(scorer.score(synthetic_houses(20, seed=5))) == 20


def test_missing_feature_module_gives_a_hint() -> None:
    registry = memory_registry()
    registration = _train().to_registration()
    registration["lineage"]["feature_definition"] = {"module": "no_such_module_xyz", "attr": "f", "file": ""}
    registry.register("houses", **registration, author="t")

    with pytest.raises(ScorerSetupError, match="no_such_module_xyz") as info:
        load_scorer(registry, "houses:1")
    assert "PYTHONPATH" in (info.value.hint or "")


def test_follower_switches_only_after_the_interval_and_keeps_the_old_model_on_failure() -> None:
    registry = memory_registry()
    _train(seed=1).register(registry, "houses", author="t")
    _train(seed=2).register(registry, "houses", author="t")
    registry.promote("houses", 1, who="t", reason="first")
    registry.approve("houses", 2, who="t", reason="ok")
    clock = FakeClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    follower = ModelFollower("houses@champion", registry=registry, reload_interval=10, clock=clock)

    assert follower.current().label == "houses:1"
    registry.promote("houses", 2, who="t", reason="better")
    clock.advance(5)
    assert follower.current().label == "houses:1"  # not re-resolved yet
    clock.advance(5)
    assert follower.current().label == "houses:2"

    registration = _train(seed=3).to_registration()
    registration["lineage"]["feature_definition"] = {"module": "gone_module_xyz", "attr": "f", "file": ""}
    registry.register("houses", **registration, author="t")
    registry.promote("houses", 3, who="t", reason="broken", force=True)
    clock.advance(10)
    assert follower.current().label == "houses:2"  # v3 cannot load: the old model stays
