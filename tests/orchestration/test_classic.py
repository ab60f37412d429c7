"""Luigi-style class tasks: parameters, identity, the requires() graph, and running it as a DAG."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.errors import CycleError, DagImportError, UserError
from headwater.orchestration.classic import (
    BoolParameter,
    DateParameter,
    DateSecondParameter,
    FloatParameter,
    IntParameter,
    ListParameter,
    Parameter,
    Task,
    WrapperTask,
    build_dag,
    flatten,
    load_dag,
    parse_task_ref,
    task_ref,
    walk,
)
from headwater.orchestration.targets import LocalTarget


class Extract(Task):
    date = DateParameter(description="day to extract")
    source = Parameter(default="web")

    def output(self) -> LocalTarget:
        return LocalTarget(f"/tmp/never/{self.date}-{self.source}.csv")


class Clean(Task):
    date = DateParameter()

    def requires(self) -> Extract:
        return Extract(date=self.date)


class Report(Task):
    date = DateParameter()
    limit = IntParameter(default=10)

    def requires(self) -> dict[str, Any]:
        return {"raw": Extract(date=self.date), "clean": [Clean(date=self.date)]}


class Everything(Task):
    n = IntParameter()
    ratio = FloatParameter(default=0.5)
    full = BoolParameter()
    at = DateSecondParameter(default=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    tags = ListParameter(default=("a", "b"))


def test_same_parameters_give_the_same_instance() -> None:
    a = Extract(date=dt.date(2024, 1, 1))
    assert Extract(date=dt.date(2024, 1, 1)) is a
    assert Extract("2024-01-01") is a  # positional, parsed from a string
    assert Extract(date=dt.date(2024, 1, 1), source="web") is a
    assert Extract(date=dt.date(2024, 1, 2)) is not a
    assert a.date == dt.date(2024, 1, 1) and a.source == "web"


def test_task_id_is_family_first_values_and_hash() -> None:
    task = Extract(date=dt.date(2024, 1, 1), source="s3://bucket/very/long/path")
    assert task.task_id.startswith("Extract_2024_01_01_s3___bucket_very_")
    assert len(task.task_id.rsplit("_", 1)[1]) == 10
    other = Extract(date=dt.date(2024, 1, 1), source="s3://bucket/very/long/path/2")
    assert other.task_id != task.task_id  # truncated summaries differ by the hash


def test_task_without_parameters_is_named_by_its_family() -> None:
    class Plain(Task):
        pass

    assert Plain().task_id == "Plain"


def test_namespace_prefixes_the_family() -> None:
    class Named(Task):
        task_namespace = "etl"

    assert Named().task_family == "etl.Named"
    assert Named().task_id == "etl_Named"


def test_parameters_round_trip_through_strings() -> None:
    task = Everything(n=3, full=True, tags=["x", 1, [2, 3]])
    strs = task.to_str_params()
    assert strs == {
        "n": "3",
        "ratio": "0.5",
        "full": "true",
        "at": "2024-01-02T030405",
        "tags": '["x",1,[2,3]]',
    }
    assert Everything.from_str_params(strs) is task
    assert task.tags == ("x", 1, (2, 3))


json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["int", "float", "bool", "date", "datetime", "list", "str"]).flatmap(
        lambda kind: st.tuples(
            st.just(kind),
            {
                "int": st.integers(),
                "float": st.floats(allow_nan=False),
                "bool": st.booleans(),
                "date": st.dates(),
                "datetime": st.datetimes(timezones=st.just(dt.UTC)).map(lambda d: d.replace(microsecond=0)),
                "list": st.lists(json_scalars | st.lists(json_scalars, max_size=3), max_size=4),
                "str": st.text(),
            }[kind],
        )
    )
)
def test_every_parameter_value_survives_the_string_round_trip(case: tuple[str, Any]) -> None:
    kind, value = case
    param = {
        "int": IntParameter(),
        "float": FloatParameter(),
        "bool": BoolParameter(),
        "date": DateParameter(),
        "datetime": DateSecondParameter(),
        "list": ListParameter(),
        "str": Parameter(),
    }[kind]
    normal = param.normalize(value)
    assert param.parse(param.serialize(normal)) == normal


def test_parameter_parsing_from_cli_strings() -> None:
    assert IntParameter().parse(" 7 ") == 7
    assert FloatParameter().parse("1e3") == 1000.0
    assert BoolParameter().parse("Yes") is True and BoolParameter().parse("off") is False
    assert DateParameter().parse("2024-02-29") == dt.date(2024, 2, 29)
    assert DateSecondParameter().parse("2024-01-02T03:04:05+02:00") == dt.datetime(2024, 1, 2, 1, 4, 5, tzinfo=dt.UTC)
    assert ListParameter().parse("a, b,c") == ("a", "b", "c")
    assert ListParameter().parse("[1, 2]") == (1, 2)
    assert ListParameter().parse("") == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": "three"}, "parameter 'n' expects a int, got 'three'"),
        ({"n": True}, "parameter 'n' expects a int, got True"),
        ({"n": 1, "full": "maybe"}, "parameter 'full' expects a bool"),
        ({"n": 1, "at": "yesterday"}, "parameter 'at' expects a datetime"),
        ({"n": 1, "tags": "[1,"}, "parameter 'tags' expects a list"),
    ],
)
def test_bad_values_name_the_parameter(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        Everything(**kwargs)


def test_unknown_parameter_names_class_parameter_and_valid_ones() -> None:
    with pytest.raises(UserError) as info:
        Report(date="2024-01-01", limt=3)
    text = str(info.value)
    assert "Report has no parameter 'limt'; did you mean 'limit'?" in text
    assert "valid parameters of Report: date (date), limit (int, optional)" in text


def test_missing_required_parameter_is_named() -> None:
    with pytest.raises(UserError, match="Report is missing the required parameter 'date'"):
        Report(limit=3)
    with pytest.raises(UserError, match="Report takes 2 positional parameters but 3 were given"):
        Report("2024-01-01", 1, 2)


def test_subclass_inherits_parameters_in_order() -> None:
    class Base(Task):
        a = IntParameter()

    class Child(Base):
        b = Parameter(default="x")

    assert [name for name, _ in Child.get_params()] == ["a", "b"]
    assert Child(a=1).task_id.startswith("Child_1_x_")


def test_input_has_the_shape_of_requires() -> None:
    day = dt.date(2024, 3, 1)
    report = Report(date=day)
    inputs = report.input()
    assert set(inputs) == {"raw", "clean"}
    assert inputs["raw"] == Extract(date=day).output()
    assert inputs["clean"] == [[]]  # Clean has no outputs: an empty list in the list
    assert Clean(date=day).input() == Extract(date=day).output()
    assert report.deps() == [Extract(date=day), Clean(date=day)]


def test_flatten_handles_every_shape() -> None:
    assert flatten(None) == []
    assert flatten("a") == ["a"]
    assert flatten({"x": [1, (2, 3)], "y": 4}) == [1, 2, 3, 4]
    assert flatten(i for i in range(2)) == [0, 1]


def test_complete_means_every_output_exists(tmp_path: Path) -> None:
    class Two(Task):
        def output(self) -> dict[str, LocalTarget]:
            return {"a": LocalTarget(tmp_path / "a"), "b": LocalTarget(tmp_path / "b")}

    class NoOutput(Task):
        pass

    assert not Two().complete()
    (tmp_path / "a").write_text("")
    assert not Two().complete()
    (tmp_path / "b").write_text("")
    assert Two().complete()
    assert not NoOutput().complete()  # never complete, so it always runs

    class Group(WrapperTask):
        def requires(self) -> list[Task]:
            return [Two()]

    assert Group().complete()
    (tmp_path / "a").unlink()
    assert not Group().complete()


def test_output_must_be_targets() -> None:
    class Wrong(Task):
        def output(self) -> str:
            return "data/out.txt"

    with pytest.raises(UserError, match=r"Wrong.output\(\) returned 'data/out.txt', which is not a Target"):
        Wrong().complete()


def test_walk_visits_each_task_once_and_can_prune_complete(tmp_path: Path) -> None:
    class Leaf(Task):
        def output(self) -> LocalTarget:
            return LocalTarget(tmp_path / "leaf")

    class Mid(Task):
        def requires(self) -> Leaf:
            return Leaf()

        def output(self) -> LocalTarget:
            return LocalTarget(tmp_path / "mid")

    class Top(Task):
        def requires(self) -> list[Task]:
            return [Mid(), Leaf()]

    assert [t.task_id for t in walk(Top())] == ["Top", "Mid", "Leaf"]
    (tmp_path / "mid").write_text("")
    assert [t.task_id for t in walk(Top(), prune_complete=True)] == ["Top", "Mid", "Leaf"]
    # Leaf is still there: Top requires it directly. Mid alone prunes its subtree.
    assert [t.task_id for t in walk(Mid(), prune_complete=True)] == ["Mid"]


TASKS_FILE = textwrap.dedent(
    """
    from headwater.orchestration.classic import DateParameter, IntParameter, Task
    from headwater.orchestration.targets import LocalTarget


    class Daily(Task):
        date = DateParameter()
        size = IntParameter(default=2)

        def output(self):
            return LocalTarget(f"daily/{self.date}.txt")


    class Weekly(Task):
        date = DateParameter()

        def requires(self):
            return [Daily(date=self.date), Daily(date=self.date, size=5)]
    """
)


def test_parse_task_ref_from_a_file_and_a_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mytasks.py"
    path.write_text(TASKS_FILE)
    task = parse_task_ref(f"{path}:Weekly", ["--date", "2024-01-07"])
    assert type(task).__name__ == "Weekly"
    assert task.param_kwargs == {"date": dt.date(2024, 1, 7)}
    assert task_ref(type(task)) == f"{path}:Weekly"
    assert parse_task_ref(f"{path}:Daily", ["--date=2024-01-07", "--size", "4"]).to_str_params() == {
        "date": "2024-01-07",
        "size": "4",
    }
    monkeypatch.syspath_prepend(str(tmp_path))
    by_module = parse_task_ref("mytasks.Daily", ["--date", "2024-01-07"])
    assert task_ref(type(by_module)) == "mytasks:Daily"


def test_parse_task_ref_bool_flag_and_dashes() -> None:
    module = sys.modules[__name__]
    assert module is not None
    task = parse_task_ref(f"{__name__}.Everything", ["--n", "1", "--full", "--ratio", "2"])
    assert task.param_kwargs["full"] is True and task.param_kwargs["ratio"] == 2.0


def test_parse_task_ref_errors_are_helpful(tmp_path: Path) -> None:
    path = tmp_path / "mytasks2.py"
    path.write_text(TASKS_FILE)
    with pytest.raises(UserError, match=r"no task class 'Weekyl' in .*; did you mean 'Weekly'\?"):
        parse_task_ref(f"{path}:Weekyl", [])
    with pytest.raises(UserError, match=r"Daily has no parameter 'szie'; did you mean 'size'\?") as info:
        parse_task_ref(f"{path}:Daily", ["--date", "2024-01-01", "--szie", "3"])
    assert "valid parameters of Daily: date (date), size (int, optional)" in str(info.value)
    with pytest.raises(UserError, match="parameter --size of Daily needs a value"):
        parse_task_ref(f"{path}:Daily", ["--date", "2024-01-01", "--size"])
    with pytest.raises(UserError, match="unexpected argument 'extra'"):
        parse_task_ref(f"{path}:Daily", ["extra"])
    with pytest.raises(UserError, match="missing the required parameter 'date'"):
        parse_task_ref(f"{path}:Daily", [])
    with pytest.raises(DagImportError, match="no module named 'no_such_module_hw'"):
        parse_task_ref("no_such_module_hw.Task", [])
    with pytest.raises(UserError, match="names no module"):
        parse_task_ref("Weekly", [])


def test_task_ids_are_the_same_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "mytasks3.py"
    path.write_text(TASKS_FILE)
    ours = sorted(t.task_id for t in walk(parse_task_ref(f"{path}:Weekly", ["--date", "2024-01-07"])))
    code = textwrap.dedent(
        f"""
        from headwater.orchestration.classic import parse_task_ref, walk
        root = parse_task_ref({str(path) + ":Weekly"!r}, ["--date", "2024-01-07"])
        print("\\n".join(sorted(t.task_id for t in walk(root))))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONHASHSEED": "123"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ours
    assert len(ours) == 3


