"""Model artifacts: safe formats round trip exactly; missing, corrupt, newer and pickled ones fail clearly."""

from __future__ import annotations

import json
import operator
from pathlib import Path

import numpy as np
import pytest

from headwater.ml import artifacts
from headwater.ml.artifacts import (
    ArtifactCorruptError,
    ArtifactError,
    ArtifactFormatError,
    ArtifactMissingError,
    LightGBMModel,
    ModelArtifact,
    UnsafeArtifactError,
)

FEATURES = {"name": "house", "features": [{"name": "rooms", "median": 3.0}], "vocab": ["a", "b", None]}


def _data(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(n, 4))
    y = 3 * x[:, 0] - 2 * x[:, 1] + rng.normal(scale=0.1, size=n)
    return x, y


class Opaque:
    """An object no safe format can save."""

    def __init__(self, k: float) -> None:
        self.k = k

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x[:, 0] * self.k


def test_hist_gradient_boosting_round_trips_through_skops(tmp_path: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, y = _data()
    model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(x, y)
    packed = artifacts.save(str(tmp_path / "m" / "1"), ModelArtifact(model, FEATURES))
    assert packed.format == "skops"
    assert sorted(p.name for p in (tmp_path / "m" / "1").iterdir()) == ["features.json", "manifest.json", "model.skops"]

    loaded = artifacts.load(str(tmp_path / "m" / "1"), checksum=packed.checksum)
    assert type(loaded.estimator) is HistGradientBoostingRegressor
    assert loaded.feature_state == FEATURES
    np.testing.assert_array_equal(loaded.estimator.predict(x), model.predict(x))


def test_lightgbm_round_trips_through_its_text_format(tmp_path: Path) -> None:
    from lightgbm import LGBMRegressor

    x, y = _data()
    model = LGBMRegressor(n_estimators=40, verbose=-1, random_state=0).fit(x, y)
    packed = artifacts.save(str(tmp_path / "lgb"), ModelArtifact(model, FEATURES))
    assert packed.format == "lightgbm-text"
    assert packed.manifest["estimator"] == "lightgbm.sklearn.LGBMRegressor"
    assert (tmp_path / "lgb" / "model.txt").read_text().startswith("tree")

    loaded = artifacts.load(str(tmp_path / "lgb"), checksum=packed.checksum)
    assert isinstance(loaded.estimator, LightGBMModel)
    np.testing.assert_array_equal(loaded.estimator.predict(x), model.predict(x))
    # A loaded model saves again to the same format and predicts the same.
    again = artifacts.load(str(tmp_path / "lgb2"), checksum=artifacts.save(str(tmp_path / "lgb2"), loaded).checksum)
    np.testing.assert_array_equal(again.estimator.predict(x), model.predict(x))


def test_lightgbm_classifier_predicts_labels_and_probabilities(tmp_path: Path) -> None:
    from lightgbm import LGBMClassifier

    x, y = _data()
    labels = np.where(y > 0, "high", "low")
    model = LGBMClassifier(n_estimators=20, verbose=-1, random_state=0).fit(x, labels)
    artifacts.save(str(tmp_path / "c"), ModelArtifact(model))
    loaded = artifacts.load(str(tmp_path / "c")).estimator
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x))


def test_missing_artifact_and_missing_file_name_the_version(tmp_path: Path) -> None:
    with pytest.raises(ArtifactMissingError) as info:
        artifacts.load(str(tmp_path / "nowhere"), label="model m version 3")
    assert "model m version 3 is missing" in info.value.message
    assert "manifest.json" in info.value.message

    from sklearn.linear_model import LinearRegression

    x, y = _data()
    artifacts.save(str(tmp_path / "a"), ModelArtifact(LinearRegression().fit(x, y)))
    (tmp_path / "a" / "model.skops").unlink()
    with pytest.raises(ArtifactMissingError, match=r"no model\.skops"):
        artifacts.load(str(tmp_path / "a"), label="model m version 3")


