"""DAG ``house_prices``: King County sales -> Parquet lake -> validated -> model trained, registered, judged.

::

    ingest >> validate >> prepare >> train

Weekly, no catch-up. Each data stage writes under the lake (``params.lake``, default
``$HEADWATER_HOME/house_prices``) in a folder named by the source file's content hash, and its
``_SUCCESS`` is the task's target: rerunning the DAG on the same file skips all three
("already complete"), and ``train`` trains nothing when a version was already trained on
exactly this data. ``retrain_every_weeks`` (default 2) retrains on new data only every
other week; ``force_train`` retrains anyway. Stage code lives in the ``house_prices``
package beside this folder (``examples/house_prices``).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

# The pipeline's modules are the package examples/house_prices: make it importable from this
# DAG file wherever the DAG folder is read from (the scheduler's parse child, a worker, dags test).
_EXAMPLES = str(Path(__file__).resolve().parents[2])
if _EXAMPLES not in sys.path:
    sys.path.insert(0, _EXAMPLES)

from house_prices.lake import StageTarget  # noqa: E402

from headwater import DAG, task  # noqa: E402

PARAMS: dict[str, Any] = {
    "source": "",  # the CSV; "" = examples/house_prices/data/kc_house_data.csv
    "lake": "",  # "" = $HEADWATER_HOME/house_prices
    "holdout_fraction": 0.05,  # the newest sales, kept out of training: the stream's new listings
    "retrain_every_weeks": 2,
    "force_train": False,
}


def _folders(params: dict[str, Any]) -> dict[str, Path]:
    from house_prices import lake

    root, digest = lake.lake_root(params), lake.source_digest(lake.source_path(params))
    return {stage: lake.stage_dir(root, stage, digest) for stage in lake.STAGES}


with DAG("house_prices", schedule="@weekly", start_date=dt.datetime(2024, 1, 1), catchup=False, params=PARAMS,
         tags=["example", "ml"], doc_md=__doc__):

    @task(outputs=StageTarget("raw"))
    def ingest(params: Any = None, outputs: Any = None) -> dict[str, Any]:
        """Full load of the CSV into Parquet partitioned by month of sale."""
        from house_prices import lake

        manifest = lake.ingest(lake.source_path(params), _folders(params)["raw"])
        lake.write_manifest(outputs[0], manifest)
        return {"rows": manifest["rows"], "partitions": len(manifest["partitions"])}

    @task(outputs=StageTarget("clean"))
    def validate(params: Any = None, outputs: Any = None) -> dict[str, Any]:
        """Types, nulls, ranges, consistency, duplicates: bad rows to quarantine.csv with the reason."""
        from house_prices import lake
        from house_prices import validate as checks

        folders = _folders(params)
        clean, quarantined, report = checks.validate(lake.read_raw(folders["raw"]))
        tmp = lake.fresh_dir(folders["clean"])
        checks.write_outputs(clean, quarantined, report, tmp)
        lake.publish_dir(tmp, folders["clean"])
        lake.write_manifest(outputs[0], report)
        return {"clean": report["clean"], "quarantined": report["quarantined"]}

    @task(outputs=StageTarget("prepared"))
    def prepare(params: Any = None, outputs: Any = None) -> dict[str, Any]:
        """History vs held-out listings; median price per sqft per zip from the train split only."""
        import polars as pl
        from house_prices import lake, training

        folders = _folders(params)
        prepared = training.prepare(pl.read_parquet(folders["clean"] / "sales.parquet"),
                                    float(params["holdout_fraction"]))
        tmp = lake.fresh_dir(folders["prepared"])
        manifest = training.write_prepared(prepared, tmp)
        lake.publish_dir(tmp, folders["prepared"])
        lake.write_manifest(outputs[0], manifest)
        return manifest

    @task
    def train(params: Any = None, run_id: Any = None, logical_date: Any = None) -> dict[str, Any]:
        """Train unless this data was trained on already; register; promote only past the champion."""
        import polars as pl
        from house_prices import training

        from headwater.ml import open_registry
        from headwater.ml.split import frame_hash
        from headwater.settings import Settings

        folders = _folders(params)
        history_path = folders["prepared"] / "history.parquet"
        history = pl.read_parquet(history_path)
        training_hash = frame_hash(history)
        registry = open_registry(Settings.from_env())
        why_not = training.training_decision(
            registry, training_hash, week=logical_date.isocalendar().week,
            every_weeks=int(params["retrain_every_weeks"]), force=bool(params["force_train"]))
        if why_not is not None:
            print(f"not training: {why_not}")
            return {"trained": False, "reason": why_not}
        lineage = {
            "dag_id": "house_prices", "run_id": run_id, "task_id": "train",
            "training_frame_hash": training_hash,
            "source_digest": folders["prepared"].name.removeprefix("source="),
            "reference_tables": {"zip_price_per_sqft": str(folders["prepared"] / "zip_price_per_sqft.csv")},
        }
        report = training.train_model(history, registry=registry, lineage=lineage, data_paths=[str(history_path)])
        print(f"{report['version']}: test R² {report['test']['r2']:.3f} "
              f"(zip-median baseline {report['baseline_zip_median']['r2']:.3f}); "
              f"{'promoted to champion' if report['promoted'] else 'kept as a candidate'}: {report['reason']}")
        return report

    ingest() >> validate() >> prepare() >> train()
