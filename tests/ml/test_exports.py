"""headwater.ml exports its public names lazily: importing it loads no heavy library."""

from __future__ import annotations

import subprocess
import sys

import headwater.ml


def test_every_export_resolves() -> None:
    for name in headwater.ml.__all__:
        assert getattr(headwater.ml, name) is not None, name


def test_import_is_light() -> None:
    code = ("import sys, headwater.ml\n"
            "print(sorted(m for m in ('polars', 'sklearn', 'lightgbm', 'skops', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_all_matches_the_export_map() -> None:
    assert sorted(headwater.ml.__all__) == sorted(headwater.ml._EXPORTS)


def test_functions_named_like_their_modules_stay_functions() -> None:
    # Importing the submodules first used to rebind headwater.ml.split (and train, profile) to the module.
    code = ("import headwater.ml.split, headwater.ml.train, headwater.ml.profile\n"
            "from headwater.ml import split, train, profile\n"
            "print([type(f).__name__ for f in (split, train, profile)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['function', 'function', 'function']"
