"""Importing DAG files: DAGs found wherever they are made, and broken files reported with file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from headwater.errors import CycleError, DagDefinitionError, DagImportError
from headwater.orchestration.dagfile import DuplicateDagIdError
from headwater.orchestration.runtime import import_dag_file, load_dag_file


def write(tmp_path: Path, code: str, name: str = "dag.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code).lstrip())
    return str(path)


def test_finds_globals_with_blocks_functions_and_dag_decorators(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        from headwater import DAG, EmptyOperator, dag, task

        glob = DAG("global_dag", schedule=None)
        alias = glob  # the same DAG twice in globals counts once

        with DAG("with_block", schedule=None):
            EmptyOperator(task_id="t")

        def factory(n):
            d = DAG(f"made_{n}", schedule=None)
            EmptyOperator(task_id="t", dag=d)

        for n in range(2):
            factory(n)

        @dag(schedule=None)
        def decorated():
            @task
            def hello():
                return "hi"
            hello()

        decorated()
        """,
    )
    dags = load_dag_file(path)
    assert sorted(d.dag_id for d in dags) == ["decorated", "global_dag", "made_0", "made_1", "with_block"]
    assert all(d.fileloc == path for d in dags)
    result = import_dag_file(path, source_hash="h")
    assert result.ok and len(result.specs) == 5
    assert {s.source_hash for s in result.specs} == {"h"} and {s.fileloc for s in result.specs} == {path}


def test_dag_file_can_import_a_helper_next_to_it(tmp_path: Path) -> None:
    write(tmp_path, "OWNER = 'helper-team'\n", name="dag_helpers_for_test.py")
    path = write(
        tmp_path,
        """
        from headwater import DAG, EmptyOperator
        from dag_helpers_for_test import OWNER
        with DAG("uses_helper", schedule=None):
            EmptyOperator(task_id="t", owner=OWNER)
        """,
    )
    (dag,) = load_dag_file(path)
    assert dag.get_task("t").owner == "helper-team"


def test_syntax_error_reports_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "from headwater import DAG\n\nx = (1,\ny = 2 +\n")
    with pytest.raises(DagImportError) as info:
        load_dag_file(path)
    assert f"{path}:" in str(info.value) and "syntax error" in str(info.value)
    result = import_dag_file(path)
    assert (result.ok, result.kind) == (False, "syntax")
    assert result.lineno is not None and result.lineno >= 3
    assert result.dags == [] and result.specs == []


def test_import_error_reports_file_line_and_hint(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        from headwater import DAG

        import module_that_does_not_exist_hw
        """,
    )
    with pytest.raises(DagImportError) as info:
        load_dag_file(path)
    assert str(info.value).startswith(f"{path}:3: ModuleNotFoundError: No module named")
    assert info.value.hint and "module_that_does_not_exist_hw" in info.value.hint
    result = import_dag_file(path)
    assert (result.kind, result.lineno) == ("import", 3)


def test_runtime_error_at_import_is_an_import_error(tmp_path: Path) -> None:
    path = write(tmp_path, "import sys\nsys.exit(3)\n")
    with pytest.raises(DagImportError, match=r":2: SystemExit: 3"):
        load_dag_file(path)


def test_cycle_keeps_its_class_and_names_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        from headwater import DAG, EmptyOperator
        with DAG("cyclic", schedule=None):
            a = EmptyOperator(task_id="a")
            b = EmptyOperator(task_id="b")
            a >> b
            b >> a
        """,
    )
    with pytest.raises(CycleError) as info:
        load_dag_file(path)
    assert str(info.value).startswith(f"{path}:6: ")
    assert "a >> b >> a" in str(info.value)
    result = import_dag_file(path)
    assert (result.kind, result.lineno) == ("cycle", 6)


def test_definition_error_names_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        from headwater import DAG, EmptyOperator
        with DAG("dup_task", schedule=None):
            EmptyOperator(task_id="a")
            EmptyOperator(task_id="a")
        """,
    )
    with pytest.raises(DagDefinitionError, match=r":4: task_id 'a' is used twice"):
        load_dag_file(path)
    assert import_dag_file(path).kind == "definition"


def test_duplicate_dag_ids_in_one_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        from headwater import DAG
        first = DAG("same", schedule=None)
        second = DAG("same", schedule=None)
        """,
    )
    with pytest.raises(DuplicateDagIdError, match=r"dag_id 'same' is defined twice \(lines 2 and 3\)"):
        load_dag_file(path)
    result = import_dag_file(path)
    assert (result.kind, result.lineno) == ("duplicate", 3)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DagImportError, match="does not exist"):
        load_dag_file(str(tmp_path / "nope.py"))
