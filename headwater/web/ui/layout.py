"""Geometry of the server-rendered SVG pictures: the DAG graph and the Gantt chart of one run.

Computed here in Python and drawn by templates (so every label goes through Jinja's autoescape).
The graph layout is a small Sugiyama-style one, written here rather than vendoring a JS library
because DAGs are small (<= a few hundred tasks) and this way the picture needs no script at all:

1. layers by longest path from a root (a task sits one layer right of its furthest upstream);
2. order within a layer by the barycentre of upstream positions, a few down/up sweeps
   (fewer crossings than input order on fan-in/fan-out DAGs);
3. coordinates: layers left to right, each layer centred vertically; edges are cubic curves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

NODE_W = 190
NODE_H = 42
GAP_X = 70
GAP_Y = 18
GAP_TB_X = 24  # top-to-bottom layout: between tasks of a layer
GAP_TB_Y = 44  # and between layers
PAD = 16
SWEEPS = 4


@dataclass(frozen=True, slots=True)
class Node:
    """A task's box: top-left corner, its state for colouring and its operator."""

    task_id: str
    x: float
    y: float
    state: str
    operator: str
    label: str


@dataclass(frozen=True, slots=True)
class Edge:
    """An SVG path (``d`` attribute) from an upstream task's right side to a downstream task's left side."""

    d: str
    upstream: str
    downstream: str


@dataclass(frozen=True, slots=True)
class GroupBox:
    """A task group drawn as a box around its tasks (nested groups inside their parent's box)."""

    group_id: str
    x: float
    y: float
    w: float
    h: float
    depth: int


@dataclass(frozen=True, slots=True)
class Graph:
    """A laid-out DAG: nodes, edges, task-group boxes and the picture's size."""

    nodes: list[Node]
    edges: list[Edge]
    width: float
    height: float
    node_w: int = NODE_W
    node_h: int = NODE_H
    groups: tuple[GroupBox, ...] = ()


def layers(upstream: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Layer of every task: 0 for roots, else 1 + the largest layer among its upstream tasks.

    Iterative (no recursion limit on long chains); upstream ids that are not tasks are ignored.
    """
    layer: dict[str, int] = {}
    for start in upstream:
        stack = [start]
        while stack:
            task = stack[-1]
            if task in layer:
                stack.pop()
                continue
            pending = [u for u in upstream.get(task, ()) if u in upstream and u not in layer]
            if pending:
                stack.extend(pending)
                continue
            ups = [layer[u] for u in upstream.get(task, ()) if u in layer]
            layer[task] = 1 + max(ups) if ups else 0
            stack.pop()
    return layer


def _order(upstream: Mapping[str, Sequence[str]], layer: dict[str, int]) -> list[list[str]]:
    count = max(layer.values(), default=-1) + 1
    columns: list[list[str]] = [[] for _ in range(count)]
    for task in upstream:  # input order (topological from the spec) as the first guess
        columns[layer[task]].append(task)
    downstream: dict[str, list[str]] = {t: [] for t in upstream}
    for task, ups in upstream.items():
        for u in ups:
            if u in downstream:
                downstream[u].append(task)

    def sweep(cols: range, neighbours: Mapping[str, Sequence[str]], ref_of: int) -> None:
        for i in cols:
            ref = {t: k for k, t in enumerate(columns[i + ref_of])}
            keyed = []
            for k, t in enumerate(columns[i]):
                pos = [ref[n] for n in neighbours[t] if n in ref]
                keyed.append((sum(pos) / len(pos) if pos else float(k), k, t))
            columns[i] = [t for _, _, t in sorted(keyed)]

    for _ in range(SWEEPS):
        sweep(range(1, count), upstream, -1)
        sweep(range(count - 2, -1, -1), downstream, +1)
    return columns


def layout_graph(
    upstream: Mapping[str, Sequence[str]],
    states: Mapping[str, str] | None = None,
    operators: Mapping[str, str] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    *,
    fit_width: float | None = None,
) -> Graph:
    """Lay out tasks (``task_id -> upstream ids``, in topological order) left to right.

    With ``fit_width``, a DAG too deep to fit that width left to right is laid out top to
    bottom instead (when that is narrower), so long pipelines stay readable without scrolling.

    ``groups`` maps a task to its task groups, outermost first; each group gets a box around
    its tasks, and a task's label drops its innermost group's prefix (``etl.extract`` -> ``extract``).
    """
    states = states or {}
    operators = operators or {}
    groups = groups or {}
    columns = _order(upstream, layers(upstream))
    # Keep a group's tasks next to each other in each layer (stable: the barycentre order otherwise).
    columns = [sorted(c, key=lambda t: tuple(groups.get(t, ()))[:1]) for c in columns]
    tallest = max((len(c) for c in columns), default=0)
    across = PAD * 2 + len(columns) * NODE_W + max(len(columns) - 1, 0) * GAP_X
    down = PAD * 2 + tallest * NODE_W + max(tallest - 1, 0) * GAP_TB_X
    vertical = fit_width is not None and across > fit_width and down < across
    if vertical:  # layers go down the page; a layer's tasks side by side
        width = down
        height = PAD * 2 + len(columns) * NODE_H + max(len(columns) - 1, 0) * GAP_TB_Y
    else:
        width = across
        height = PAD * 2 + tallest * NODE_H + max(tallest - 1, 0) * GAP_Y
    where: dict[str, tuple[float, float]] = {}
    nodes = []
    for i, column in enumerate(columns):
        spots: list[tuple[float, float]]
        if vertical:
            row_w = len(column) * NODE_W + max(len(column) - 1, 0) * GAP_TB_X
            spots = [((width - row_w) / 2 + k * (NODE_W + GAP_TB_X), float(PAD + i * (NODE_H + GAP_TB_Y)))
                     for k in range(len(column))]
        else:
            col_h = len(column) * NODE_H + max(len(column) - 1, 0) * GAP_Y
            spots = [(float(PAD + i * (NODE_W + GAP_X)), (height - col_h) / 2 + k * (NODE_H + GAP_Y))
                     for k in range(len(column))]
        for task, (x, y) in zip(column, spots, strict=True):
            where[task] = (x, y)
            inner = groups.get(task, ())
            name = task[len(inner[-1]) + 1:] if inner and task.startswith(inner[-1] + ".") else task
            label = name if len(name) <= 24 else name[:23] + "\u2026"
            nodes.append(Node(task, x, y, states.get(task, "none"), operators.get(task, ""), label))
    edges = []
    for task, ups in upstream.items():
        for u in ups:
            if u not in where:
                continue
            (ux, uy), (dx, dy) = where[u], where[task]
            if vertical:  # bottom middle of the upstream task to the top middle of the downstream one
                x1, y1, x2, y2 = ux + NODE_W / 2, uy + NODE_H, dx + NODE_W / 2, dy
                mid = (y1 + y2) / 2
                d = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2:.1f}"
            else:
                x1, y1, x2, y2 = ux + NODE_W, uy + NODE_H / 2, dx, dy + NODE_H / 2
                mid = (x1 + x2) / 2
                d = f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
            edges.append(Edge(d, u, task))
    boxes = _group_boxes(where, groups)
    return Graph(nodes, edges, max(width, NODE_W + 2 * PAD), max(height, NODE_H + 2 * PAD), groups=boxes)


def _group_boxes(where: Mapping[str, tuple[float, float]], groups: Mapping[str, Sequence[str]]) -> tuple[GroupBox, ...]:
    members: dict[str, list[tuple[float, float]]] = {}
    depth: dict[str, int] = {}
    for task, chain in groups.items():
        if task not in where:
            continue
        for d, group in enumerate(chain):
            members.setdefault(group, []).append(where[task])
            depth[group] = d
    boxes = []
    for group, points in members.items():
        # Outer groups get a wider margin so nested boxes sit inside them.
        pad = 10 + 6 * (max(depth.values()) - depth[group])
        x0 = min(x for x, _ in points) - pad
        y0 = min(y for _, y in points) - pad - 14  # room for the group's name
        x1 = max(x for x, _ in points) + NODE_W + pad
        y1 = max(y for _, y in points) + NODE_H + pad
        boxes.append(GroupBox(group, x0, y0, x1 - x0, y1 - y0, depth[group]))
    return tuple(sorted(boxes, key=lambda b: b.depth))


@dataclass(frozen=True, slots=True)
class Bar:
    """One task's bar in the Gantt chart (``x``/``w`` in pixels from the chart's left edge)."""

    task_id: str
    state: str
    x: float
    w: float
    y: float
    start: dt.datetime | None
    end: dt.datetime | None
    duration: float | None


@dataclass(frozen=True, slots=True)
class Gantt:
    """The Gantt chart of one run: bars, axis ticks (x, label) and the picture's size."""

    bars: list[Bar]
    ticks: list[tuple[float, str]]
    width: float
    height: float
    label_w: int
    row_h: int


