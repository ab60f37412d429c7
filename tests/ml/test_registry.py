"""The model registry contract, on a SQLite file and on PostgreSQL: versions, aliases, the gate."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from headwater.clock import FakeClock
from headwater.errors import StoreError
from headwater.ml.artifacts import ArtifactCorruptError, ArtifactMissingError, ModelArtifact, UnsafeArtifactError
from headwater.ml.registry import (
    AliasNotFoundError,
    BetterThanChampion,
    ModelNotFoundError,
    ModelVersion,
    ModelVersionNotFoundError,
    RegistryError,
    ValidationGateError,
    parse_ref,
)
from headwater.ml.registry_sql import SqlModelRegistry, memory_registry
from headwater.store.sql import SqlStore, open_store
from tests.store.conftest import store_url

__all__ = ["store_url"]

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SIGNATURE = {"inputs": [{"name": "rooms", "dtype": "Float64"}, {"name": "city", "dtype": "String"}],
             "outputs": [{"name": "price", "dtype": "Float64"}]}


def _model(k: float = 1.0) -> ModelArtifact:
    from sklearn.linear_model import LinearRegression

    x = np.arange(20, dtype=float).reshape(10, 2)
    return ModelArtifact(LinearRegression().fit(x, x[:, 0] * k), {"scale": k})


def _metrics(rmse: float, data_hash: str = "h-test") -> dict[str, object]:
    return {"test": {"rmse": rmse, "r2": 0.9}, "validation": {"rmse": rmse * 0.9}}


def _lineage(data_hash: str = "h-test") -> dict[str, object]:
    return {"dag_id": "train", "run_id": "r1", "task_id": "fit", "splits": {"test": {"data_hash": data_hash}}}


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    with open_store(store_url, create=True) as s:
        yield s


@pytest.fixture
def registry(store: SqlStore, tmp_path: Path) -> SqlModelRegistry:
    return SqlModelRegistry(store, tmp_path / "models", clock=FakeClock(T0))


def _register(reg: SqlModelRegistry, name: str = "house", rmse: float = 1.0, data_hash: str = "h-test",
              k: float = 1.0) -> ModelVersion:
    return reg.register(name, _model(k), signature=SIGNATURE, profile={"rooms": {"count": 10}},
                        metrics=_metrics(rmse), params={"alpha": 0.1}, lineage=_lineage(data_hash), author="ana")


def test_register_numbers_versions_per_name_and_keeps_everything(registry: SqlModelRegistry, tmp_path: Path) -> None:
    v1 = _register(registry)
    v2 = _register(registry, k=2.0)
    other = _register(registry, "churn")
    assert (v1.version, v2.version, other.version) == (1, 2, 1)
    assert v2.artifact_uri == f"{tmp_path / 'models'}/house/2"
    assert (tmp_path / "models" / "house" / "2" / "manifest.json").exists()

    got = registry.get("house", 2)
    assert got == v2
    assert (got.status, got.author, got.format, got.created_at) == ("registered", "ana", "skops", T0)
    assert got.signature == SIGNATURE and got.params == {"alpha": 0.1} and got.profile == {"rooms": {"count": 10}}
    assert got.lineage["splits"] == {"test": {"data_hash": "h-test"}}
    assert got.metric("test", "rmse") == 1.0 and got.metric("test", "nope") is None
    assert len(got.checksum) == 64

    assert [v.version for v in registry.list_versions("house")] == [1, 2]
    summaries = {m.name: m for m in registry.list_models()}
    assert sorted(summaries) == ["churn", "house"]
    assert (summaries["house"].versions, summaries["house"].latest, summaries["house"].updated_at) == (2, 2, T0)


def test_resolve_by_version_alias_and_name(registry: SqlModelRegistry) -> None:
    _register(registry)
    _register(registry)
    _register(registry)
    registry.set_alias("house", "challenger", 2, who="ana", why="try it")
    assert registry.resolve("house:1").version == 1
    assert registry.resolve("house@challenger").version == 2
    assert registry.resolve("house").version == 3
    assert parse_ref("a.b-c@x") == ("a.b-c", None, "x")
    for bad in ("house:0", "house:x", "ho use", "house@1x", ""):
        with pytest.raises(RegistryError):
            registry.resolve(bad)


def test_unknown_names_versions_and_aliases_say_what_exists(registry: SqlModelRegistry) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        registry.resolve("house")
    assert info.value.hint == "no model is registered yet"
    _register(registry)
    _register(registry)
    registry.set_alias("house", "challenger", 1, who="ana", why="x")
    with pytest.raises(ModelNotFoundError) as info:
        registry.get("huose", 1)
    assert info.value.message == "no model named 'huose' is registered"
    assert info.value.hint == "did you mean 'house'?"
    with pytest.raises(ModelVersionNotFoundError) as info2:
        registry.resolve("house:7")
    assert (info2.value.message, info2.value.hint) == ("model 'house' has no version 7", "its versions: 1, 2")
    with pytest.raises(AliasNotFoundError) as info3:
        registry.resolve("house@challanger")
    assert info3.value.hint == "did you mean 'challenger'?"
    with pytest.raises(ModelNotFoundError):
        registry.list_versions("nope")


def test_aliases_move_with_history(registry: SqlModelRegistry) -> None:
    for _ in range(3):
        _register(registry)
    first = registry.set_alias("house", "challenger", 1, who="ana", why="first try")
    assert (first.from_version, first.to_version) == (None, 1)
    registry.set_alias("house", "challenger", 3, who="bo", why="better features")
    registry.set_alias("house", "shadow", 2, who="bo", why="compare")
    assert {(a.alias, a.version, a.updated_by) for a in registry.aliases("house")} == {
        ("challenger", 3, "bo"), ("shadow", 2, "bo")}
    moves = registry.alias_history("house", "challenger")
    assert [(m.from_version, m.to_version, m.who, m.why) for m in moves] == [
        (None, 1, "ana", "first try"), (1, 3, "bo", "better features")]
    assert moves[0].moved_at == T0
    assert len(registry.alias_history("house")) == 3
    assert registry.list_models()[0].aliases == {"challenger": 3, "shadow": 2}
    with pytest.raises(ModelVersionNotFoundError):
        registry.set_alias("house", "challenger", 9, who="bo", why="typo")
    assert registry.resolve("house@challenger").version == 3


def test_champion_needs_an_approved_version(registry: SqlModelRegistry) -> None:
    _register(registry)
    _register(registry)
    with pytest.raises(ValidationGateError) as info:
        registry.set_alias("house", "champion", 1, who="ana", why="ship it")
    assert "registered, and only an approved version can be champion" in info.value.message
    assert "headwater models promote house 1" in (info.value.hint or "")
    assert registry.aliases("house") == []

    approved = registry.approve("house", 1, who="ana", reason="looked at the plots")
    assert (approved.status, approved.status_by, approved.status_reason) == ("approved", "ana", "looked at the plots")
    registry.set_alias("house", "champion", 1, who="ana", why="ship it")
    assert registry.resolve("house@champion").version == 1

    promoted = registry.promote("house", 2, who="bo", reason="better on the holdout")
    assert promoted.status == "approved" and registry.get("house", 2).status == "approved"
    assert registry.resolve("house@champion").version == 2
    moves = registry.alias_history("house", "champion")
    assert [(m.from_version, m.to_version, m.why) for m in moves] == [
        (None, 1, "ship it"), (1, 2, "better on the holdout")]


def test_rejected_versions_stay_registered_and_cannot_be_promoted(registry: SqlModelRegistry) -> None:
    _register(registry)
    _register(registry)
    registry.promote("house", 1, who="ana", reason="baseline")
    rejected = registry.reject("house", 2, who="bo", reason="leaks the target")
    assert (rejected.status, rejected.status_reason) == ("rejected", "leaks the target")
    assert registry.get("house", 2).status == "rejected"
    with pytest.raises(ValidationGateError) as info:
        registry.promote("house", 2, who="bo", reason="oops")
    assert "was rejected (leaks the target)" in info.value.message
    assert registry.resolve("house@champion").version == 1
    with pytest.raises(ValidationGateError, match="rejected: leaks the target"):
        registry.set_alias("house", "champion", 2, who="bo", why="sneak")
    # Another alias may point at it (to keep shadow-scoring it, say); champion is the gate.
    registry.set_alias("house", "suspect", 2, who="bo", why="look again")
    with pytest.raises(ValidationGateError, match="is the champion and cannot be rejected"):
        registry.reject("house", 1, who="bo", reason="x")
    overruled = registry.promote("house", 2, who="cy", reason="the leak was a false alarm", force=True)
    assert overruled.status == "approved" and registry.resolve("house@champion").version == 2


def test_better_than_champion_policy_approves_rejects_and_records_why(registry: SqlModelRegistry) -> None:
    policy = BetterThanChampion(metric="rmse", by=0.02, split="test")
    _register(registry, rmse=1.0)
    first = registry.evaluate_policy("house", 1, policy, promote=True)
    assert first.approved and "no champion yet" in first.reason
    assert registry.resolve("house@champion").version == 1

    _register(registry, rmse=0.99)  # 1% better: not enough
    d2 = registry.evaluate_policy("house", 2, policy, promote=True)
    assert not d2.approved
    v2 = registry.get("house", 2)
    assert v2.status == "rejected" and v2.status_by == "policy"
    assert v2.status_reason == d2.reason
    assert "test rmse 0.99 vs champion version 1 1: +1.00% better, needs +2.00%" in v2.status_reason

    _register(registry, rmse=0.97, data_hash="other")  # better, but on another test split
    d3 = registry.evaluate_policy("house", 3, policy, promote=True)
    assert not d3.approved and "split differs" in d3.reason

    _register(registry, rmse=0.98)  # exactly 2% better on the same split
    d4 = registry.evaluate_policy("house", 4, policy, promote=True)
    assert d4.approved, d4.reason
    assert registry.resolve("house@champion").version == 4
    assert registry.alias_history("house", "champion")[-1].why == d4.reason

    _register(registry, rmse=0.5)  # approved without promote: champion stays
    assert registry.evaluate_policy("house", 5, policy).approved
    assert registry.get("house", 5).status == "approved" and registry.resolve("house@champion").version == 4

    higher = BetterThanChampion(metric="r2", by=0.0)
    _register(registry, rmse=0.1)  # r2 0.9 equals the champion's: not better
    assert not registry.evaluate_policy("house", 6, higher).approved


def test_load_checks_the_artifact_against_the_registry(registry: SqlModelRegistry, tmp_path: Path) -> None:
    v1 = _register(registry, k=3.0)
    registry.promote("house", 1, who="ana", reason="ok")
    loaded = registry.load("house@champion")
    assert (loaded.version.ref, loaded.version.checksum, loaded.version.status) == ("house:1", v1.checksum, "approved")
    assert loaded.feature_state == {"scale": 3.0}
    assert loaded.estimator.predict(np.array([[2.0, 3.0]]))[0] == pytest.approx(6.0)

    (tmp_path / "models" / "house" / "1" / "features.json").write_text('{"scale": 4.0}')
    with pytest.raises(ArtifactCorruptError, match=r"model house version 1 is corrupt: features\.json"):
        registry.load("house:1")
    v2 = _register(registry)
    for f in (tmp_path / "models" / "house" / "2").iterdir():
        f.unlink()
    with pytest.raises(ArtifactMissingError, match="model house version 2 is missing"):
        registry.load(v2.ref)


class Opaque:
    def predict(self, x: object) -> object:
        return x


def test_pickled_models_register_and_load_only_with_opt_in(registry: SqlModelRegistry) -> None:
    with pytest.raises(UnsafeArtifactError):
        registry.register("odd", ModelArtifact(Opaque()))
    with pytest.raises(ModelNotFoundError):
        registry.resolve("odd")  # nothing was recorded
    v = registry.register("odd", ModelArtifact(Opaque()), allow_pickle=True)
    assert v.format == "pickle"
    with pytest.raises(UnsafeArtifactError):
        registry.load("odd")
    assert isinstance(registry.load("odd", allow_pickle=True).estimator, Opaque)


def test_records_that_are_not_json_are_refused_before_anything_is_written(registry: SqlModelRegistry,
                                                                          tmp_path: Path) -> None:
    with pytest.raises(RegistryError) as info:
        registry.register("house", _model(), metrics={"test": {"rmse": np.float32(0.5)}})
    assert info.value.message.startswith("metrics cannot be stored as JSON")
    with pytest.raises(RegistryError, match="params must be a dict, not list"):
        registry.register("house", _model(), params=[1, 2])  # type: ignore[arg-type]
    assert not (tmp_path / "models").exists()


def test_a_failed_artifact_write_leaves_no_version(registry: SqlModelRegistry, tmp_path: Path) -> None:
    (tmp_path / "models" / "house" / "1").mkdir(parents=True)
    (tmp_path / "models" / "house" / "1" / "leftover").write_text("x")
    with pytest.raises(Exception, match="never overwritten"):
        _register(registry)
    with pytest.raises(ModelNotFoundError):
        registry.resolve("house")


def test_concurrent_registrations_get_distinct_versions(store_url: str, tmp_path: Path) -> None:
    threads_n, each = 4, 5
    stores = [open_store(store_url, create=(i == 0)) for i in range(threads_n)]
    registries = [SqlModelRegistry(s, tmp_path / "models") for s in stores]
    barrier = threading.Barrier(threads_n)
    got: list[int] = []
    errors: list[BaseException] = []

    def work(reg: SqlModelRegistry) -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(each):
                got.append(_register(reg).version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(r,)) for r in registries]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for s in stores:
        s.close()
    assert errors == []
    assert sorted(got) == list(range(1, threads_n * each + 1))
    assert sorted(p.name for p in (tmp_path / "models" / "house").iterdir()) == sorted(map(str, got))


@pytest.mark.slow
def test_registrations_from_several_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'headwater.db'}"
    open_store(url, create=True).close()
    script = Path(__file__).with_name("registry_writer.py")
    writers, each = 3, 4
    procs = [
        subprocess.Popen([sys.executable, str(script), url, str(tmp_path / "models"), str(tmp_path), str(w),
                          str(each)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(writers)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("ready-*"))) < writers and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        (tmp_path / "go").touch()
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    versions = []
    for code, out, err in results:
        assert code == 0, err
        versions += [int(v) for v in out.split()]
    assert sorted(versions) == list(range(1, writers * each + 1))
    with open_store(url) as st:
        reg = SqlModelRegistry(st, tmp_path / "models")
        recorded = reg.list_versions("house")
        assert [v.version for v in recorded] == sorted(versions)
        for v in recorded:  # every artifact is where its row says, and intact
            assert reg.load(v.ref).feature_state == {"writer": int(v.author[1:])}


def test_concurrent_alias_moves_all_land_in_the_history(store_url: str, tmp_path: Path) -> None:
    threads_n = 4
    stores = [open_store(store_url, create=(i == 0)) for i in range(threads_n)]
    registries = [SqlModelRegistry(s, tmp_path / "models") for s in stores]
    for _ in range(threads_n):
        _register(registries[0])
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            # Every thread makes the alias's first move at once: one inserts, the others update.
            registries[i].set_alias("house", "challenger", i + 1, who=f"t{i}", why="race")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    moves = registries[0].alias_history("house", "challenger")
    final = registries[0].resolve("house@challenger").version
    for st in stores:
        st.close()
    assert errors == []
    assert len(moves) == threads_n and moves[0].from_version is None
    # Each move starts where the one before it ended: no move was lost or interleaved.
    assert [m.from_version for m in moves[1:]] == [m.to_version for m in moves[:-1]]
    assert final == moves[-1].to_version


def test_registry_on_a_database_at_revision_0001_says_to_upgrade(store: SqlStore, tmp_path: Path) -> None:
    from alembic import command

    from headwater.store.sql import alembic_config

    store.set_pool("gpu", 2, "kept across the upgrade")
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")
    with pytest.raises(StoreError) as info:
        store.check()
    assert info.value.hint == "run `headwater db upgrade`"
    reg = SqlModelRegistry(store, tmp_path / "models")
    with pytest.raises(StoreError) as info:
        reg.list_models()
    assert info.value.hint == "run `headwater db upgrade`"
    store.init()  # what `headwater db upgrade` does
    store.check()
    assert store.get_pool("gpu") is not None
    assert _register(reg).version == 1


def test_memory_registry_keeps_nothing_outside_the_process() -> None:
    first, second = memory_registry(), memory_registry()
    v = _register(first)
    assert v.artifact_uri.startswith("memory://")
    first.promote("house", 1, who="ana", reason="ok")
    assert first.load("house@champion").feature_state == {"scale": 1.0}
    with pytest.raises(ModelNotFoundError):
        second.resolve("house")  # each one is its own registry
