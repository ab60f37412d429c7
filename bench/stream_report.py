"""Tables of a streaming benchmark result, rendered with Rich and as Markdown.

One table for (a) (msg/s per client and partition count) and one per broker and record
shape for (b) and (c) (records/s of every way of writing the app, and each one's ratio to
the record-by-record loop of the same invocation). Anchors are the figures given in
issue 3, measured earlier on this kind of machine: printed beside ours, not compared run
for run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from report import Row, markdown_tables
from report import to_rich as to_rich  # re-exported: stream.py renders through this module

ANCHORS: dict[str, Any] = {
    "io": {"label": "anchor: librdkafka on Tansu (issue 3, partitions not recorded)",
           "produce": 600_000, "consume": 900_000, "note": "consume after assignment, larger fetches"},
    "loop_record": {"label": "anchor: per-record orjson loop (issue 3)", "rate_cpu": "80-95k",
                    "note": "decode-transform-encode, per core"},
}
GOALS: dict[str, Any] = {
    "io": 500_000,  # (a) msg/s each way, embedded log
    "app_rate_cpu": 200_000,  # (b) records/s per core, embedded log
    "ratio": 4.0,  # (c) micro-batch / record by record
}
IO_COLUMNS = [("produce", 1), ("produce", 4), ("consume", 1), ("consume", 4)]
APP_ORDER = ("app_json_expr", "app_schema_expr", "app_record_fns", "loop_batched", "loop_record")
MICRO_BATCH = ("app_json_expr", "app_schema_expr", "app_record_fns")
BACKENDS = {"log": "embedded log", "kafka": "Tansu (Kafka protocol)"}


@dataclass
class TableData:
    title: str
    columns: list[str]
    rows: list[Row]


def rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 999_500:  # not "1000k"
        return f"{value / 1e6:.2f}M"
    return f"{value / 1e3:.0f}k"


def _median(doc: dict[str, Any], key: str, metric: str) -> float | None:
    res = doc["results"].get(key)
    return None if res is None else res["median"].get(metric)


def _failures(doc: dict[str, Any], keys: list[str]) -> str:
    notes = []
    for key in keys:
        res = doc["results"].get(key)
        if res and res["failures"]:
            notes.append(f"{key}: {res['failures']}/{len(res['runs'])} runs failed")
    return "; ".join(notes)


def io_table(doc: dict[str, Any]) -> TableData | None:
    cases = {k: c for k, c in doc["cases"].items() if c["part"] == "a"}
    if not cases:
        return None
    columns = [f"{op}, {p} partition{'s' if p > 1 else ''}" for op, p in IO_COLUMNS]
    rows: list[Row] = []
    setups = list(dict.fromkeys((c["backend"], c["client"]) for c in cases.values()))
    for backend, client in setups:
        keys = [f"{op}-{backend}-{client}-p{p}" for op, p in IO_COLUMNS]
        values = [_median(doc, k, "rate_wall") for k in keys]
        label = next(c["label"] for c in cases.values() if (c["backend"], c["client"]) == (backend, client))
        ours = backend == "log"
        flags = [None if v is None or not ours else v >= GOALS["io"] for v in values]
        rows.append(Row(label, [rate(v) for v in values], "ours" if ours else "peer", _failures(doc, keys), flags))
    anchor = ANCHORS["io"]
    rows.append(Row(anchor["label"], [rate(anchor[op]) for op, _ in IO_COLUMNS], "anchor", anchor["note"]))
    rows.append(Row("goal for the embedded log", [f">= {rate(GOALS['io'])}"] * len(IO_COLUMNS), "goal", "each way"))
    for client in ("rdkafka_hw", "rdkafka_default", "headwater"):
        if ("kafka", client) not in setups:
            continue
        cells = []
        for op, p in IO_COLUMNS:
            a = _median(doc, f"{op}-log-headwater-p{p}", "rate_wall")
            b = _median(doc, f"{op}-kafka-{client}-p{p}", "rate_wall")
            cells.append(f"{a / b:.2f}x" if a and b else "-")
        peer = next(c["label"] for c in cases.values() if c["client"] == client and c["backend"] == "kafka")
        rows.append(Row(f"ratio: embedded log / {peer}", cells, "ratio"))
    n_log = doc["sizes"]["io_log"]
    n_kafka = doc["sizes"]["io_kafka"]
    title = (f"(a) produce and consume, msg/s (median of {doc['runs']}): 120-byte JSON values, keyed; "
             f"{n_log:,} on the log, {n_kafka:,} on Tansu")
    return TableData(title, columns, rows)


APP_COLUMNS = ["rec/s per core (CPU)", "rec/s (wall)", "x record by record (per core)",
               "x record by record (wall)", "CPU s of the app", "broker CPU s (whole run)"]


def app_table(doc: dict[str, Any], backend: str, shape: str) -> TableData | None:
    keys = [f"{v}-{backend}-{shape}" for v in APP_ORDER if f"{v}-{backend}-{shape}" in doc["cases"]]
    if not keys:
        return None
    base = f"loop_record-{backend}-{shape}"
    base_cpu, base_wall = _median(doc, base, "rate_cpu"), _median(doc, base, "rate_wall")
    goal_b = backend == "log" and shape == "simple"
    rows: list[Row] = []
    for key in keys:
        info = doc["cases"][key]
        med = doc["results"][key]["median"]
        r_cpu, r_wall = med.get("rate_cpu"), med.get("rate_wall")
        x_cpu = r_cpu / base_cpu if r_cpu and base_cpu else None
        x_wall = r_wall / base_wall if r_wall and base_wall else None
        broker_cpu = med.get("broker_cpu")
        cells = [rate(r_cpu), rate(r_wall), "-" if x_cpu is None else f"{x_cpu:.2f}x",
                 "-" if x_wall is None else f"{x_wall:.2f}x", "-" if med.get("cpu") is None else f"{med['cpu']:.2f}",
                 "-" if broker_cpu is None else f"{broker_cpu:.2f}"]
        batch = info["variant"] in MICRO_BATCH
        flags: list[bool | None] = [
            r_cpu >= GOALS["app_rate_cpu"] if goal_b and batch and r_cpu else None, None,
            x_cpu >= GOALS["ratio"] if batch and x_cpu else None, None, None, None,
        ]
        rows.append(Row(info["label"], cells, "ours" if batch else "peer", _failures(doc, [key]), flags))
    if shape == "simple":
        anchor = ANCHORS["loop_record"]
        rows.append(Row(anchor["label"], [anchor["rate_cpu"], "-", "-", "-", "-", "-"], "anchor", anchor["note"]))
    goals = [f">= {rate(GOALS['app_rate_cpu'])}" if goal_b else "-", "-", f">= {GOALS['ratio']:.0f}x", "-", "-", "-"]
    rows.append(Row("goal for the micro-batch app", goals, "goal", "(b) on the embedded log; (c) on every broker"
                    if goal_b else "(c); reported, not a goal of its own" if shape == "wide" else "(c)"))
    first = doc["cases"][keys[0]]
    title = (f"(b, c) app end to end on the {BACKENDS[backend]}, {shape} records: {first['n']:,} in, "
             f"{first['expected_out']:,} out, 4 partitions (median of {doc['runs']})")
    return TableData(title, APP_COLUMNS, rows)


def build_tables(doc: dict[str, Any]) -> list[TableData]:
    """The tables of a result document written by ``stream.py``."""
    tables = [io_table(doc), app_table(doc, "log", "simple"), app_table(doc, "kafka", "simple"),
              app_table(doc, "log", "wide")]
    return [t for t in tables if t is not None]


def header(doc: dict[str, Any]) -> str:
    """Where and when: one Markdown paragraph."""
    m = doc["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in doc["versions"].items())
    return (
        f"Measured {doc['date']} to {doc['finished']} (`date`: {doc['date_text']}) with `{doc['command']}`: "
        f"{doc['runs']} run(s) per figure. {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"Python {m['python']}; load average {m['loadavg_before'][0]:.2f} before, {m['loadavg_after'][0]:.2f} "
        f"after. {versions}."
    )


def to_markdown(tables: list[TableData], doc: dict[str, Any] | None = None) -> str:
    parts = [header(doc)] if doc is not None else []
    return "\n\n".join(parts + markdown_tables(tables)) + "\n"
