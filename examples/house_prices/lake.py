"""The lake of the house-price pipeline: where each stage writes, and the ingest (a full load into Parquet).

Layout under the lake root (default ``$HEADWATER_HOME/house_prices``), one folder per stage and
per version of the source file (``<digest>``: the first 12 hex digits of its SHA-256), so a
changed CSV is a new full load and an unchanged one is found complete::

    raw/source=<digest>/sale_month=2014-05/*.parquet   typed rows, partitioned by month of sale
    raw/source=<digest>/_SUCCESS                        the stage's manifest, written last (atomic)
    clean/source=<digest>/{sales.parquet, quarantine.csv, validation.json, _SUCCESS}
    prepared/source=<digest>/{history.parquet, listings.parquet, listings_truth.parquet,
                              zip_price_per_sqft.csv, _SUCCESS}
    models/source=<digest>.json                         what training decided for that data

Each stage's ``_SUCCESS`` is its task's target (:class:`StageTarget`): while it exists, a rerun
of the DAG skips the stage (Luigi's "already complete").
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from headwater import LocalTarget
from headwater.errors import UserError

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SOURCE = DATA / "kc_house_data.csv"
ZIPCODES = DATA / "zipcodes_king_county.csv"

#: The columns of kc_house_data.csv and their types once ingested.
RAW_SCHEMA: dict[str, str] = {
    "id": "Int64",
    "date": "String",
    "price": "Float64",
    "bedrooms": "Int64",
    "bathrooms": "Float64",
    "sqft_living": "Int64",
    "sqft_lot": "Int64",
    "floors": "Float64",
    "waterfront": "Int64",
    "view": "Int64",
    "condition": "Int64",
    "grade": "Int64",
    "sqft_above": "Int64",
    "sqft_basement": "Int64",
    "yr_built": "Int64",
    "yr_renovated": "Int64",
    "zipcode": "Int64",
    "lat": "Float64",
    "long": "Float64",
    "sqft_living15": "Int64",
    "sqft_lot15": "Int64",
}
DATE_FORMAT = "%Y%m%dT%H%M%S"  # "20140625T000000"
STAGES = ("raw", "clean", "prepared")


class IngestError(UserError):
    """The source file cannot be ingested (missing, or not the expected columns)."""


def default_lake() -> Path:
    """``$HEADWATER_HOME/house_prices``: the lake lives with the rest of the headwater state."""
    from headwater.settings import Settings

    return Settings.from_env().home / "house_prices"


def lake_root(params: Mapping[str, Any]) -> Path:
    """The lake folder named by the DAG params (``lake``), or the default."""
    lake = str(params.get("lake") or "")
    return Path(lake).expanduser().resolve() if lake else default_lake()


def source_path(params: Mapping[str, Any]) -> Path:
    """The CSV named by the DAG params (``source``), or the one shipped with the example."""
    source = str(params.get("source") or "")
    return Path(source).expanduser().resolve() if source else SOURCE


def source_digest(path: Path) -> str:
    """First 12 hex digits of the file's SHA-256: the version of the source that names every stage."""
    if not path.is_file():
        raise IngestError(f"source file {path} does not exist",
                          hint="pass --conf '{\"source\": \"/path/to/kc_house_data.csv\"}' or restore the file")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def stage_dir(lake: Path, stage: str, digest: str) -> Path:
    """The folder of ``stage`` for the source version ``digest``."""
    return lake / stage / f"source={digest}"


class StageTarget(LocalTarget):
    """The ``_SUCCESS`` file of one stage for the current source version, found from the run's params.

    Its path depends on the content of the source file, which no Jinja template can read, so
    ``render`` (called by the runtime before it checks ``exists()``) computes it.
    """

    def __init__(self, stage: str) -> None:
        if stage not in STAGES:
            raise UserError(f"unknown lake stage {stage!r}", hint=f"one of {', '.join(STAGES)}")
        super().__init__(f"<{stage}>/_SUCCESS")
        self.stage = stage

    def render(self, context: Mapping[str, Any]) -> StageTarget:
        params = context.get("params") or {}
        clone = StageTarget(self.stage)
        folder = stage_dir(lake_root(params), self.stage, source_digest(source_path(params)))
        clone.path = str(folder / "_SUCCESS")
        return clone


def write_manifest(target: Any, manifest: Mapping[str, Any]) -> None:
    """Publish a stage: its manifest written atomically through the target (temporary file + rename)."""
    with target.open("w") as f:
        f.write(json.dumps(dict(manifest), indent=2, sort_keys=True))


def fresh_dir(folder: Path) -> Path:
    """An empty temporary folder beside ``folder``; :func:`publish_dir` renames it into place."""
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir(parents=True)
    return tmp


def publish_dir(tmp: Path, folder: Path) -> None:
    """Replace ``folder`` by ``tmp`` (a half-written earlier attempt without ``_SUCCESS`` is discarded)."""
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def ingest(source: Path, folder: Path) -> dict[str, Any]:
    """Read ``source`` (kc_house_data.csv) as text, type it, and write it partitioned by month of sale.

    A value that does not parse as its column's type becomes null, and the row's
    ``_parse_errors`` lists the column with the raw text, for validation to quarantine
    (a bad row never stops the load, nor is silently dropped). Rows whose date does not parse
    land in ``sale_month=unknown``. Returns the manifest of the load.
    """
    import polars as pl

    text = pl.read_csv(source, infer_schema=False)
    missing = [c for c in RAW_SCHEMA if c not in text.columns]
    if missing:
        raise IngestError(f"{source} lacks the columns {missing}",
                          hint=f"expected the columns of kc_house_data.csv: {', '.join(RAW_SCHEMA)}")
    typed = text.select(pl.col(c).cast(getattr(pl, t), strict=False) for c, t in RAW_SCHEMA.items())
    sale = typed["date"].str.strptime(pl.Datetime, DATE_FORMAT, strict=False)
    bad = {c: typed[c].is_null() for c in RAW_SCHEMA}
    bad["date"] = sale.is_null()
    masks = pl.DataFrame([mask.alias(f"_bad_{c}") for c, mask in bad.items()])
    failed = [
        pl.when(pl.col(f"_bad_{c}") & pl.col(c).str.strip_chars().ne("").fill_null(False))
        .then(pl.format("{}={}", pl.lit(c), pl.col(c).str.slice(0, 40)))
        for c in bad
    ]
    both = pl.concat([text.select(list(RAW_SCHEMA)), masks], how="horizontal")
    errors = both.select(pl.concat_list(failed).list.drop_nulls().alias("e"))["e"]
    frame = typed.with_columns(
        sale_date=sale.cast(pl.Date),
        _parse_errors=errors,
        sale_month=sale.dt.strftime("%Y-%m").fill_null("unknown"),
    )
    tmp = fresh_dir(folder)
    frame.write_parquet(tmp, partition_by="sale_month")
    publish_dir(tmp, folder)
    months = frame.group_by("sale_month").len().sort("sale_month")
    return {
        "source": str(source),
        "source_digest": folder.name.removeprefix("source="),
        "rows": frame.height,
        "partitions": dict(zip(months["sale_month"].to_list(), months["len"].to_list(), strict=True)),
        "rows_with_parse_errors": int((errors.list.len() > 0).sum()),
    }


def read_raw(folder: Path) -> Any:
    """The ingested rows of one load (all partitions), with ``sale_month`` from the folder names."""
    import polars as pl

    frame = pl.read_parquet(folder / "**" / "*.parquet", hive_partitioning=True)
    return frame.drop("source", strict=False)  # the stage folder's own "source=<digest>" is no column
