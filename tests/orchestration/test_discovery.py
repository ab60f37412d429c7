"""DAG discovery with real files and real parse subprocesses: broken files, the cache, versions."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from headwater.executor.inline import InlineExecutor
from headwater.orchestration.discovery import ParseSummary, refresh
from headwater.orchestration.runs import trigger
from headwater.orchestration.scheduler import Scheduler, SchedulerOptions
from headwater.orchestration.states import RunState

from .conftest import Home

GOOD = """
    import datetime as dt
    from headwater import DAG, PythonOperator

    with DAG("{dag_id}", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
        PythonOperator(task_id="hello", python_callable=lambda: "{word}")
"""

BROKEN = {
    "syntax.py": ("import datetime\n\n\ndef f(:\n    pass\n", "syntax", 4),
    "missing_module.py": ("import os\n\nimport nosuchmodule\n", "import", 3),
    "cycle.py": (
        textwrap.dedent("""\
            import datetime as dt
            from headwater import DAG, EmptyOperator

            with DAG("cyclic", start_date=dt.datetime(2024, 1, 1)) as dag:
                a = EmptyOperator(task_id="a")
                b = EmptyOperator(task_id="b")
                a >> b >> a
        """),
        "cycle",
        7,
    ),
    "exits.py": ("import sys\n\nprint('bye')\nsys.exit(3)\n", "exit", 4),
    "hard_exit.py": ("import os\n\n\nos._exit(1)\n", "exit", 4),
}


def scan(home: Home, timeout: float = 10.0, force: bool = False) -> ParseSummary:
    return refresh(home.store, home.dags, timeout=timeout, force=force)


def errors_by_file(home: Home) -> dict[str, tuple[str, int | None, str]]:
    return {Path(e.path).name: (e.kind, e.lineno, e.message) for e in home.store.list_import_errors()}


def run_dag(home: Home, dag_id: str) -> RunState | None:
    import datetime as dt

    record = home.store.get_dag(dag_id)
    assert record is not None
    run = trigger(home.store, record, dt.datetime.now(dt.UTC))
    options = SchedulerOptions(only_runs={(dag_id, run.run_id)}, take_lease=False, heartbeat=0.1)
    report = Scheduler(home.store, InlineExecutor(), home.settings, options).run()
    return report.finished.get((dag_id, run.run_id))


@pytest.mark.slow
def test_broken_files_are_reported_with_kind_and_line_and_the_good_dag_still_runs(home: Home) -> None:
    home.write_dag("good.py", GOOD.format(dag_id="good", word="hi"))
    for name, (code, _, _) in BROKEN.items():
        (home.dags / name).write_text(code)
    home.write_dag("hangs.py", "x = 0\nwhile True:\n    x += 1\n")
    home.write_dag("zz_after_the_hang.py", GOOD.format(dag_id="after_hang", word="still parsed"))

    summary = scan(home, timeout=2.0)

    errors = errors_by_file(home)
    for name, (_, kind, line) in BROKEN.items():
        assert errors[name][:2] == (kind, line), (name, errors[name])
    assert "nosuchmodule" in errors["missing_module.py"][2]
    assert "a >> b >> a" in errors["cycle.py"][2]
    assert "sys.exit(3)" in errors["exits.py"][2]
    assert "os._exit(1)" in errors["hard_exit.py"][2]
    assert errors["hangs.py"][0] == "timeout"
    assert "longer than 2s" in errors["hangs.py"][2]
    assert len(summary.parsed) == len(BROKEN) + 3
    assert sorted(d.dag_id for d in home.store.list_dags()) == ["after_hang", "good"]
    assert run_dag(home, "good") is RunState.SUCCESS


def test_a_dag_id_in_two_files_stays_with_the_first_and_the_second_gets_the_error(home: Home) -> None:
    home.write_dag("a_first.py", GOOD.format(dag_id="shared", word="first"))
    home.write_dag("b_second.py", "\n\n" + textwrap.dedent(GOOD.format(dag_id="shared", word="second")))
    scan(home)
    record = home.store.get_dag("shared")
    assert record is not None and Path(record.fileloc).name == "a_first.py"
    kind, line, message = errors_by_file(home)["b_second.py"]
    assert kind == "duplicate"
    assert line == 7  # the `with DAG(...)` line of the second file
    assert "a_first.py" in message

    # The first file goes away: the id is free, and the second file takes it on the next scan.
    (home.dags / "a_first.py").unlink()
    scan(home)
    record = home.store.get_dag("shared")
    assert record is not None and record.is_active and Path(record.fileloc).name == "b_second.py"
    assert errors_by_file(home) == {}


def test_unchanged_files_are_not_parsed_again(home: Home) -> None:
    imports = home.root / "imports.txt"
    counting = f"open({str(imports)!r}, 'a').write('x')\n"
    (home.dags / "one.py").write_text(counting + textwrap.dedent(GOOD.format(dag_id="one", word="a")))
    home.write_dag("two.py", GOOD.format(dag_id="two", word="b"))
    first = scan(home)
    assert (len(first.parsed), first.unchanged) == (2, 0)
    second = scan(home)
    assert (len(second.parsed), second.unchanged) == (0, 2)
    assert imports.read_text() == "x"  # imported once
    forced = scan(home, force=True)
    assert len(forced.parsed) == 2
    assert imports.read_text() == "xx"


def test_editing_a_file_bumps_its_dags_version_and_reparses_only_it(home: Home) -> None:
    path = home.write_dag("edited.py", GOOD.format(dag_id="edited", word="old"))
    home.write_dag("other.py", GOOD.format(dag_id="other", word="x"))
    scan(home)
    before = home.store.get_dag("edited")
    assert before is not None

    path.write_text(textwrap.dedent(GOOD.format(dag_id="edited", word="a new word")))
    summary = scan(home)

    assert [Path(r.path).name for r in summary.parsed] == ["edited.py"]
    after = home.store.get_dag("edited")
    assert after is not None
    assert after.version == before.version + 1
    assert after.source_hash != before.source_hash
    other = home.store.get_dag("other")
    assert other is not None and other.version == 1


def test_deleting_a_file_deactivates_its_dags(home: Home) -> None:
    path = home.write_dag("gone.py", GOOD.format(dag_id="gone", word="x"))
    home.write_dag("kept.py", GOOD.format(dag_id="kept", word="x"))
    scan(home)
    path.unlink()
    summary = scan(home)
    assert [Path(p).name for p in summary.removed] == ["gone.py"]
    assert [d.dag_id for d in home.store.list_dags()] == ["kept"]
    gone = home.store.get_dag("gone")
    assert gone is not None and not gone.is_active
    assert "gone.py" not in {Path(p).name for p in home.store.get_dag_files()}


def test_fixing_a_broken_file_clears_its_error(home: Home) -> None:
    path = home.write_dag("fixme.py", "import nosuchmodule\n")
    scan(home)
    assert errors_by_file(home)["fixme.py"][:2] == ("import", 1)
    path.write_text(textwrap.dedent(GOOD.format(dag_id="fixed", word="ok")))
    scan(home)
    assert errors_by_file(home) == {}
    assert [d.dag_id for d in home.store.list_dags()] == ["fixed"]
    assert run_dag(home, "fixed") is RunState.SUCCESS


def test_breaking_a_good_file_keeps_its_last_good_dag_and_reports_the_error(home: Home) -> None:
    path = home.write_dag("flaky.py", GOOD.format(dag_id="flaky", word="ok"))
    scan(home)
    path.write_text(path.read_text() + "\ndef broken(:\n")
    scan(home)
    assert errors_by_file(home)["flaky.py"][0] == "syntax"
    record = home.store.get_dag("flaky")
    assert record is not None and record.is_active  # as Airflow: a broken file keeps its DAGs


def test_private_hidden_and_cache_paths_are_not_dag_files(home: Home) -> None:
    home.write_dag("_helpers.py", "raise RuntimeError('never imported')\n")
    (home.dags / ".hidden").mkdir()
    (home.dags / ".hidden" / "x.py").write_text("raise RuntimeError('never imported')\n")
    (home.dags / "sub").mkdir()
    (home.dags / "sub" / "nested.py").write_text(textwrap.dedent(GOOD.format(dag_id="nested", word="x")))
    scan(home)
    assert errors_by_file(home) == {}
    assert [d.dag_id for d in home.store.list_dags()] == ["nested"]


def test_a_dag_file_that_leaves_a_thread_running_does_not_hold_up_discovery(home: Home) -> None:
    lines = "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,)).start()  # not a daemon\n"
    (home.dags / "threads.py").write_text(lines + textwrap.dedent(GOOD.format(dag_id="threaded", word="x")))
    scan(home, timeout=5.0)
    assert [d.dag_id for d in home.store.list_dags()] == ["threaded"]


def test_user_output_at_import_does_not_disturb_the_result_pipe(home: Home) -> None:
    noise = textwrap.dedent("""\
        import os, sys
        print('{"event": "result", "path": "forged"}')
        sys.stderr.write("warning on stderr\\n")
        os.write(1, b"raw bytes on fd 1\\n")
    """)
    (home.dags / "noisy.py").write_text(noise + textwrap.dedent(GOOD.format(dag_id="noisy", word="x")))
    scan(home)
    assert [d.dag_id for d in home.store.list_dags()] == ["noisy"]
    assert errors_by_file(home) == {}
    assert os.environ.get("HEADWATER_PARSE_FD") is None  # only the child gets the pipe