def test_build_dag_follows_requires(tmp_path: Path) -> None:
    path = tmp_path / "mytasks4.py"
    path.write_text(TASKS_FILE)
    root = parse_task_ref(f"{path}:Weekly", ["--date", "2024-01-07"])
    dag = build_dag(root)
    small, big = sorted(t.task_id for t in root.deps())
    assert dag.dag_id == f"classic.Weekly.{root.task_id.rsplit('_', 1)[1]}"
    assert dag.schedule is None
    assert dag.fileloc == f"classic:{path}:Weekly"
    assert dag.params == {"date": "2024-01-07"}
    assert set(dag.task_ids) == {root.task_id, small, big}
    assert dag.get_task(root.task_id).upstream_task_ids == {small, big}
    assert dag.topological_sort()[-1].task_id == root.task_id
    spec = dag.to_spec()
    assert spec.tasks[small].has_outputs and not spec.tasks[root.task_id].has_outputs
    assert spec.tasks[small].operator == "Daily"
    assert spec.fileloc == f"classic:{path}:Weekly"


def test_build_dag_prunes_below_complete_tasks_unless_forced(tmp_path: Path) -> None:
    class Raw(Task):
        def output(self) -> LocalTarget:
            return LocalTarget(tmp_path / "raw")

    class Cooked(Task):
        def requires(self) -> Raw:
            return Raw()

        def output(self) -> LocalTarget:
            return LocalTarget(tmp_path / "cooked")

    class Served(Task):
        def requires(self) -> Cooked:
            return Cooked()

    assert build_dag(Served()).task_ids == ["Raw", "Cooked", "Served"]
    (tmp_path / "cooked").write_text("")
    assert build_dag(Served()).task_ids == ["Cooked", "Served"]
    assert build_dag(Served(), force=True).task_ids == ["Raw", "Cooked", "Served"]


