"""``headwater models ...`` through the real CLI in subprocesses, on a real SQLite file."""

from __future__ import annotations

import numpy as np
import pytest

from headwater.ml.artifacts import ModelArtifact
from headwater.ml.registry_sql import SqlModelRegistry, open_registry
from tests.cli.conftest import Home

SIGNATURE = {"inputs": [{"name": "rooms", "dtype": "Float64"}, {"name": "city", "dtype": "String"}],
             "outputs": [{"name": "predicted_price", "dtype": "Float64"}]}


def _registry(home: Home) -> SqlModelRegistry:
    return open_registry(home.settings)


@pytest.fixture
def house(home: Home) -> SqlModelRegistry:
    """``house_prices`` with three versions (test RMSE 1.0, 0.9, 1.2) on the same test split."""
    from sklearn.linear_model import Ridge

    reg = _registry(home)
    x = np.arange(30, dtype=float).reshape(10, 3)
    for i, rmse in enumerate([1.0, 0.9, 1.2], start=1):
        reg.register(
            "house_prices", ModelArtifact(Ridge(alpha=i).fit(x, x[:, 0]), {"k": i}), SIGNATURE,
            {"rooms": {"count": 10}},
            # Shaped as the training helper records them: splits, the mean predictor's baseline,
            # importances and step timings.
            {"test": {"rmse": rmse, "r2": 0.8 + i / 100}, "baseline": {"test": {"rmse": 2.0}},
             "importances": {"method": "permutation", "values": {"rooms": 0.7, "city_paris": 0.2}},
             "timings": {"fit_estimator": 0.25}},
            {"alpha": i, "depth": 6},
            {"dag_id": "train_house", "run_id": f"manual__{i}", "feature_source_hash": "sha256:" + "ab" * 32,
             "splits": {"test": {"data_hash": "feedbeef0123", "rows": 300}}},
            "ana",
        )
    return reg


def _lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


def test_list_shows_models_with_versions_and_champion(home: Home, house: SqlModelRegistry) -> None:
    empty = home.cli("models", "show", "house_prices@champion")
    assert empty.returncode == 1
    assert "error: model 'house_prices' has no alias 'champion'" in empty.stderr
    house.promote("house_prices", 2, who="ana", reason="best so far")
    house.set_alias("house_prices", "challenger", 3, who="bo", why="shadow")
    out = home.cli("models", "list", check=True).stdout
    assert "house_prices 3 3 2" in " ".join(out.split())
    assert "challenger=3" in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_promote_asks_then_moves_champion_and_show_tells_the_story(home: Home, house: SqlModelRegistry) -> None:
    refused = home.cli("models", "promote", "house_prices", "2", "--reason", "lower rmse")
    assert refused.returncode == 1
    assert "promote house_prices version 2 to champion (no champion yet)?" in refused.stdout
    assert house.aliases("house_prices") == []

    typed = home.cli("models", "promote", "house_prices", "1", "--reason", "baseline", "--who", "ana", input="y\n")
    assert typed.returncode == 0, typed.stderr
    assert "house_prices version 1 is approved and champion" in typed.stdout
    done = home.cli("models", "promote", "house_prices", "2", "--reason", "lower test rmse on the same split",
                    "--who", "bo", "--yes", check=True)
    assert "house_prices version 2 is approved and champion (was version 1)" in done.stdout
    assert house.resolve("house_prices@champion").version == 2

    show = home.cli("models", "show", "house_prices@champion", check=True).stdout
    lines = _lines(show)
    assert lines[0] == "house_prices version 2 approved aliases: champion"
    assert "author: ana" in lines[1]
    assert any(line.startswith("approved by bo at") and line.endswith("on the same split") for line in lines)
    assert "input rooms Float64" in lines and "output predicted_price Float64" in lines
    assert "test rmse 0.9" in lines and "test r2 0.82" in lines
    assert "alpha = 2" in lines and "dag_id: train_house" in lines
    assert "baseline test rmse 2" in lines
    assert "importances (permutation, top 2 of 2)" in lines and lines.index("rooms 0.7") < lines.index("city_paris 0.2")
    assert "timings: fit_estimator 250 ms" in lines
    assert "feature_source_hash: sha256:abababababab…" in lines  # digests cut to 12 digits
    assert "test: data_hash=feedbeef0123 rows=300" in lines
    history = [line for line in lines if " champion " in f" {line} " and "->" in line]
    assert [h.split()[3:6] for h in history] == [["-", "->", "1"], ["1", "->", "2"]]
    # Tables fit 80 columns; one-line facts (a path, a reason) are never broken, as everywhere in the CLI.
    assert all(len(line) <= 80 for line in show.splitlines() if not line.startswith(("approved by", "artifact:")))


