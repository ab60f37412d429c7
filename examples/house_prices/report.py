"""The scenario's summary as Rich tables: the model against its baselines, the quarantine, the stream's output.

Everything is read back from where the pipeline left it (the registry, the lake's
``validation.json`` and ``quarantine.csv``, the topics), so the summary shows what is
stored, not what a process remembered.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from house_prices import scenario, training
from house_prices.stream_app import ALERTS_TOPIC, APP, PRICED_TOPIC

SHOWN = 5  # priced records, quarantined rows, alerts shown


def count_rows(path: Path) -> int:
    import polars as pl

    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


def shifted(listings: Path, factor: float, folder: Path) -> Path:
    """A copy of the listings with ``sqft_living`` times ``factor``: data the drift monitor should notice."""
    import polars as pl

    out = folder / f"listings_sqft_living_x{factor:g}.parquet"
    frame = pl.read_parquet(listings)
    frame.with_columns((pl.col("sqft_living") * factor).round(0).cast(pl.Int64)).write_parquet(out)
    return out


def registry_state(registry: Any) -> int:
    """How many versions of the model exist (0 before the first training)."""
    from headwater.errors import UserError

    try:
        return len(registry.list_versions(training.MODEL))
    except UserError:
        return 0


def _fmt(value: Any, metric: str) -> str:
    if value is None:
        return "-"
    if metric == "r2":
        return f"{value:.3f}"
    if metric == "mape":
        return f"{value:.1%}"
    return f"{value:,.0f}"


def metrics_table(model: dict[str, Any], *, listings: dict[str, Any] | None = None) -> Any:
    from rich.table import Table

    table = Table(title=f"model {model['version']} on the test split (newest 10% of history by sale date, "
                        f"{int(model['test'].get('n', 0)):,} sales)", title_justify="left")
    table.add_column("")
    for metric in ("RMSE $", "MAE $", "R²", "MAPE"):
        table.add_column(metric, justify="right")
    rows = [("LightGBM, log price", model["test"]),
            ("baseline: zip median (train split)", model["baseline_zip_median"]),
            ("baseline: mean price", model["baseline_mean"])]
    if listings:
        rows.append((f"new listings scored by the stream ({int(listings['n']):,})", listings))
    for label, values in rows:
        table.add_row(label, *(_fmt(values.get(k), k) for k in ("rmse", "mae", "r2", "mape")))
    return table


def quarantine_section(console: Any, folder: Path) -> None:
    import polars as pl
    from rich.table import Table

    report = json.loads((folder / "validation.json").read_text())
    console.print(f"validation: {report['rows']:,} rows, {report['clean']:,} clean, "
                  f"[bold]{report['quarantined']:,} quarantined[/] to {folder / 'quarantine.csv'}")
    console.print("  broken rules: " + (", ".join(f"{k} {v}" for k, v in report["violations"].items()) or "none"))
    console.print("  kept and counted: " + ", ".join(f"{k.replace('_', ' ')} {v:,}"
                                                      for k, v in report["kept_oddities"].items()))
    rows = pl.read_csv(folder / "quarantine.csv").head(SHOWN)
    if rows.height:
        table = Table("id", "date", "reason", title="quarantined rows", title_justify="left")
        for r in rows.iter_rows(named=True):
            table.add_row(str(r["id"]), str(r["sale_date"]), r["reason"])
        console.print(table)


def priced_table(priced: list[dict[str, Any]], truth: dict[int, float]) -> Any:
    from rich.table import Table

    table = Table("id", "zip", "city", "sqft", "beds", "predicted $", "sold for $", "error", "zip $/sqft",
                  "flags", title="priced listings (houses.priced)", title_justify="left")
    for r in priced[:SHOWN]:
        actual = truth.get(r["id"])
        error = f"{r['predicted_price'] / actual - 1:+.1%}" if actual else "-"
        table.add_row(str(r["id"]), str(r["zipcode"]), str(r.get("city")), f"{r['sqft_living']:,}", str(r["bedrooms"]),
                      f"{r['predicted_price']:,.0f}", f"{actual:,.0f}" if actual else "-", error,
                      _fmt(r.get("zip_median_price_per_sqft"), "x"), ", ".join(r.get("data_checks") or []) or "")
    return table


def summary(console: Any, home: scenario.Home, params: dict[str, Any], *, since: scenario.Offsets, before: int,
            dag_seconds: float, stream_seconds: float, total_seconds: float, metrics: list[str] = ()) -> None:
    """Print the demo's summary (see the module docstring)."""
    import polars as pl

    from headwater.ml.metrics import regression_metrics

    registry, broker, folders = home.registry(), home.broker(), home.lake(params)
    console.rule("[bold]summary")

    model = training.model_report(registry)
    versions = registry.list_versions(training.MODEL)
    if len(versions) > before:
        latest = versions[-1]
        console.print(f"trained {latest.ref}: {latest.status} ({latest.status_reason})")
    else:
        console.print(f"trained nothing new: the champion was trained on this data already ({len(versions)} "
                      "version(s) registered; --force retrains)")

    priced = scenario.read_json(broker, PRICED_TOPIC, since.priced)
    dead = scenario.dead_letters(broker, since.dlq)
    alerts = scenario.read_json(broker, ALERTS_TOPIC, since.alerts)
    truth_frame = pl.read_parquet(folders["prepared"] / "listings_truth.parquet")
    truth = dict(zip(truth_frame["id"].to_list(), truth_frame["price"].to_list(), strict=True))
    scored = [r for r in priced if r["id"] in truth]
    listings = regression_metrics([truth[r["id"]] for r in scored], [r["predicted_price"] for r in scored]) \
        if scored else None
    if model:
        console.print(metrics_table(model, listings=listings))
        split = model["split"]
        prepared = json.loads((folders["prepared"] / "_SUCCESS").read_text())
        bounds = split.get("boundaries", {})
        console.print(f"  time split 70/20/10 by sale date: train to {bounds.get('train_end')}, validation to "
                      f"{bounds.get('validation_end')}, test after; the {prepared['listings']:,} new listings "
                      f"(sold from {prepared['listings_from']}) were never seen in training")

    console.print()
    quarantine_section(console, folders["clean"])

    console.print()
    flags = Counter(code for r in priced for code in (r.get("data_checks") or []))
    flagged = sum(1 for r in priced if r.get("data_checks"))
    versions_used = Counter(r["model_version"] for r in priced)
    console.print(f"stream app {APP}: [bold]{len(priced):,} listings priced[/] "
                  f"({', '.join(f'{n:,} by {v}' for v, n in versions_used.items())}), "
                  f"{flagged:,} flagged, {len(dead):,} dead-lettered; "
                  f"{len(priced) + len(dead):,} records in {stream_seconds:.1f} s from the start of the replay")
    if flags:
        console.print("  flags: " + ", ".join(f"{k} {v}" for k, v in flags.most_common()))
    for letter in dead[:SHOWN]:
        console.print(f"  dead letter at {letter.topic}:{letter.offset}: {letter.error_message}", markup=False)
    console.print(priced_table(priced, truth))

    console.print(f"drift alerts to {ALERTS_TOPIC}: {len(alerts)}")
    for alert in alerts[:SHOWN]:
        try:
            text = (f"{alert['feature']}: {alert['metric']} {alert['value']:.3f} > {alert['threshold']} over the last "
                    f"{alert['window_size']:,} records")
        except (KeyError, TypeError, ValueError):  # another alert shape: shown as it is
            text = json.dumps(alert)[:200]
        console.print(f"  {text}", markup=False)
    if not alerts:
        console.print("  (none: the listings look like the training data; `--shift 1.5` replays them with "
                      "sqft_living x 1.5)")

    if metrics:
        console.print("the app's Prometheus metrics, scraped before it stopped:")
        for line in metrics[:12]:
            console.print(f"  {line}", markup=False)

    console.print()
    console.print(f"state lives in {home.path}: headwater.db (runs, models), logs/ (task logs), "
                  f"house_prices/ (the lake), models/ (artifacts), topics/ (embedded log), house_pricing.log")
    console.print(f"look around: export HEADWATER_HOME={home.path}; headwater models show house_prices@champion; "
                  f"headwater topics tail {PRICED_TOPIC} -n 3; headwater runs list; "
                  f"headwater --dags {scenario.DAGS.relative_to(scenario.EXAMPLES.parent)} web "
                  "(the UI at http://127.0.0.1:8080)")
    console.print(f"[bold green]demo done[/] in {total_seconds:.0f} s (DAG {dag_seconds:.0f} s, "
                  f"stream {stream_seconds:.1f} s)")
