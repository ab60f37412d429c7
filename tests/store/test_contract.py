"""The metadata-store contract, run on every backend (SQLite file, PostgreSQL schema)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading

import pytest
from sqlalchemy import text

from headwater.errors import DagNotFoundError, StoreError, UserError
from headwater.orchestration.spec import DagSpec, TaskSpec
from headwater.orchestration.states import RunState, RunType, TaskState
from headwater.store import schema
from headwater.store.base import (
    DagFileRecord,
    DagRunRecord,
    ImportErrorRecord,
    TaskInstanceRecord,
    TryRecord,
    UnitOfWork,
    XComRecord,
)
from headwater.store.sql import SqlStore, open_store

UTC = dt.UTC
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
PLUS2 = dt.timezone(dt.timedelta(hours=2))


def spec(dag_id: str, *, source_hash: str = "h1", tasks: tuple[str, ...] = ("a", "b"), **kw: object) -> DagSpec:
    ts = {t: TaskSpec(task_id=t, upstream=(tasks[i - 1],) if i else ()) for i, t in enumerate(tasks)}
    return DagSpec(dag_id=dag_id, tasks=ts, source_hash=source_hash, **kw)  # type: ignore[arg-type]


def dag_file(path: str, source_hash: str = "f1") -> DagFileRecord:
    return DagFileRecord(path=path, mtime=1700000000.5, size=123, source_hash=source_hash)


def run(dag_id: str = "d", run_id: str = "r1", day: int = 0, **kw: object) -> DagRunRecord:
    when = T0 + dt.timedelta(days=day)
    return DagRunRecord(
        dag_id=dag_id,
        run_id=run_id,
        logical_date=when,
        data_interval_start=when,
        data_interval_end=when + dt.timedelta(days=1),
        run_type=str(kw.pop("run_type", RunType.MANUAL)),
        **kw,  # type: ignore[arg-type]
    )


def tis(r: DagRunRecord, *task_ids: str) -> list[TaskInstanceRecord]:
    return [TaskInstanceRecord(dag_id=r.dag_id, run_id=r.run_id, task_id=t) for t in task_ids or ("a", "b")]


# -- lifecycle


def test_check_on_empty_database_says_to_run_init(empty_store: SqlStore) -> None:
    with pytest.raises(StoreError) as info:
        empty_store.check()
    assert info.value.hint == "run `headwater db init`"
    assert "not initialised" in info.value.message
    assert empty_store.safe_url in info.value.message


def test_methods_on_empty_database_say_to_run_init(empty_store: SqlStore) -> None:
    with pytest.raises(StoreError) as info:
        empty_store.list_dags()
    assert info.value.hint == "run `headwater db init`"
    assert "list the DAGs" in info.value.message


def test_init_is_idempotent_and_creates_default_pool(empty_store: SqlStore) -> None:
    empty_store.init()
    empty_store.set_pool("default_pool", 7, "resized")
    empty_store.init()
    empty_store.check()
    assert empty_store.schema_revision() == schema.SCHEMA_REVISION
    assert [(p.name, p.slots) for p in empty_store.list_pools()] == [("default_pool", 7)]


def test_open_store_creates_only_when_asked(store_url: str) -> None:
    with open_store(store_url) as plain, pytest.raises(StoreError):
        plain.check()
    with open_store(store_url, create=True) as created:
        created.check()
        pool = created.get_pool("default_pool")
    assert pool is not None
    assert (pool.slots, pool.description) == (schema.DEFAULT_POOL_SLOTS, schema.DEFAULT_POOL_DESCRIPTION)


def test_check_on_older_schema_says_to_upgrade(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # As if this headwater shipped a newer migration than the database has.
    monkeypatch.setattr(schema, "SCHEMA_REVISIONS", (*schema.SCHEMA_REVISIONS, "9999"))
    monkeypatch.setattr(schema, "SCHEMA_REVISION", "9999")
    with pytest.raises(StoreError) as info:
        store.check()
    assert info.value.hint == "run `headwater db upgrade`"
    assert "9999" in info.value.message


def test_check_on_newer_schema_says_so(store: SqlStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'zzzz'"))
    with pytest.raises(StoreError) as info:
        store.check()
    assert "zzzz" in info.value.message
    assert "newer" in info.value.message


def test_reset_drops_everything_and_recreates(store: SqlStore) -> None:
    r = store.create_run(run(), tis(run()))
    store.set_pool("gpu", 2)
    store.reset()
    store.check()
    assert store.get_run(r.dag_id, r.run_id) is None
    assert [p.name for p in store.list_pools()] == ["default_pool"]


# -- DAG files, DAGs and import errors


def test_record_parse_stores_dags_files_and_specs(store: SqlStore) -> None:
    s1 = spec("one", tags=("ml", "etl"), owner="ana", schedule="0 0 * * *", description="first", start_date=T0)
    s2 = spec("two", is_paused_upon_creation=True)
    store.record_parse(dag_file("/dags/f.py"), [s1, s2], [])
    one, two = store.list_dags()
    assert (one.dag_id, one.version, one.is_active, one.is_paused, one.fileloc) == ("one", 1, True, False, "/dags/f.py")
    assert one.spec == s1
    assert one.source_hash == "h1"
    assert one.last_parsed_at is not None and one.last_parsed_at.tzinfo == UTC
    assert two.is_paused
    files = store.get_dag_files()
    assert list(files) == ["/dags/f.py"]
    f = files["/dags/f.py"]
    assert (f.mtime, f.size, f.source_hash, f.dag_ids) == (1700000000.5, 123, "f1", ["one", "two"])


def test_version_bumps_only_when_source_hash_changes(store: SqlStore) -> None:
    store.record_parse(dag_file("/dags/f.py"), [spec("d", source_hash="h1")], [])
    store.set_paused("d", True)
    store.record_parse(dag_file("/dags/f.py"), [spec("d", source_hash="h1")], [])
    record = store.get_dag("d")
    assert record is not None and record.version == 1
    store.record_parse(dag_file("/dags/f.py", "f2"), [spec("d", source_hash="h2", tasks=("x",))], [])
    record = store.get_dag("d")
    assert record is not None
    assert (record.version, record.source_hash, list(record.spec.tasks)) == (2, "h2", ["x"])
    assert record.is_paused, "a re-parse must not unpause a DAG the user paused"


def test_file_hash_is_used_when_spec_has_none(store: SqlStore) -> None:
    store.record_parse(dag_file("/dags/f.py", "f1"), [spec("d", source_hash="")], [])
    store.record_parse(dag_file("/dags/f.py", "f2"), [spec("d", source_hash="")], [])
    record = store.get_dag("d")
    assert record is not None and (record.source_hash, record.version) == ("f2", 2)


def test_dags_gone_from_a_file_become_inactive(store: SqlStore) -> None:
    store.record_parse(dag_file("/dags/f.py"), [spec("a"), spec("b")], [])
    store.record_parse(dag_file("/dags/g.py"), [spec("c")], [])
    store.record_parse(dag_file("/dags/f.py"), [spec("a")], [])
    assert [d.dag_id for d in store.list_dags()] == ["a", "c"]
    everything = store.list_dags(include_inactive=True)
    assert [(d.dag_id, d.is_active) for d in everything] == [("a", True), ("b", False), ("c", True)]
    store.record_parse(dag_file("/dags/f.py"), [spec("a"), spec("b")], [])
    assert [d.dag_id for d in store.list_dags()] == ["a", "b", "c"]


def test_a_file_that_fails_to_import_keeps_its_dags(store: SqlStore) -> None:
    store.record_parse(dag_file("/dags/f.py"), [spec("a"), spec("b")], [])
    broken = ImportErrorRecord(path="/dags/f.py", message="SyntaxError: oops", lineno=1, kind="syntax")
    store.record_parse(dag_file("/dags/f.py", "f2"), [], [broken])
    assert [d.dag_id for d in store.list_dags()] == ["a", "b"]
    assert store.get_dag_files()["/dags/f.py"].source_hash == "f2"
    # One broken DAG among good ones: the good ones are what the file defines now.
    cycle = ImportErrorRecord(path="/dags/f.py", message="cycle in b", kind="cycle")
    store.record_parse(dag_file("/dags/f.py", "f3"), [spec("a")], [cycle])
    assert [d.dag_id for d in store.list_dags()] == ["a"]
    assert [e.message for e in store.list_import_errors()] == ["cycle in b"]
    # An empty file (no DAGs, no errors) defines nothing.
    store.record_parse(dag_file("/dags/f.py", "f4"), [], [])
    assert store.list_dags() == []


def test_import_errors_are_replaced_per_file(store: SqlStore) -> None:
    err = ImportErrorRecord(path="/dags/f.py", message="SyntaxError: bad", lineno=3, kind="syntax")
    other = ImportErrorRecord(path="/dags/g.py", message="cycle a -> b -> a", kind="cycle", created_at=T0)
    store.record_parse(dag_file("/dags/f.py"), [], [err])
    store.record_parse(dag_file("/dags/g.py"), [], [other])
    errors = store.list_import_errors()
    assert [(e.path, e.message, e.lineno, e.kind) for e in errors] == [
        ("/dags/f.py", "SyntaxError: bad", 3, "syntax"),
        ("/dags/g.py", "cycle a -> b -> a", None, "cycle"),
    ]
    assert errors[0].created_at is not None and errors[0].created_at.tzinfo == UTC
    assert errors[1].created_at == T0
    store.record_parse(dag_file("/dags/f.py"), [spec("d")], [])
    assert [e.path for e in store.list_import_errors()] == ["/dags/g.py"]


def test_remove_dag_file(store: SqlStore) -> None:
    store.record_parse(dag_file("/dags/f.py"), [spec("a")], [ImportErrorRecord("/dags/f.py", "half broken")])
    store.record_parse(dag_file("/dags/g.py"), [spec("b")], [])
    store.remove_dag_file("/dags/f.py")
    assert [d.dag_id for d in store.list_dags()] == ["b"]
    assert list(store.get_dag_files()) == ["/dags/g.py"]
    assert store.list_import_errors() == []
    gone = store.get_dag("a")
    assert gone is not None and not gone.is_active


def test_upsert_dag_versions_and_get(store: SqlStore) -> None:
    s = spec("adhoc", fileloc="/tmp/x.py", source_hash="h1")
    first = store.upsert_dag(s)
    assert (first.dag_id, first.version, first.fileloc, first.spec) == ("adhoc", 1, "/tmp/x.py", s)
    assert store.upsert_dag(s).version == 1
    assert store.upsert_dag(dataclasses.replace(s, source_hash="h2")).version == 2
    assert store.get_dag("nope") is None


def test_set_paused(store: SqlStore) -> None:
    store.upsert_dag(spec("d"))
    store.set_paused("d", True)
    assert store.get_dag("d").is_paused  # type: ignore[union-attr]
    store.set_paused("d", False)
    assert not store.get_dag("d").is_paused  # type: ignore[union-attr]
    with pytest.raises(DagNotFoundError, match="'nope'"):
        store.set_paused("nope", True)


# -- runs


def test_create_run_inserts_run_and_task_instances(store: SqlStore) -> None:
    r = run(conf={"lr": 0.1, "layers": [1, 2], "name": "ü"}, dag_version=3)
    created = store.create_run(r, tis(r, "a", "b", "c"))
    assert created.id is not None and created.created_at is not None
    assert created.created_at.tzinfo == UTC
    fetched = store.get_run("d", "r1")
    assert fetched == created
    assert fetched.conf == {"lr": 0.1, "layers": [1, 2], "name": "ü"}
    assert fetched.state is RunState.QUEUED
    assert [ti.task_id for ti in store.list_task_instances("d", "r1")] == ["a", "b", "c"]


def test_create_run_rejects_duplicate_run_id(store: SqlStore) -> None:
    store.create_run(run(run_id="r1", day=0), tis(run()))
    with pytest.raises(StoreError) as info:
        store.create_run(run(run_id="r1", day=5), tis(run(run_id="r1"), "a", "zzz"))
    assert "'d'" in info.value.message and "'r1'" in info.value.message
    assert info.value.hint is not None and "different run id" in info.value.hint
    assert "clear the existing run" in info.value.hint
    assert [ti.task_id for ti in store.list_task_instances("d")] == ["a", "b"]


def test_create_run_rejects_duplicate_logical_date(store: SqlStore) -> None:
    store.create_run(run(run_id="r1", day=0), [])
    with pytest.raises(StoreError) as info:
        store.create_run(run(run_id="r2", day=0), tis(run(run_id="r2")))
    assert "2024-01-01T00:00:00+00:00" in info.value.message
    assert "'r1'" in info.value.message and "'r2'" in info.value.message
    assert store.get_run("d", "r2") is None
    assert store.list_task_instances("d", "r2") == []


def test_find_run_by_logical_date_in_any_zone(store: SqlStore) -> None:
    store.create_run(run(day=1), [])
    found = store.find_run("d", (T0 + dt.timedelta(days=1)).astimezone(PLUS2))
    assert found is not None and found.run_id == "r1"
    assert found.logical_date == T0 + dt.timedelta(days=1) and found.logical_date.tzinfo == UTC
    assert store.find_run("d", T0) is None
    assert store.get_run("d", "nope") is None


def test_list_runs_filters_order_and_pagination(store: SqlStore) -> None:
    for day in range(6):
        kind = RunType.SCHEDULED if day % 2 == 0 else RunType.MANUAL
        state = RunState.SUCCESS if day < 3 else RunState.RUNNING
        store.create_run(run(run_id=f"r{day}", day=day, run_type=kind, state=state), [])
    store.create_run(run("other", "r0", day=0), [])

    def ids(**kw: object) -> list[str]:
        return [r.run_id for r in store.list_runs("d", **kw)]  # type: ignore[arg-type]

    assert ids() == ["r5", "r4", "r3", "r2", "r1", "r0"]
    assert ids(newest_first=False) == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert ids(states=[RunState.RUNNING]) == ["r5", "r4", "r3"]
    assert ids(states=[]) == []
    assert ids(run_types=[RunType.SCHEDULED]) == ["r4", "r2", "r0"]
    assert ids(run_types=["manual"], states=[RunState.SUCCESS]) == ["r1"]
    assert ids(start=T0 + dt.timedelta(days=1), end=T0 + dt.timedelta(days=3)) == ["r3", "r2", "r1"]
    assert ids(start=(T0 + dt.timedelta(days=4)).astimezone(PLUS2)) == ["r5", "r4"]
    assert ids(limit=2) == ["r5", "r4"]
    assert ids(limit=2, offset=2) == ["r3", "r2"]
    assert ids(limit=None, offset=4) == ["r1", "r0"]
    assert len(store.list_runs()) == 7
    assert [(r.dag_id, r.run_id) for r in store.list_runs(limit=1, newest_first=False)] in (
        [("d", "r0")],
        [("other", "r0")],
    )


def test_latest_runs_of_many_dags_in_one_call(store: SqlStore) -> None:
    for day in range(5):
        kind = RunType.SCHEDULED if day % 2 == 0 else RunType.MANUAL
        store.create_run(run(run_id=f"r{day}", day=day, run_type=kind), [])
    store.create_run(run("other", "o0", day=0), [])
    store.create_run(run("other", "o1", day=3), [])
    store.create_run(run("not-asked", "n0", day=9), [])

    def ids(found: dict[str, list[DagRunRecord]]) -> dict[str, list[str]]:
        return {dag: [r.run_id for r in runs] for dag, runs in found.items()}

    assert ids(store.latest_runs(["d", "other", "none"], 2)) == {"d": ["r4", "r3"], "other": ["o1", "o0"], "none": []}
    assert ids(store.latest_runs(["d", "other"], 1, run_types=[RunType.SCHEDULED])) == {"d": ["r4"], "other": []}
    assert ids(store.latest_runs(["d"], 10, run_types=["manual"])) == {"d": ["r3", "r1"]}
    assert ids(store.latest_runs(["d", "d"], 9)) == {"d": ["r4", "r3", "r2", "r1", "r0"]}
    assert store.latest_runs([], 3) == {} and store.latest_runs(["d"], 0) == {"d": []}
    # the records are whole: the same as list_runs gives
    assert store.latest_runs(["other"], 1)["other"] == store.list_runs("other", limit=1)


# -- task instances and tries


def full_ti(r: DagRunRecord, task_id: str = "a") -> TaskInstanceRecord:
    return TaskInstanceRecord(
        dag_id=r.dag_id,
        run_id=r.run_id,
        task_id=task_id,
        state=TaskState.UP_FOR_RETRY,
        try_number=2,
        max_tries=4,
        operator="PythonOperator",
        pool="gpu",
        pool_slots=3,
        start_date=dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=PLUS2),
        end_date=dt.datetime(2024, 1, 2, 2, 0, tzinfo=UTC),
        duration=12.25,
        queued_at=dt.datetime(2024, 1, 2, tzinfo=UTC),
        hostname="worker-1",
        pid=4242,
        next_attempt_at=dt.datetime(2024, 1, 2, 5, tzinfo=UTC),
        sensor_started_at=dt.datetime(2024, 1, 2, 0, 30, tzinfo=UTC),
        reason="boom: ValueError('x')",
        rendered={"bash_command": "echo 2024-01-01", "é": "ü"},
        updated_at=dt.datetime(2024, 1, 2, 2, 0, 1, tzinfo=UTC),
    )


def test_task_instance_round_trip_keeps_every_field(store: SqlStore) -> None:
    r = store.create_run(run(), [])
    ti = full_ti(r)
    store.commit(UnitOfWork(task_instances=[ti]))
    got = store.get_task_instance("d", "r1", "a")
    assert got == ti
    assert got is not None
    assert got.start_date is not None and got.start_date.tzinfo == UTC
    assert got.start_date.hour == 1  # 03:04 at +02:00
    assert got.state is TaskState.UP_FOR_RETRY
    assert store.get_task_instance("d", "r1", "nope") is None


def test_commit_upserts_task_instances_and_stamps_updated_at(store: SqlStore) -> None:
    r = store.create_run(run(), tis(run()))
    a, b = store.list_task_instances("d", "r1")
    a.state, a.try_number = TaskState.QUEUED, 1
    a.updated_at = None
    store.commit(UnitOfWork(task_instances=[a]))
    got = store.get_task_instance(r.dag_id, r.run_id, "a")
    assert got is not None and (got.state, got.try_number) == (TaskState.QUEUED, 1)
    assert got.updated_at is not None and got.updated_at.tzinfo == UTC
    assert store.get_task_instance(r.dag_id, r.run_id, "b") == b


def test_list_task_instances_filters(store: SqlStore) -> None:
    r1 = store.create_run(run(run_id="r1", day=0), tis(run(run_id="r1"), "a", "b", "c"))
    store.create_run(run(run_id="r2", day=1), tis(run(run_id="r2"), "a"))
    store.create_run(run("e", "r1", day=0), tis(run("e", "r1"), "z"))
    b = store.get_task_instance("d", "r1", "b")
    assert b is not None
    b.state = TaskState.RUNNING
    store.commit(UnitOfWork(task_instances=[b]))

    def keys(*args: str | None, **kw: object) -> list[tuple[str, str, str]]:
        return [(t.dag_id, t.run_id, t.task_id) for t in store.list_task_instances(*args, **kw)]  # type: ignore[arg-type]

    assert len(keys()) == 5
    assert keys("d", r1.run_id) == [("d", "r1", "a"), ("d", "r1", "b"), ("d", "r1", "c")]
    assert keys("d") == [("d", "r1", "a"), ("d", "r1", "b"), ("d", "r1", "c"), ("d", "r2", "a")]
    assert keys(None, "r1", task_ids=["a", "z"]) == [("d", "r1", "a"), ("e", "r1", "z")]
    assert keys(states=[TaskState.RUNNING]) == [("d", "r1", "b")]
    assert keys(states=[TaskState.NONE, TaskState.RUNNING], task_ids=["b", "c"]) == [
        ("d", "r1", "b"),
        ("d", "r1", "c"),
    ]
    assert keys(task_ids=[]) == []


def test_tries_round_trip_in_order(store: SqlStore) -> None:
    store.create_run(run(), tis(run()))
    second = TryRecord(
        dag_id="d",
        run_id="r1",
        task_id="a",
        try_number=2,
        state=TaskState.RUNNING,
        start_date=dt.datetime(2024, 1, 1, 5, tzinfo=PLUS2),
        hostname="h",
        pid=7,
        log_path="/logs/d/r1/a/2.log",
        operator="BashOperator",
    )
    first = TryRecord("d", "r1", "a", 1, TaskState.FAILED, T0, T0, 1.5, "exit 1", "h", 6, "/l/1.log", "BashOperator")
    store.commit(UnitOfWork(tries=[second, first]))
    assert store.list_tries("d", "r1", "a") == [first, second]
    finished = dataclasses.replace(second, state=TaskState.SUCCESS, end_date=T0, duration=3.0)
    store.commit(UnitOfWork(tries=[finished]))
    assert store.list_tries("d", "r1", "a") == [first, finished]
    assert store.list_tries("d", "r1", "b") == []


def test_commit_of_runs_upserts_and_keeps_created_at(store: SqlStore) -> None:
    created = store.create_run(run(), [])
    changed = dataclasses.replace(created, state=RunState.RUNNING, start_date=T0, created_at=None)
    fresh = run(run_id="r2", day=1)
    store.commit(UnitOfWork(runs=[changed, fresh]))
    got = store.get_run("d", "r1")
    assert got is not None
    assert (got.state, got.start_date, got.created_at, got.id) == (
        RunState.RUNNING,
        T0,
        created.created_at,
        created.id,
    )
    assert store.get_run("d", "r2") is not None


def test_failing_unit_of_work_writes_nothing(store: SqlStore) -> None:
    store.create_run(run(), tis(run()))
    a = store.get_task_instance("d", "r1", "a")
    assert a is not None
    a.state = TaskState.SUCCESS
    good_xcom = XComRecord("d", "r1", "a", "return_value", {"kind": "json", "value": 1})
    # A try of a task instance that does not exist breaks the foreign key, last in the unit.
    orphan = TryRecord("d", "r1", "no-such-task", 1, TaskState.FAILED)
    work = UnitOfWork(task_instances=[a], runs=[run(run_id="r9", day=9)], xcoms=[good_xcom], tries=[orphan])
    with pytest.raises(StoreError) as info:
        store.commit(work)
    assert store.safe_url in info.value.message
    assert store.get_task_instance("d", "r1", "a").state is TaskState.NONE  # type: ignore[union-attr]
    assert store.get_run("d", "r9") is None
    assert store.get_xcoms("d", "r1") == []


def test_unit_reusing_a_logical_date_writes_nothing(store: SqlStore) -> None:
    store.create_run(run(), tis(run()))
    a = store.get_task_instance("d", "r1", "a")
    assert a is not None
    a.state = TaskState.RUNNING
    with pytest.raises(StoreError):
        store.commit(UnitOfWork(task_instances=[a], runs=[run(run_id="clash", day=0)]))
    assert store.get_task_instance("d", "r1", "a").state is TaskState.NONE  # type: ignore[union-attr]


def test_empty_unit_of_work_is_a_no_op(store: SqlStore) -> None:
    store.commit(UnitOfWork())
    assert store.list_task_instances() == []


# -- results


def test_xcoms_upsert_filter_and_clear(store: SqlStore) -> None:
    store.create_run(run(), tis(run(), "a", "b"))
    v1 = {"kind": "json", "value": {"rows": 10, "names": ["x", "ÿ"]}}
    store.commit(
        UnitOfWork(
            xcoms=[
                XComRecord("d", "r1", "a", "return_value", v1),
                XComRecord("d", "r1", "a", "extra", {"kind": "json", "value": None}, created_at=T0),
                XComRecord("d", "r1", "b", "return_value", {"kind": "file", "path": "/art/b.pkl"}),
            ]
        )
    )
    all_ = store.get_xcoms("d", "r1")
    assert [(x.task_id, x.key) for x in all_] == [("a", "extra"), ("a", "return_value"), ("b", "return_value")]
    assert all_[1].value == v1
    assert all_[0].created_at == T0
    assert all_[1].created_at is not None and all_[1].created_at.tzinfo == UTC
    assert [x.key for x in store.get_xcoms("d", "r1", task_ids=["a"])] == ["extra", "return_value"]
    assert [x.task_id for x in store.get_xcoms("d", "r1", key="return_value")] == ["a", "b"]
    assert store.get_xcoms("d", "r1", task_ids=[]) == []

    store.commit(UnitOfWork(xcoms=[XComRecord("d", "r1", "b", "return_value", {"kind": "json", "value": 2})]))
    assert store.get_xcoms("d", "r1", ["b"])[0].value == {"kind": "json", "value": 2}

    # Clearing and writing the same task in one unit replaces its results.
    new = XComRecord("d", "r1", "a", "return_value", {"kind": "json", "value": "again"})
    store.commit(UnitOfWork(clear_xcoms=[("d", "r1", "a")], xcoms=[new]))
    assert [(x.task_id, x.key, x.value) for x in store.get_xcoms("d", "r1")] == [
        ("a", "return_value", {"kind": "json", "value": "again"}),
        ("b", "return_value", {"kind": "json", "value": 2}),
    ]
    store.commit(UnitOfWork(clear_xcoms=[("d", "r1", "a"), ("d", "r1", "b")]))
    assert store.get_xcoms("d", "r1") == []


# -- pools


def test_pools_crud_and_default_pool(store: SqlStore) -> None:
    assert [(p.name, p.slots, p.description) for p in store.list_pools()] == [("default_pool", 128, "Default pool")]
    assert store.set_pool("gpu", 2, "two cards").slots == 2
    store.set_pool("gpu", 4)
    store.set_pool("api", 1, "rate limited")
    assert [(p.name, p.slots, p.description) for p in store.list_pools()] == [
        ("api", 1, "rate limited"),
        ("default_pool", 128, "Default pool"),
        ("gpu", 4, ""),
    ]
    gpu = store.get_pool("gpu")
    assert gpu is not None and gpu.slots == 4
    store.delete_pool("gpu")
    assert store.get_pool("gpu") is None
    with pytest.raises(UserError, match="no pool named 'gpu'"):
        store.delete_pool("gpu")
    with pytest.raises(UserError, match="cannot be deleted") as info:
        store.delete_pool("default_pool")
    assert info.value.hint is not None and "pools set default_pool" in info.value.hint
    assert store.get_pool("default_pool") is not None


# -- scheduler jobs


def test_scheduler_jobs(store: SqlStore) -> None:
    one = store.start_scheduler_job("host-a", 100, T0)
    two = store.start_scheduler_job("host-b", 200, T0.astimezone(PLUS2))
    assert one.id != two.id
    assert (one.hostname, one.pid, one.started_at, one.heartbeat_at, one.state) == ("host-a", 100, T0, T0, "running")
    later = T0 + dt.timedelta(seconds=5)
    store.heartbeat(one.id, later)
    running = store.list_scheduler_jobs()
    assert [(j.id, j.heartbeat_at) for j in running] == [(one.id, later), (two.id, T0)]
    assert running[1].started_at.tzinfo == UTC
    store.end_scheduler_job(two.id, later)
    assert [j.id for j in store.list_scheduler_jobs()] == [one.id]
    ended = store.list_scheduler_jobs(running_only=False)[1]
    assert (ended.id, ended.state, ended.heartbeat_at) == (two.id, "ended", later)


# -- two stores on one database (two processes' view)


def test_second_store_sees_committed_writes(store: SqlStore, store_url: str) -> None:
    with open_store(store_url) as other:
        other.check()
        other.create_run(run(), tis(run()))
    got = store.get_run("d", "r1")
    assert got is not None and got.run_id == "r1"


def test_threads_share_one_store(store: SqlStore) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                store.set_pool(f"p{n}-{i}", i)
                store.list_pools()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(store.list_pools()) == 1 + 4 * 20