def test_reject_keeps_the_version_and_blocks_promotion(home: Home, house: SqlModelRegistry) -> None:
    out = home.cli("models", "reject", "house_prices", "3", "--reason", "worse on the test split", check=True)
    assert "house_prices version 3 is rejected" in out.stdout
    blocked = home.cli("models", "promote", "house_prices", "3", "--reason", "try", "--yes")
    assert blocked.returncode == 1
    assert "error: version 3 of model 'house_prices' was rejected (worse on the test split)" in blocked.stderr
    assert "hint: overrule the rejection with --force" in blocked.stderr
    gate = home.cli("models", "alias", "house_prices", "champion", "1", "--reason", "sneak")
    assert gate.returncode == 1
    assert "only an approved version can be champion" in gate.stderr
    approved = home.cli("models", "approve", "house_prices", "1", "--reason", "checked by hand", check=True)
    assert "house_prices version 1 is approved" in approved.stdout
    home.cli("models", "alias", "house_prices", "champion", "1", "--reason", "now it may", check=True)
    assert house.resolve("house_prices@champion").version == 1
    shown = _lines(home.cli("models", "show", "house_prices:3", check=True).stdout)
    assert shown[0] == "house_prices version 3 rejected"
    assert house.get("house_prices", 3).status_reason == "worse on the test split"


def test_alias_moves_and_unknown_names_get_a_did_you_mean(home: Home, house: SqlModelRegistry) -> None:
    first = home.cli("models", "alias", "house_prices", "challenger", "3", "--reason", "shadow it", check=True)
    assert "house_prices@challenger -> version 3 (new)" in first.stdout
    moved = home.cli("models", "alias", "house_prices", "challenger", "1", "--reason", "back", check=True)
    assert "house_prices@challenger -> version 1 (was version 3)" in moved.stdout
    assert [(m.from_version, m.to_version, m.why) for m in house.alias_history("house_prices")] == [
        (None, 3, "shadow it"), (3, 1, "back")]
    typo = home.cli("models", "show", "house_prises")
    assert typo.returncode == 1
    assert "error: no model named 'house_prises' is registered" in typo.stderr
    assert "hint: did you mean 'house_prices'?" in typo.stderr
    version = home.cli("models", "compare", "house_prices", "1", "9")
    assert "error: model 'house_prices' has no version 9" in version.stderr
    assert "hint: its versions: 1, 2, 3" in version.stderr


def test_compare_puts_metrics_side_by_side_with_the_change(home: Home, house: SqlModelRegistry) -> None:
    out = home.cli("models", "compare", "house_prices", "1", "2", check=True).stdout
    lines = _lines(out)
    assert lines[0] == "house_prices: version 1 registered vs version 2 registered"
    assert "test rmse 1 0.9 -0.1 (-10.0%)" in lines
    assert "test r2 0.81 0.82 +0.01 (+1.2%)" in lines
    assert "alpha 1 2" in lines
    assert "depth" not in out  # the same in both
    assert "baseline" not in out
    assert "baseline test rmse 2 2 +0 (+0.0%)" in _lines(home.cli("models", "compare", "house_prices", "1", "2",
                                                                  "--all", check=True).stdout)
    assert all(len(line) <= 80 for line in out.splitlines())


def test_models_on_a_database_not_yet_upgraded_says_to_upgrade(home: Home) -> None:
    from alembic import command

    from headwater.store.sql import alembic_config, open_store

    store = open_store(home.settings.db_url)
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")
    old = home.cli("models", "list")
    assert old.returncode == 1
    assert "hint: run `headwater db upgrade`" in old.stderr
    home.cli("db", "upgrade", check=True)
    assert "no models registered" in home.cli("models", "list", check=True).stdout
    store.close()


def test_the_models_commands_load_no_ml_library_until_an_artifact_is_read() -> None:
    import subprocess
    import sys

    probe = ("import sys, headwater.cli.app, headwater.cli.models, headwater.ml.registry_sql\n"
             "headwater.cli.app._register()\n"
             "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert {"sklearn", "lightgbm", "skops", "numpy", "alembic"} & set(out.stdout.split()) == set()


def test_show_verify_checks_the_artifact(home: Home, house: SqlModelRegistry) -> None:
    ok = home.cli("models", "show", "house_prices:1", "--verify", check=True)
    assert "artifact check: ok, 3 files match (" in ok.stdout
    folder = home.settings.home / "models" / "house_prices" / "1"
    (folder / "model.skops").write_bytes(b"not a model")
    bad = home.cli("models", "show", "house_prices:1", "--verify")
    assert bad.returncode == 1
    assert ("artifact check failed: model house_prices version 1 is corrupt: model.skops does not match its "
            "checksum") in " ".join(bad.stdout.split())
