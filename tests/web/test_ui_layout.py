"""The geometry of the DAG graph and the Gantt chart (pure functions, no server)."""

from __future__ import annotations

import datetime as dt

from headwater.web.ui.layout import NODE_H, NODE_W, duration_text, layers, layout_gantt, layout_graph


def test_layers_by_longest_path() -> None:
    up = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": ["a", "d"]}
    assert layers(up) == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 3}


def test_a_long_chain_needs_no_recursion() -> None:
    up = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(5000)}
    assert layers(up)["t4999"] == 4999


def test_nodes_do_not_overlap_and_edges_go_left_to_right() -> None:
    up = {"root": [], **{f"mid{i}": ["root"] for i in range(6)}, "sink": [f"mid{i}" for i in range(6)]}
    g = layout_graph(up, {"root": "success"}, {"root": "BashOperator"})
    boxes = [(n.x, n.y) for n in g.nodes]
    for i, (x1, y1) in enumerate(boxes):
        for x2, y2 in boxes[i + 1:]:
            assert abs(x1 - x2) >= NODE_W or abs(y1 - y2) >= NODE_H
    assert all(n.x >= 0 and n.x + NODE_W <= g.width and n.y >= 0 and n.y + NODE_H <= g.height for n in g.nodes)
    assert len(g.edges) == 12
    by_id = {n.task_id: n for n in g.nodes}
    assert by_id["root"].state == "success" and by_id["mid0"].state == "none"
    assert by_id["root"].x < by_id["mid0"].x < by_id["sink"].x


def test_barycentre_order_removes_the_crossing() -> None:
    # a1->b2, a2->b1 in input order would cross; the sweep puts b2 first.
    up = {"a1": [], "a2": [], "b1": ["a2"], "b2": ["a1"]}
    g = {n.task_id: n for n in layout_graph(up).nodes}
    assert g["b2"].y < g["b1"].y


def test_groups_get_boxes_around_their_tasks_and_short_labels() -> None:
    up = {"start": [], "train.a": ["start"], "train.b": ["start"], "end": ["train.a", "train.b"]}
    g = layout_graph(up, groups={"train.a": ("train",), "train.b": ("train",)})
    (box,) = g.groups
    inside = [n for n in g.nodes if n.task_id.startswith("train.")]
    assert all(box.x < n.x and n.x + NODE_W < box.x + box.w and box.y < n.y and n.y + NODE_H < box.y + box.h
               for n in inside)
    assert {n.label for n in inside} == {"a", "b"}
    outside = [n for n in g.nodes if not n.task_id.startswith("train.")]
    assert all(not (box.x < n.x < box.x + box.w and box.y < n.y < box.y + box.h) for n in outside)


def test_gantt_bars_are_placed_on_one_time_axis() -> None:
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    now = t0 + dt.timedelta(seconds=100)
    rows = [("a", "success", t0, t0 + dt.timedelta(seconds=20)),
            ("b", "running", t0 + dt.timedelta(seconds=50), None),
            ("c", "none", None, None)]
    g = layout_gantt(rows, now, chart_w=1000)
    a, b, c = g.bars
    assert (a.x, a.w) == (0.0, 200.0)
    assert (b.x, b.w, b.duration) == (500.0, 500.0, 50.0)  # running: ends now
    assert c.w == 0 and c.start is None
    assert [label for _, label in g.ticks] == ["0s", "20s", "40s", "60s", "80s", "100s"]


def test_durations_for_people() -> None:
    assert [duration_text(x) for x in (None, 0.42, 12.4, 185, 7260)] == ["", "0.4s", "12s", "3m 05s", "2h 01m"]


def test_a_deep_dag_goes_top_to_bottom_when_it_would_not_fit_across() -> None:
    up = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(12)}
    across = layout_graph(up)
    down = layout_graph(up, fit_width=1200)
    assert across.width > 1200 and down.width < 400 and down.height > across.height
    ys = [n.y for n in down.nodes]
    assert ys == sorted(ys) and len(set(ys)) == 12  # one task per row, in order
    assert layout_graph(up, fit_width=10_000).width == across.width  # fits: stays left to right
