"""Drawing a DAG for a terminal: a dependency tree and a layered graph.

The tree reads well for small DAGs; the layered graph stays readable at hundreds of
tasks: one line a task, grouped by depth, each naming what it waits for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.tree import Tree

    from headwater.orchestration.spec import DagSpec

TREE_LIMIT = 40  # above this many tasks the tree is longer than it is useful


def layers(spec: DagSpec) -> list[list[str]]:
    """Tasks grouped by depth: a task sits one layer below its deepest upstream task."""
    depth: dict[str, int] = {}
    order = spec.topological_order()
    for tid in order:
        ups = spec.tasks[tid].upstream
        depth[tid] = 1 + max((depth[u] for u in ups), default=-1)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for tid in order:
        out[depth[tid]].append(tid)
    return out


def render_tree(spec: DagSpec, *, limit: int = 200) -> Tree:
    """Each root with its downstream tasks nested (a task shown again is marked ↺)."""
    from rich.markup import escape
    from rich.tree import Tree

    down = spec.downstream()
    tree = Tree(f"[bold]{escape(spec.dag_id)}[/]")
    shown: set[str] = set()
    count = 0

    def add(node: Tree, tid: str) -> None:
        nonlocal count
        count += 1
        if count > limit:
            return
        t = spec.tasks[tid]
        label = f"{escape(tid)} [dim]<{escape(t.operator)}>[/]"
        if t.trigger_rule != "all_success":
            label += f" [yellow]{t.trigger_rule}[/]"
        if tid in shown:
            node.add(label + " [dim]↺[/]")
            return
        shown.add(tid)
        child = node.add(label)
        for d in sorted(down[tid]):
            add(child, d)

    for root in [tid for tid, t in spec.tasks.items() if not t.upstream]:
        add(tree, root)
    if count > limit:
        tree.add(f"[dim]... {len(spec.tasks)} tasks in all[/]")
    return tree


def _names(items: list[str], room: int) -> str:
    """Comma-separated names cut to ``room`` characters, saying how many were left out."""
    text = ""
    for i, name in enumerate(items):
        rest = len(items) - i - 1
        piece = name if not text else f", {name}"
        more = f" (+{rest} more)" if rest else ""
        if text and len(text) + len(piece) + len(more) > room:
            return f"{text} (+{len(items) - i} more)"
        text += piece
    return text


def render_graph(spec: DagSpec, *, width: int = 80) -> list[str]:
    """Plain lines: a heading a layer, then each task with the tasks it waits for (``<-``).

    Lines fit in ``width`` columns (upstream lists are cut with "+N more"), except a
    task id longer than the width, which is never cut.
    """
    groups = layers(spec)
    edges = sum(len(t.upstream) for t in spec.tasks.values())
    lines = [f"graph: {len(spec.tasks)} task(s), {edges} edge(s), {len(groups)} layer(s); "
             "<- names the tasks a task waits for"]
    for i, layer in enumerate(groups, start=1):
        lines.append(f"layer {i}" + (f" ({len(layer)} tasks)" if len(layer) > 1 else ""))
        pad = min(max(len(t) for t in layer), 32)
        for tid in layer:
            ups = sorted(spec.tasks[tid].upstream)
            if not ups:
                lines.append(f"  {tid}")
                continue
            head = f"  {tid:<{pad}}  <- "
            lines.append(head + _names(ups, max(16, width - len(head))))
    return lines
