"""Tables of a benchmark result: one per figure, rendered with Rich and as Markdown.

Rows: our cases and the peers measured in the same invocation, then the anchors
measured earlier (not comparable run for run: other load, maybe other scripts), the
goals, and the ratios headwater / peer computed from this invocation's medians.
A ratio below 1 means headwater took less (time, CPU, memory) than the peer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

SHAPE_TITLES = {"a": "a: 1 task", "b": "b: chain 100", "c": "c: 500 + join", "d": "d: 1,000 layered"}

ANCHORS: dict[str, dict[str, Any]] = {
    "luigi": {"label": "anchor: Luigi 3.8 (local scheduler, no persisted state)",
              "wall": {"a": 0.27, "b": 0.56, "c": 2.72}, "peak_rss_mb": {"note": "35 MB (shape not recorded)"}},
    "dagster": {"label": "anchor: Dagster 1.13 in-process", "wall": {"a": 2.9, "b": 4.3, "c": 9.8}},
    "prefect": {"label": "anchor: Prefect 3.8", "wall": {"a": 15.5},
                "latency_ms": {"b": 20, "note": "~20 ms overhead per task"}},
    "airflow": {"label": "anchor: Airflow 3.3 dags test", "wall": {"a": 15.7},
                "latency_ms": {"b": 200, "note": "~200 ms per chained task"}},
}
GOALS: dict[str, dict[str, Any]] = {
    "wall": {"a": 0.3, "b": 0.5, "c": 1.0, "note": "c: using both cores (scheduler row)"},
    "latency_ms": {"b": 5},
    "peak_rss_mb": {"a": 150, "b": 150, "c": 150, "d": 150, "note": "process tree"},
}
METRICS = {
    "wall": ("Wall time (s), median", "s"),
    "cpu": ("CPU time user+sys of the process tree (s), median", "s"),
    "peak_rss_mb": ("Peak memory: summed RSS of the process tree (MB), median", "MB"),
    "latency_ms": ("Task-to-task latency (ms): end of upstream body to start of dependant body, "
                   "median over dependants, median of runs", "ms"),
    "db_latency_ms": ("headwater task-to-task latency from the metadata DB (ms): start of a try "
                      "minus the end of its upstream tries", "ms"),
}
RATIOS = [
    ("headwater_test", "luigi_1", "ratio: headwater dags test / Luigi 1 worker"),
    ("headwater_test", "dagster", "ratio: headwater dags test / Dagster"),
    ("headwater_scheduler", "luigi_1", "ratio: headwater scheduler / Luigi 1 worker"),
    ("headwater_scheduler", "luigi_{workers}", "ratio: headwater scheduler / Luigi {workers} workers"),
]


@dataclass
class Row:
    label: str
    cells: list[str]
    kind: str  # "ours", "peer", "anchor", "goal", "ratio"
    note: str = ""
    flags: list[bool | None] = field(default_factory=list)  # per cell: meets the goal?


@dataclass
class TableData:
    title: str
    shapes: list[str]
    rows: list[Row]

    @property
    def columns(self) -> list[str]:
        return [SHAPE_TITLES[s] for s in self.shapes]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "MB":
        return f"{value:.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def build_tables(doc: dict[str, Any]) -> list[TableData]:
    """The tables of a result document written by ``orchestration.py``."""
    shapes: list[str] = doc["shapes"]
    results: dict[str, dict[str, Any]] = doc["results"]
    labels: dict[str, str] = doc["cases"]
    tables = []
    for metric, (title, unit) in METRICS.items():
        rows: list[Row] = []
        for key, label in labels.items():
            if metric == "db_latency_ms" and not key.startswith("headwater"):
                continue
            cells, flags, notes = [], [], []
            for s in shapes:
                res = results.get(key, {}).get(s)
                value = res["median"].get(metric) if res else None
                cells.append(_fmt(value, unit))
                goal = GOALS.get("latency_ms" if metric == "db_latency_ms" else metric, {}).get(s)
                flags.append(None if value is None or goal is None or not key.startswith("headwater")
                             else value <= goal)
                if res and res["failures"]:
                    notes.append(f"{s}: {res['failures']}/{len(res['runs'])} runs failed")
            if any(c != "-" for c in cells):
                rows.append(Row(label, cells, "ours" if key.startswith("headwater") else "peer", "; ".join(notes),
                                flags))
        if metric != "db_latency_ms":
            for anchor in ANCHORS.values():
                figures = anchor.get(metric)
                has_values = figures is not None and any(k in figures for k in SHAPE_TITLES)
                if figures and (not has_values or any(s in figures for s in shapes)):
                    rows.append(Row(anchor["label"], [_fmt(figures.get(s), unit) for s in shapes], "anchor",
                                    figures.get("note", "")))
            goal = GOALS.get(metric)
            if goal:
                rows.append(Row("goal for headwater", [("<= " + _fmt(goal[s], unit)) if s in goal else "-"
                                                       for s in shapes], "goal", goal.get("note", "")))
            for ours, peer, label in RATIOS:
                peer = peer.format(workers=doc.get("workers", 2))
                label = label.format(workers=doc.get("workers", 2))
                if ours not in results or peer not in results:
                    continue
                cells = []
                for s in shapes:
                    a = results[ours].get(s, {}).get("median", {}).get(metric)
                    b = results[peer].get(s, {}).get("median", {}).get(metric)
                    cells.append(f"{a / b:.2f}x" if a is not None and b else "-")
                if any(c != "-" for c in cells):
                    rows.append(Row(label, cells, "ratio"))
        tables.append(TableData(title, shapes, rows))
    return tables


_STYLES = {"ours": "bold", "peer": "", "anchor": "dim", "goal": "cyan", "ratio": "magenta"}


def to_rich(table: Any) -> Table:
    """A table (anything with ``title``, ``columns`` and ``rows`` of :class:`Row`) for the terminal."""
    out = Table(title=table.title, title_justify="left")
    out.add_column("")
    for column in table.columns:
        out.add_column(column, justify="right")
    out.add_column("note", overflow="fold")
    for row in table.rows:
        cells = []
        for i, cell in enumerate(row.cells):
            flag = row.flags[i] if i < len(row.flags) else None
            cells.append(cell if flag is None else f"[{'green' if flag else 'red'}]{cell}[/]")
        out.add_row(row.label, *cells, row.note, style=_STYLES[row.kind])
    return out


def header(doc: dict[str, Any]) -> str:
    """Where and when: one Markdown paragraph."""
    m = doc["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in doc["versions"].items())
    return (
        f"Measured {doc['date']} with `{doc['command']}`: {doc['runs']} run(s) per figure. "
        f"{m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Python {m['python']}; "
        f"load average {m['loadavg_before'][0]:.2f} before, {m['loadavg_after'][0]:.2f} after. {versions}."
    )


def to_markdown(tables: list[TableData], doc: dict[str, Any] | None = None) -> str:
    parts = [header(doc)] if doc is not None else []
    return "\n\n".join(parts + markdown_tables(tables)) + "\n"


def markdown_tables(tables: list[Any]) -> list[str]:
    """Each table (``title``, ``columns``, ``rows``) as a Markdown table; ours in bold."""
    out = []
    for table in tables:
        head = ["", *table.columns, "note"]
        lines = [f"**{table.title}**", "", "| " + " | ".join(head) + " |",
                 "|" + "|".join(["---"] + ["---:"] * len(table.columns) + ["---"]) + "|"]
        for row in table.rows:
            label = f"**{row.label}**" if row.kind == "ours" else row.label
            lines.append("| " + " | ".join([label, *row.cells, row.note]) + " |")
        out.append("\n".join(lines))
    return out
