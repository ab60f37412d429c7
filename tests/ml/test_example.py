"""The README's ML example, run as written: train, register, gate, then `headwater models show`."""

from __future__ import annotations

import csv
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ml" / "train_houses.py"

pytestmark = pytest.mark.slow


def test_train_register_and_promote(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "train_houses.py")
    rng = random.Random(3)
    with (tmp_path / "houses.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["price", "sqft_living", "sqft_lot", "bathrooms", "zipcode"])
        for _ in range(2000):
            zipcode, sqft = rng.choice([98001, 98052, 98103, 98004]), rng.randint(500, 5000)
            bathrooms = "" if rng.random() < 0.05 else rng.choice([1, 1.5, 2, 2.5, 3])
            price = sqft * 200 * (2 if zipcode == 98004 else 1) + rng.gauss(0, 50_000)
            out.writerow([round(price), sqft, rng.randint(2000, 20000), bathrooms, zipcode])
    env = dict(os.environ, HEADWATER_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "train_houses.py"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "houses:1" in run.stdout and "no champion yet" in run.stdout
    show = subprocess.run([sys.executable, "-m", "headwater", "models", "show", "houses@champion"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert show.returncode == 0, show.stdout + show.stderr
    assert "houses version 1  approved" in show.stdout and "lightgbm-text" in show.stdout