def test_operator_carries_retries_pool_and_custom_complete(tmp_path: Path) -> None:
    marker = tmp_path / "marker"

    class Custom(Task):
        retries = 3
        pool = "db"

        def complete(self) -> bool:
            return marker.exists()

    op = build_dag(Custom()).get_task("Custom")
    assert op.retries == 3 and op.pool == "db"
    assert op.to_spec().has_outputs  # so the runtime asks complete() before running it
    assert not op.outputs[0].exists()
    marker.write_text("")
    assert op.outputs[0].render({"ds": "x"}).exists()


def test_requires_cycle_is_a_cycle_error() -> None:
    class Ping(Task):
        def requires(self) -> Task:
            return Pong()

    class Pong(Task):
        def requires(self) -> Task:
            return Ping()

    with pytest.raises(CycleError, match="cycle"):
        build_dag(Ping())


def test_load_dag_rebuilds_the_same_dag_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "mytasks5.py"
    path.write_text(TASKS_FILE)
    dag = build_dag(parse_task_ref(f"{path}:Weekly", ["--date", "2024-01-07"]))
    code = textwrap.dedent(
        f"""
        import json
        from headwater.orchestration.classic import load_dag
        dag = load_dag({str(path) + ":Weekly"!r}, {{"date": "2024-01-07"}})
        print(json.dumps({{"dag_id": dag.dag_id, "tasks": dag.task_ids,
                          "edges": {{t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}}}}))
        """
    )
    env = {"PYTHONHASHSEED": "7"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    other = json.loads(out.stdout)
    assert other["dag_id"] == dag.dag_id
    assert other["tasks"] == dag.task_ids
    assert other["edges"] == {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}
    assert load_dag(f"classic:{path}:Weekly", {"date": "2024-01-07"}).dag_id == dag.dag_id


DESIGN_EXAMPLE = textwrap.dedent(
    """
    from headwater.orchestration.classic import Task
    from headwater.orchestration.targets import LocalTarget


    class WritePipelineTask(Task):
        def output(self):
            return LocalTarget("data/output_one.txt")

        def run(self):
            with self.output().open("w") as f:
                f.write("pipeline")


    class AddMyTask(Task):
        def output(self):
            return LocalTarget("data/output_two.txt")

        def requires(self):
            return WritePipelineTask()

        def run(self):
            with self.input().open("r") as infile, self.output().open("w") as outfile:
                outfile.write("My " + infile.read())
    """
)


def test_design_document_example_runs_once_then_is_already_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headwater.executor.base import RunInfo, TaskKey, Workload
    from headwater.orchestration.runtime import ALREADY_COMPLETE, execute_workload

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipeline_tasks.py").write_text(DESIGN_EXAMPLE)
    root = parse_task_ref("pipeline_tasks.py:AddMyTask", [])
    dag = build_dag(root)
    spec = dag.to_spec()
    assert spec.topological_order() == ["WritePipelineTask", "AddMyTask"]
    fileloc = spec.fileloc.removeprefix("classic:")

    def run_all(try_number: int) -> list[tuple[str, str, str]]:
        events = []
        for task_id in spec.topological_order():
            workload = Workload(
                key=TaskKey(spec.dag_id, "manual__1", task_id, try_number),
                fileloc=fileloc,
                kind="classic",
                run=RunInfo(
                    "manual__1", "2024-01-01T00:00:00+00:00", "2024-01-01T00:00:00+00:00", "2024-01-01T00:00:00+00:00"
                ),
                log_path=str(tmp_path / "logs" / f"{task_id}.{try_number}.log"),
                artifact_dir=str(tmp_path / "artifacts"),
                classic_params=dict(spec.params),
            )
            event = execute_workload(workload)
            events.append((task_id, event.state, event.reason))
        return events

    first = run_all(1)
    assert [(tid, state) for tid, state, _ in first] == [("WritePipelineTask", "success"), ("AddMyTask", "success")]
    assert all(reason != ALREADY_COMPLETE for _, _, reason in first)
    one, two = tmp_path / "data" / "output_one.txt", tmp_path / "data" / "output_two.txt"
    assert one.read_text() == "pipeline"
    assert two.read_text() == "My pipeline"
    stamps = (one.stat().st_mtime_ns, two.stat().st_mtime_ns)

    second = run_all(2)
    assert second == [("WritePipelineTask", "success", ALREADY_COMPLETE), ("AddMyTask", "success", ALREADY_COMPLETE)]
    assert (one.stat().st_mtime_ns, two.stat().st_mtime_ns) == stamps
    assert two.read_text() == "My pipeline"


@pytest.mark.slow
def test_headwater_run_the_luigi_example_through_the_cli(home: Any) -> None:
    """The example written with ``import headwater as luigi``, run by scheduler and worker processes."""
    root = Path(__file__).resolve().parents[2]
    (home.root / "pipeline.py").write_text((root / "examples" / "luigi_style" / "pipeline.py").read_text())
    first = home.cli("run", "pipeline.AddMyTask", check=True)
    assert "2 task(s) ran, 0 already complete; run success" in first.stdout
    assert (home.root / "data" / "output_two.txt").read_text() == "My pipeline"
    second = home.cli("run", "pipeline.AddMyTask", check=True)
    assert "0 task(s) ran, 1 already complete; run success" in second.stdout
    typo = home.cli("run", "pipeline.AddMyTsk")
    assert typo.returncode != 0
    assert "did you mean 'AddMyTask'?" in typo.stdout + typo.stderr
