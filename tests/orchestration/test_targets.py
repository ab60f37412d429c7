"""Targets: existence, atomic writes, crash safety, templated paths, fsspec URLs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from headwater.errors import TemplateError, UserError
from headwater.orchestration.targets import FileSystemTarget, FsspecTarget, LocalTarget, Target


def test_local_target_exists_only_after_a_write(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "out.txt")
    assert not target.exists()
    with target.open("w") as f:
        f.write("hello")
    assert target.exists()
    with target.open() as f:
        assert f.read() == "hello"
    target.remove()
    assert not target.exists()
    target.remove()  # removing a missing target is not an error


def test_write_is_invisible_until_the_block_ends(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "out.txt")
    with target.open("w") as f:
        f.write("partial")
        f.flush()
        assert not target.exists()
    assert target.read_text() == "partial"


def test_parent_folders_are_created(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "a" / "b" / "c.txt")
    with target.open("w") as f:
        f.write("x")
    assert (tmp_path / "a" / "b" / "c.txt").read_text() == "x"


def test_exception_in_block_leaves_no_target_and_no_temp_file(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "out.txt")
    with pytest.raises(RuntimeError, match="boom"), target.open("w") as f:
        f.write("half a row")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_exception_keeps_the_previous_version(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "out.txt")
    with target.open("w") as f:
        f.write("v1")
    with pytest.raises(ValueError), target.open("w") as f:
        f.write("v2 half")
        raise ValueError
    assert target.read_text() == "v1"


def test_explicit_close_commits(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "out.bin")
    f = target.open("wb")
    f.write(b"\x00\x01")
    assert not target.exists()
    f.close()
    assert f.closed
    with target.open("rb") as r:
        assert r.read() == b"\x00\x01"


def test_binary_format_reads_and_writes_bytes(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "out.bin", format="binary")
    with target.open("w") as f:
        f.write(b"bytes")
    with target.open("r") as f:
        assert f.read() == b"bytes"


def test_bad_mode_and_format_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="open mode 'a'"):
        LocalTarget(tmp_path / "x").open("a")
    with pytest.raises(UserError, match="format 'parquet'"):
        LocalTarget(tmp_path / "x", format="parquet")


def test_temporary_path_publishes_on_success_only(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "d" / "out.txt")
    with target.temporary_path() as tmp:
        Path(tmp).write_text("via tool")
        assert not target.exists()
    assert target.read_text() == "via tool"
    other = LocalTarget(tmp_path / "d" / "other.txt")
    with pytest.raises(OSError), other.temporary_path() as tmp:
        Path(tmp).write_text("half")
        raise OSError("disk full")
    assert not other.exists()
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["out.txt"]


_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from headwater.orchestration.targets import LocalTarget

    path, how = sys.argv[1], sys.argv[2]
    with LocalTarget(path).open("w") as f:
        for i in range(1000):
            f.write(f"row {i}\\n")
            if i == 500:
                f.flush()
                if how == "exit":
                    os._exit(3)
                if how == "kill":
                    print("half", flush=True)
                    time.sleep(60)
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_crash_mid_write_leaves_no_target_and_rerun_writes_it(tmp_path: Path, how: str) -> None:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    out = tmp_path / "data" / "rows.txt"
    proc = subprocess.Popen([sys.executable, str(script), str(out), how], stdout=subprocess.PIPE, text=True)
    if how == "kill":
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "half"
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert not out.exists()
    assert not LocalTarget(out).exists()

    rerun = subprocess.run([sys.executable, str(script), str(out), "none"], capture_output=True, text=True, timeout=30)
    assert rerun.returncode == 0, rerun.stderr
    assert LocalTarget(out).exists()
    lines = out.read_text().splitlines()
    assert lines[0] == "row 0" and lines[-1] == "row 999" and len(lines) == 1000


def test_templated_path_renders_against_the_context(tmp_path: Path) -> None:
    target = LocalTarget(str(tmp_path / "{{ ds }}" / "rows_{{ params.part }}.csv"))
    rendered = target.render({"ds": "2024-01-02", "params": {"part": 3}})
    assert isinstance(rendered, LocalTarget)
    assert rendered.path == str(tmp_path / "2024-01-02" / "rows_3.csv")
    assert "{{ ds }}" in target.path  # the original is unchanged
    plain = LocalTarget(tmp_path / "plain.txt")
    assert plain.render({"ds": "x"}) == plain


def test_unknown_template_variable_names_the_path(tmp_path: Path) -> None:
    target = LocalTarget("data/{{ nope }}.txt")
    with pytest.raises(TemplateError, match=r"data/\{\{ nope \}\}\.txt"):
        target.render({"ds": "2024-01-01"})


def test_targets_compare_by_type_and_path(tmp_path: Path) -> None:
    assert LocalTarget("a.txt") == LocalTarget("a.txt")
    assert LocalTarget("a.txt") != FsspecTarget("a.txt")
    assert len({LocalTarget("a.txt"), LocalTarget("a.txt")}) == 1
    assert os.fspath(LocalTarget("a.txt")) == "a.txt"
    assert isinstance(LocalTarget("a.txt"), Target)


def test_fsspec_memory_target_round_trip() -> None:
    url = f"memory://hw-test-{uuid.uuid4().hex}/sub/out.txt"
    target = FsspecTarget(url)
    assert not target.exists()
    with target.open("w") as f:
        f.write("in memory")
        assert not target.exists()
    assert target.exists()
    with target.open("r") as f:
        assert f.read() == "in memory"
    target.remove()
    assert not target.exists()


def test_fsspec_memory_target_failed_write_leaves_nothing() -> None:
    folder = f"memory://hw-test-{uuid.uuid4().hex}"
    target = FsspecTarget(f"{folder}/out.bin")
    with pytest.raises(RuntimeError), target.open("wb") as f:
        f.write(b"half")
        raise RuntimeError("crash")
    assert not target.exists()
    assert target.fs.ls(folder.removeprefix("memory:/"), detail=False) == []


def test_fsspec_file_url_target_is_atomic_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "out.txt"
    target = FileSystemTarget(f"file://{path}")
    with target.open("w") as f:
        f.write("on disk")
        assert not path.exists()
    assert path.read_text() == "on disk"
    assert target.exists()
    with pytest.raises(RuntimeError), target.open("w") as f:
        f.write("replacement")
        raise RuntimeError
    assert path.read_text() == "on disk"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]


def test_fsspec_target_renders_its_url(tmp_path: Path) -> None:
    target = FsspecTarget(f"file://{tmp_path}/{{{{ ds }}}}.txt")
    rendered = target.render({"ds": "2024-05-06"})
    assert isinstance(rendered, FsspecTarget)
    assert rendered.url == f"file://{tmp_path}/2024-05-06.txt"
    with rendered.open("w") as f:
        f.write("x")
    assert (tmp_path / "2024-05-06.txt").exists()


def test_in_a_try_paths_render_like_template_fields(tmp_path: Path) -> None:
    from headwater.orchestration.dag import DAG
    from headwater.orchestration.operators import EmptyOperator

    dag = DAG("render_dag", schedule=None, user_defined_filters={"shout": str.upper})
    op = EmptyOperator(task_id="t", dag=dag)
    target = LocalTarget(str(tmp_path / "{{ params.name | shout }}_{{ ds_nodash }}.csv"))
    rendered = target.render({"task": op, "params": {"name": "eu"}, "ds_nodash": "20240102"})
    assert rendered.path == str(tmp_path / "EU_20240102.csv")
    with pytest.raises(TemplateError, match=r"task 't'.*'missing' is undefined"):
        LocalTarget("{{ missing }}.csv").render({"task": op})
