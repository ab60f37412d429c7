"""Tables of an ML scoring benchmark result (``bench/ml.py``), rendered with Rich and as Markdown.

Anchors are the figures given in issue 4, measured earlier on this kind of machine:
printed beside ours, not compared run for run. Ratios come from one invocation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from report import Row, markdown_tables
from report import to_rich as to_rich  # re-exported: ml.py renders through this module

ANCHORS: dict[str, Any] = {
    "record": "1.1k", "batch": "100-170k",
    "note_record": "per-record scoring, 100-tree gradient boosting (issue 4)",
    "note_batch": "micro-batches of 10k (issue 4)",
}
GOALS: dict[str, float] = {"batch_rate_cpu": 200_000, "ratio": 100.0, "app_rate_cpu": 100_000, "rest_p99_ms": 10.0}


@dataclass
class TableData:
    title: str
    columns: list[str]
    rows: list[Row]


def rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 999_500:
        return f"{value / 1e6:.2f}M"
    if value >= 10_000:
        return f"{value / 1e3:.0f}k"
    return f"{value / 1e3:.2f}k"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _med(doc: dict[str, Any], key: str) -> float | None:
    value: float | None = doc["median"].get(key)
    return value


def paths_table(doc: dict[str, Any]) -> TableData | None:
    if _med(doc, "b_rate_cpu") is None:
        return None
    a_cpu, a_wall = _med(doc, "a_rate_cpu"), _med(doc, "a_rate_wall")
    b_cpu, b_wall = _med(doc, "b_rate_cpu"), _med(doc, "b_rate_wall")
    ratio_cpu = _med(doc, "ratio_cpu")
    ratio_wall = _med(doc, "ratio_wall")
    rows = [
        Row("(a) per record: orjson, 1-row frame, validate, features + predict, encode",
            [rate(a_cpu), rate(a_wall), "1x", "1x"], "peer", f"{doc['sizes']['record']:,} records"),
        Row(f"(b) micro-batches of {doc['sizes']['batch']:,}: Json() frame, validate, one predict, encode_frame",
            [rate(b_cpu), rate(b_wall), "-" if ratio_cpu is None else f"{ratio_cpu:.0f}x",
             "-" if ratio_wall is None else f"{ratio_wall:.0f}x"], "ours", f"{doc['sizes']['paths']:,} records",
            [None if b_cpu is None else b_cpu >= GOALS["batch_rate_cpu"], None,
             None if ratio_cpu is None else ratio_cpu >= GOALS["ratio"], None]),
        Row("anchor: per record (issue 4)", [ANCHORS["record"], "-", "-", "-"], "anchor", ANCHORS["note_record"]),
        Row("anchor: micro-batches (issue 4)", [ANCHORS["batch"], "-", "-", "-"], "anchor", ANCHORS["note_batch"]),
        Row("goal for (b)", [f">= {rate(GOALS['batch_rate_cpu'])}", "-", f">= {GOALS['ratio']:.0f}x", "-"], "goal"),
    ]
    title = (f"(a, b) scoring JSON records with {doc['model']['label']}: records/s "
             f"(median of {doc['runs']}; ratio per run, in one process)")
    return TableData(title, ["rec/s per core (CPU)", "rec/s (wall)", "x per record (CPU)", "x per record (wall)"],
                     rows)


def steps_table(doc: dict[str, Any]) -> TableData | None:
    steps: dict[str, float] | None = doc["median"].get("b_steps")
    if not steps:
        return None
    total = sum(steps.values()) or 1.0
    n = doc["sizes"]["paths"]
    cells = [f"{steps[k] / n * 1e6:.2f} µs ({steps[k] / total:.0%})" for k in ("decode", "validate", "score", "encode")]
    return TableData(f"(b) where the time goes: wall time per record of each step (median of {doc['runs']})",
                     ["decode (Json frame)", "validate", "score (features + predict)", "encode (NDJSON)"],
                     [Row("(b) micro-batched path", cells, "ours")])


def app_table(doc: dict[str, Any]) -> TableData | None:
    c_cpu = _med(doc, "c_rate_cpu")
    if c_cpu is None:
        return None
    rows = [
        Row("(c) stream(Json()).predict(ref).to(sink) on the embedded log",
            [rate(c_cpu), rate(_med(doc, "c_rate_wall")), ms(_med(doc, "c_cpu"))], "ours",
            f"{doc['sizes']['app']:,} records, 4 partitions, batches of {doc['sizes']['batch']:,}",
            [c_cpu >= GOALS["app_rate_cpu"], None, None]),
        Row("goal for (c)", [f">= {rate(GOALS['app_rate_cpu'])}", "-", "-"], "goal"),
    ]
    return TableData(f"(c) the stream app end to end (median of {doc['runs']})",
                     ["rec/s per core (CPU)", "rec/s (wall)", "CPU s"], rows)


def rest_table(doc: dict[str, Any]) -> TableData | None:
    p99 = _med(doc, "d1_p99")
    if p99 is None:
        return None
    rows = [
        Row("(d) headwater serve, POST /predict", [ms(_med(doc, "d1_p50")), ms(p99), ms(_med(doc, "dl_p50")),
                                                    ms(_med(doc, "dl_p99")), rate(_med(doc, "dl_rate"))], "ours",
            f"{doc['sizes']['rest_one']:,} + {doc['sizes']['rest_list']:,} sequential requests, kept-alive httpx",
            [None, p99 < GOALS["rest_p99_ms"], None, None, None]),
        Row("goal for (d)", ["-", f"< {GOALS['rest_p99_ms']:.0f}", "-", "-", "-"], "goal"),
    ]
    return TableData(f"(d) REST latency, ms, client to client (median of {doc['runs']} runs' percentiles)",
                     ["1 record p50", "1 record p99", "1,000 records p50", "1,000 records p99",
                      "rec/s in lists"], rows)


def build_tables(doc: dict[str, Any]) -> list[TableData]:
    tables = [paths_table(doc), steps_table(doc), app_table(doc), rest_table(doc)]
    return [t for t in tables if t is not None]


def header(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in doc["versions"].items())
    model = doc["model"]
    return (
        f"Measured {doc['date']} to {doc['finished']} with `{doc['command']}`: {doc['runs']} run(s) per figure. "
        f"{m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Python {m['python']}; load average "
        f"{m['loadavg_before'][0]:.2f} before, {m['loadavg_after'][0]:.2f} after. Model: {model['description']}. "
        f"{versions}."
    )


def to_markdown(tables: list[TableData], doc: dict[str, Any] | None = None) -> str:
    parts = [header(doc)] if doc is not None else []
    return "\n\n".join(parts + markdown_tables(tables)) + "\n"
