"""``headwater models score`` through the real CLI in a subprocess, on a real home."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from headwater.ml.registry_sql import open_registry
from headwater.ml.scoring import load_scorer
from headwater.ml.train import train
from tests.cli.conftest import Home
from tests.ml.house_features import house_features, synthetic_houses

pytestmark = pytest.mark.slow


@pytest.fixture
def houses(home: Home) -> Home:
    reg = open_registry(home.settings)
    train(synthetic_houses(400, seed=1), target="price", features=house_features(),
          estimator=HistGradientBoostingRegressor(max_iter=10, random_state=1), importance_sample=20,
          importance_repeats=1).register(reg, "houses", author="test")
    reg.promote("houses", 1, who="test", reason="first")
    return home


def test_score_writes_predictions_and_rejects_and_says_so(houses: Home) -> None:
    data = synthetic_houses(900, seed=4).with_columns(pl.col("bathrooms").cast(pl.String))
    data = data.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("many")).otherwise("bathrooms")
                             .alias("bathrooms"))
    source = houses.root / "houses.csv"
    data.write_csv(source)

    done = houses.cli("models", "score", "houses@champion", "houses.csv", "out/scored.parquet", "--chunk-rows", "250",
                      "--output-column", "predicted_price", check=True)

    lines = " ".join(done.stdout.split())
    assert "scored 899 of 900 rows with houses:1" in lines and "4 chunk(s)" in lines
    assert "1 row(s) rejected" in lines and "out/scored.parquet.rejects.csv" in lines
    out = pl.read_parquet(houses.root / "out" / "scored.parquet")
    good = pl.read_csv(source).filter(pl.int_range(pl.len()) != 3)
    expected = load_scorer(open_registry(houses.settings), "houses:1").score(
        good.with_columns(pl.col("bathrooms").cast(pl.Float64)))
    np.testing.assert_array_equal(out["predicted_price"].to_numpy(), expected)
    rejects = pl.read_csv(houses.root / "out" / "scored.parquet.rejects.csv", infer_schema=False)
    assert rejects["row"].to_list() == ["3"] and "got many" in rejects["reason"][0]


def test_score_of_a_missing_file_is_one_line_with_a_hint(houses: Home) -> None:
    done = houses.cli("models", "score", "houses@champion", "nope.csv", "out.csv")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: input file nope.csv does not exist",
        "hint: check the path (relative paths are from the current folder)",
    ]
    assert not (houses.root / "out.csv").exists()
