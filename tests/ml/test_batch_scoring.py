"""Batch scoring of CSV and Parquet files in chunks, with a rejects file and an atomic output."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from headwater.ml.batch import BatchScoringError, default_rejects, score_file
from headwater.ml.registry_sql import SqlModelRegistry, memory_registry
from headwater.ml.scoring import load_scorer
from headwater.ml.train import train
from tests.ml.house_features import house_features, synthetic_houses

ROWS = 2_500
CHUNK = 700  # 4 chunks


@pytest.fixture(scope="module")
def registry() -> SqlModelRegistry:
    reg = memory_registry()
    result = train(synthetic_houses(500, seed=1), target="price", features=house_features(),
                   estimator=HistGradientBoostingRegressor(max_iter=20, random_state=1), seed=1,
                   importance_sample=20, importance_repeats=1, target_transform="log1p")
    result.register(reg, "houses", author="test")
    reg.promote("houses", 1, who="test", reason="first")
    return reg


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path) if path.suffix == ".csv" else pl.read_parquet(path)


def _write(frame: pl.DataFrame, path: Path) -> None:
    if path.suffix == ".csv":
        frame.write_csv(path)
    else:
        frame.write_parquet(path, row_group_size=300)


@pytest.mark.parametrize(("src", "dst"), [("csv", "csv"), ("csv", "parquet"), ("parquet", "parquet"),
                                          ("parquet", "csv")])
def test_chunked_scoring_equals_scoring_the_whole_frame(tmp_path: Path, registry: SqlModelRegistry, src: str,
                                                        dst: str) -> None:
    data = synthetic_houses(ROWS, seed=5).with_row_index("id")
    source, target = tmp_path / f"in.{src}", tmp_path / "out" / f"scored.{dst}"
    _write(data, source)
    seen: list[int] = []

    summary = score_file("houses@champion", source, target, registry=registry, chunk_rows=CHUNK,
                         on_progress=lambda rows, total: seen.append(rows))

    whole = _read(source)  # the file as a user reads it, scored in one call
    expected = load_scorer(registry, "houses:1").score(whole)
    out = _read(target)
    assert summary.chunks == 4 and seen == [700, 1400, 2100, 2500]
    assert (summary.rows_in, summary.rows_scored, summary.rows_rejected, summary.rejects) == (ROWS, ROWS, 0, None)
    assert out.columns == [*data.columns, "prediction", "model_version"]
    assert out["prediction"].to_numpy().tobytes() == expected.tobytes()  # bit for bit
    assert out["model_version"].unique().to_list() == ["houses:1"]
    assert out["id"].cast(pl.Int64).to_list() == list(range(ROWS))
    typed = out.select(list(house_features().input_schema))
    assert typed.schema == pl.Schema(house_features().input_schema)  # the model's inputs in their declared types
    assert default_rejects(str(target)) not in [str(p) for p in target.parent.iterdir()]


def test_rows_that_do_not_fit_go_to_the_rejects_file_with_the_reason(tmp_path: Path,
                                                                     registry: SqlModelRegistry) -> None:
    data = synthetic_houses(1_000, seed=6).with_row_index("id").with_columns(pl.col("bedrooms").cast(pl.String))
    data = data.with_columns(
        pl.when(pl.col("id") == 10).then(pl.lit("three")).otherwise(pl.col("bedrooms")).alias("bedrooms"),
        pl.when(pl.col("id") == 850).then(None).otherwise(pl.col("sqft_living")).alias("sqft_living"),
    )
    source, target = tmp_path / "in.csv", tmp_path / "scored.parquet"
    data.write_csv(source)
    rejects = tmp_path / "bad" / "rejected.csv"
    rejects.parent.mkdir()

    summary = score_file("houses:1", source, target, registry=registry, chunk_rows=300, rejects=rejects)

    assert (summary.rows_in, summary.rows_scored, summary.rows_rejected) == (1_000, 998, 2)
    assert summary.rejects == str(rejects)
    bad = pl.read_csv(rejects, infer_schema=False)
    assert bad["id"].to_list() == ["10", "850"] and bad["row"].to_list() == ["10", "850"]
    assert bad["bedrooms"][0] == "three"
    assert "column 'bedrooms': expected Int64, got three" in bad["reason"][0]
    assert "column 'sqft_living' is required" in bad["reason"][1]
    out = pl.read_parquet(target)
    assert out.height == 998 and 10 not in out["id"].cast(pl.Int64).to_list()
    good = pl.read_csv(source).filter(~pl.col("id").is_in([10, 850]))
    expected = load_scorer(registry, "houses:1").score(good.with_columns(pl.col("bedrooms").cast(pl.Int64)))
    assert out["prediction"].to_numpy().tobytes() == expected.tobytes()


def test_missing_input_unknown_type_and_missing_columns_are_clear_errors(tmp_path: Path,
                                                                         registry: SqlModelRegistry) -> None:
    target = tmp_path / "out.csv"
    with pytest.raises(BatchScoringError, match="does not exist") as info:
        score_file("houses:1", tmp_path / "nope.csv", target, registry=registry)
    assert info.value.hint and "path" in info.value.hint
    (tmp_path / "in.json").write_text("{}")
    with pytest.raises(BatchScoringError, match=r"unknown file type '\.json'") as info:
        score_file("houses:1", tmp_path / "in.json", target, registry=registry)
    assert info.value.hint == "name it .csv or .parquet"
    synthetic_houses(10).drop("zipcode", "lat").write_csv(tmp_path / "in.csv")
    with pytest.raises(BatchScoringError, match=r"lacks 2 column.*zipcode, lat"):
        score_file("houses:1", tmp_path / "in.csv", target, registry=registry)
    synthetic_houses(10).with_columns(prediction=pl.lit(1.0)).write_csv(tmp_path / "has.csv")
    with pytest.raises(BatchScoringError, match="already has a column 'prediction'"):
        score_file("houses:1", tmp_path / "has.csv", target, registry=registry)
    assert not target.exists()


@pytest.mark.parametrize("dst", ["csv", "parquet"])
def test_a_failure_midway_leaves_no_partial_output(tmp_path: Path, registry: SqlModelRegistry, dst: str) -> None:
    source, target = tmp_path / "in.csv", tmp_path / f"scored.{dst}"
    data = synthetic_houses(1_000, seed=7)
    data.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("sqft_lot"))
                      .alias("sqft_lot")).write_csv(source)
    target.write_text("the previous output")

    def interrupt(rows: int, total: int | None) -> None:
        if rows >= 400:  # after two chunks were written (and a reject)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score_file("houses:1", source, target, registry=registry, chunk_rows=200, on_progress=interrupt)

    assert target.read_text() == "the previous output"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", f"scored.{dst}"]  # no temp files, no rejects


def test_an_input_where_every_row_is_rejected_gives_an_empty_output_with_its_columns(
    tmp_path: Path, registry: SqlModelRegistry
) -> None:
    source, target = tmp_path / "in.parquet", tmp_path / "scored.parquet"
    synthetic_houses(50, seed=8).with_columns(sqft_lot=pl.lit(None, dtype=pl.Int64)).write_parquet(source)
    summary = score_file("houses:1", source, target, registry=registry, chunk_rows=20)
    assert (summary.rows_scored, summary.rows_rejected) == (0, 50)
    out = pl.read_parquet(target)
    assert out.height == 0 and out.columns[-2:] == ["prediction", "model_version"]
    assert pl.read_csv(default_rejects(str(target))).height == 50


def test_fsspec_urls_work_for_input_output_and_rejects(registry: SqlModelRegistry) -> None:
    import uuid

    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/batch-{uuid.uuid4().hex}"
    data = synthetic_houses(900, seed=9).with_columns(
        pl.when(pl.int_range(pl.len()) == 4).then(None).otherwise(pl.col("sqft_lot")).alias("sqft_lot"))
    with fs.open(f"{root}/in.parquet", "wb") as f:
        data.write_parquet(f)
    try:
        summary = score_file("houses:1", f"memory://{root}/in.parquet", f"memory://{root}/out/scored.csv",
                             registry=registry, chunk_rows=250)
        with fs.open(f"{root}/out/scored.csv", "rb") as f:
            out = pl.read_csv(f)
        with fs.open(f"{root}/out/scored.csv.rejects.csv", "rb") as f:
            rejects = pl.read_csv(f)
    finally:
        fs.rm(root, recursive=True)
    assert (summary.chunks, summary.rows_scored, summary.rows_rejected) == (4, 899, 1)
    expected = load_scorer(registry, "houses:1").score(data.filter(pl.int_range(pl.len()) != 4))
    assert out["prediction"].to_numpy().tobytes() == expected.tobytes()
    assert rejects["row"].to_list() == [4]