def test_corrupt_file_and_changed_manifest_are_caught(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    x, y = _data()
    packed = artifacts.save(str(tmp_path / "a"), ModelArtifact(LinearRegression().fit(x, y), FEATURES))
    model_file = tmp_path / "a" / "model.skops"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorruptError) as info:
        artifacts.load(str(tmp_path / "a"), checksum=packed.checksum, label="model m version 2")
    assert "model m version 2 is corrupt: model.skops does not match its checksum" in info.value.message

    # Someone rewrites the manifest to match the damaged file: the registry's checksum still catches it.
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    manifest["files"]["model.skops"] = artifacts._sha256(bytes(data))
    (tmp_path / "a" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactCorruptError, match="the registry recorded"):
        artifacts.load(str(tmp_path / "a"), checksum=packed.checksum, label="model m version 2")


def test_a_manifest_naming_files_outside_the_folder_is_refused(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    x, y = _data()
    artifacts.save(str(tmp_path / "a"), ModelArtifact(LinearRegression().fit(x, y)))
    (tmp_path / "secret").write_text("not yours")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    manifest["files"]["../secret"] = artifacts._sha256(b"not yours")
    (tmp_path / "a" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactCorruptError, match="lists files outside the artifact's folder"):
        artifacts.load(str(tmp_path / "a"))


def test_a_newer_artifact_format_is_refused(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    x, y = _data()
    artifacts.save(str(tmp_path / "a"), ModelArtifact(LinearRegression().fit(x, y)))
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    manifest["artifact_format"] = artifacts.ARTIFACT_FORMAT + 1
    (tmp_path / "a" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactFormatError) as info:
        artifacts.load(str(tmp_path / "a"), label="model m version 5")
    assert f"model m version 5 was written in artifact format {artifacts.ARTIFACT_FORMAT + 1}" in info.value.message
    assert info.value.hint == "upgrade headwater to load it, or retrain the model with this version"


def test_pickle_needs_an_explicit_opt_in_to_save_and_to_load(tmp_path: Path) -> None:
    x, _ = _data()
    with pytest.raises(UnsafeArtifactError, match=r"no safe format saves .*Opaque"):
        artifacts.pack(ModelArtifact(Opaque(2.0)))
    packed = artifacts.save(str(tmp_path / "p"), ModelArtifact(Opaque(2.0)), allow_pickle=True)
    assert packed.format == "pickle"
    with pytest.raises(UnsafeArtifactError) as info:
        artifacts.load(str(tmp_path / "p"), label="model m version 1")
    assert "model m version 1 is a pickle" in info.value.message
    assert "allow_pickle=True" in (info.value.hint or "")
    loaded = artifacts.load(str(tmp_path / "p"), allow_pickle=True)
    np.testing.assert_array_equal(loaded.estimator.predict(x), x[:, 0] * 2.0)


def test_skops_refuses_unknown_types_unless_trusted(tmp_path: Path) -> None:
    from sklearn.preprocessing import FunctionTransformer

    model = FunctionTransformer(func=operator.neg).fit(np.ones((2, 2)))
    artifacts.save(str(tmp_path / "f"), ModelArtifact(model))
    with pytest.raises(UnsafeArtifactError, match=r"not trusted: _operator\.neg"):
        artifacts.load(str(tmp_path / "f"))
    loaded = artifacts.load(str(tmp_path / "f"), trusted=["_operator.neg"])
    np.testing.assert_array_equal(loaded.estimator.transform(np.ones((1, 2))), -np.ones((1, 2)))


def test_artifacts_are_never_overwritten_and_leave_no_temporary_folder(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    x, y = _data()
    art = ModelArtifact(LinearRegression().fit(x, y))
    artifacts.save(str(tmp_path / "m" / "1"), art)
    before = (tmp_path / "m" / "1" / "manifest.json").read_bytes()
    with pytest.raises(ArtifactError, match="never overwritten"):
        artifacts.save(str(tmp_path / "m" / "1"), ModelArtifact(LinearRegression().fit(x, -y)))
    assert (tmp_path / "m" / "1" / "manifest.json").read_bytes() == before
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["1"]


def test_fsspec_memory_filesystem_round_trip() -> None:
    from sklearn.linear_model import LinearRegression

    x, y = _data()
    model = LinearRegression().fit(x, y)
    packed = artifacts.save("memory://headwater-test/models/m/1", ModelArtifact(model, FEATURES))
    loaded = artifacts.load("memory://headwater-test/models/m/1", checksum=packed.checksum)
    np.testing.assert_array_equal(loaded.estimator.predict(x), model.predict(x))
    with pytest.raises(ArtifactError, match="already exists"):
        artifacts.save("memory://headwater-test/models/m/1", ModelArtifact(model))
