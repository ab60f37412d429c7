"""A registering process for test_registry: ``python registry_writer.py URL ROOT FOLDER WRITER COUNT``.

Waits for the ``go`` file in FOLDER (so every writer starts at once), then registers
COUNT versions of ``house`` and prints their numbers, one a line.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LinearRegression

from headwater.ml.artifacts import ModelArtifact
from headwater.ml.registry_sql import SqlModelRegistry
from headwater.store.sql import open_store


def main(url: str, root: str, folder: Path, writer: int, count: int) -> None:
    store = open_store(url)
    registry = SqlModelRegistry(store, root)
    x = np.arange(20, dtype=float).reshape(10, 2)
    model = ModelArtifact(LinearRegression().fit(x, x[:, 0]), {"writer": writer})
    (folder / f"ready-{writer}").touch()
    deadline = time.monotonic() + 60
    while not (folder / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go signal within 60 s")
        time.sleep(0.002)
    for _ in range(count):
        print(registry.register("house", model, author=f"w{writer}").version, flush=True)
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
