"""pin_math_threads: one math thread per stream-app process unless the user says otherwise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from headwater.errors import UserError
from headwater.stream.threads import OPT_OUT, THREAD_VARIABLES, pin_math_threads


def test_sets_every_thread_variable_to_one() -> None:
    env: dict[str, str] = {}
    assert pin_math_threads(environ=env) == dict.fromkeys(THREAD_VARIABLES, "1")
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"


def test_an_explicit_user_setting_wins() -> None:
    env = {"OMP_NUM_THREADS": "4"}
    applied = pin_math_threads(environ=env)
    assert "OMP_NUM_THREADS" not in applied and env["OMP_NUM_THREADS"] == "4"
    assert env["MKL_NUM_THREADS"] == "1"


def test_opting_out_or_asking_for_more() -> None:
    assert pin_math_threads(None, environ={}) == {}
    env = {OPT_OUT: "0"}
    assert pin_math_threads(environ=env) == {} and env == {OPT_OUT: "0"}
    assert pin_math_threads(environ={OPT_OUT: "3"})["OMP_NUM_THREADS"] == "3"
    with pytest.raises(UserError, match="must be a number"):
        pin_math_threads(environ={OPT_OUT: "many"})
    with pytest.raises(UserError, match="at least 1"):
        pin_math_threads(0, environ={})


def test_pinning_in_a_process_before_libraries_load() -> None:
    code = (
        "import os, sys\n"
        "from headwater.stream.threads import pin_math_threads\n"
        "pin_math_threads()\n"
        "assert 'polars' not in sys.modules  # the CLI pins before importing the app\n"
        "import polars\n"
        "print(os.environ['OMP_NUM_THREADS'], polars.thread_pool_size())\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in THREAD_VARIABLES and k != OPT_OUT}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60, env=env)
    assert out.stdout.split() == ["1", "1"]
