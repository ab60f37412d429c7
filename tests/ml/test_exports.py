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