def layout_gantt(
    rows: Sequence[tuple[str, str, dt.datetime | None, dt.datetime | None]],
    now: dt.datetime,
    *,
    chart_w: int = 860,
    label_w: int = 220,
    row_h: int = 24,
) -> Gantt:
    """Bars for ``(task_id, state, start, end)`` rows; a running task's bar ends at ``now``.

    Tasks that never started get no bar (their row stays, so the order matches the graph).
    """
    starts = [s for _, _, s, _ in rows if s is not None]
    origin = min(starts) if starts else now
    ends = [(e or now) for _, _, s, e in rows if s is not None]
    total = max(((e - origin).total_seconds() for e in ends), default=0.0) or 1.0
    scale = chart_w / total
    bars = []
    for i, (task, state, start, end) in enumerate(rows):
        y = 24 + i * row_h
        if start is None:
            bars.append(Bar(task, state, 0, 0, y, None, None, None))
            continue
        stop = end or now
        x = (start - origin).total_seconds() * scale
        w = max((stop - start).total_seconds() * scale, 2.0)
        bars.append(Bar(task, state, x, w, y, start, end, (stop - start).total_seconds()))
    ticks = [(chart_w * k / 5, _tick(total * k / 5, total)) for k in range(6)]
    return Gantt(bars, ticks, label_w + chart_w + 40, 24 + len(rows) * row_h + 8, label_w, row_h)


def _tick(value: float, total: float) -> str:
    # One unit for the whole axis, picked from its span, so the labels read as a scale.
    if total < 1:
        return f"{value * 1000:.0f} ms"
    if total < 120:
        return f"{value:.1f}s" if total < 10 else f"{value:.0f}s"
    if total < 7200:
        return f"{value / 60:.1f}m" if total < 600 else f"{value / 60:.0f}m"
    return f"{value / 3600:.1f}h"


def duration_text(seconds: float | None) -> str:
    """``0.4s``, ``12s``, ``3m 05s``, ``2h 01m``; empty for None."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"
