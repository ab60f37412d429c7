"""Drawing a DAG for a terminal: a dependency tree and a layered graph."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.tree import Tree

    from headwater.orchestration.spec import DagSpec


def layers(spec: DagSpec) -> list[list[str]]:
    """Tasks grouped by depth: a task sits one layer below its deepest upstream task."""
    depth: dict[str, int] = {}
    for tid in spec.topological_order():
        ups = spec.tasks[tid].upstream
        depth[tid] = 1 + max((depth[u] for u in ups), default=-1)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for tid in spec.topological_order():
        out[depth[tid]].append(tid)
    return out


def render_tree(spec: DagSpec, *, limit: int = 200) -> Tree:
    """Each root with its downstream tasks nested (a task shown again is marked ↺)."""
    from rich.tree import Tree

    down = spec.downstream()
    tree = Tree(f"[bold]{spec.dag_id}[/]")
    shown: set[str] = set()
    count = 0

    def add(node: Tree, tid: str) -> None:
        nonlocal count
        count += 1
        if count > limit:
            return
        t = spec.tasks[tid]
        label = f"{tid} [dim]<{t.operator}>[/]"
        if t.trigger_rule != "all_success":
            label += f" [yellow]{t.trigger_rule}[/]"
        if tid in shown:
            node.add(label + " [dim]↺[/]")
            return
        shown.add(tid)
        child = node.add(label)
        for d in down[tid]:
            add(child, d)

    for root in [tid for tid, t in spec.tasks.items() if not t.upstream]:
        add(tree, root)
    if count > limit:
        tree.add(f"[dim]... {len(spec.tasks)} tasks in all[/]")
    return tree


def render_graph(spec: DagSpec, *, width: int = 6) -> str:
    """A layered ASCII graph: one row per layer, arrows naming each task's upstream."""
    rows: list[str] = []
    for i, layer in enumerate(layers(spec)):
        names = layer if len(layer) <= width else [*layer[:width], f"... (+{len(layer) - width})"]
        rows.append(f"L{i}  " + "   ".join(f"[{n}]" for n in names))
        if i + 1 < len(layers(spec)):
            rows.append("     │")
            rows.append("     ▼")
    edges = [f"  {u} ──▶ {tid}" for tid in spec.topological_order() for u in spec.tasks[tid].upstream]
    if edges:
        rows.append("edges:")
        rows.extend(edges[:100])
        if len(edges) > 100:
            rows.append(f"  ... {len(edges) - 100} more")
    return "\n".join(rows)
