"""Rich output shared by commands: consoles, state colours, compact tables, times.

Tables are built to stay readable at 80 columns, on a terminal and in a pipe: no
side borders, ids never wrapped, free text (reasons, notes) the only column that
wraps. Times are UTC, written ``2021-01-06 12:00``; a table says "UTC" once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from headwater.store.base import TaskInstanceRecord

STATE_STYLE = {
    "success": "green",
    "failed": "bold red",
    "upstream_failed": "dark_orange",
    "skipped": "magenta",
    "running": "cyan",
    "queued": "grey62",
    "scheduled": "tan",
    "up_for_retry": "gold1",
    "up_for_reschedule": "turquoise2",
    "none": "dim",
    "removed": "dim",
}

_console: Console | None = None
_err: Console | None = None


def console() -> Console:
    """The console for results (stdout)."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(highlight=False)
    return _console


def err_console() -> Console:
    """The console for errors and hints (stderr)."""
    global _err
    if _err is None:
        from rich.console import Console

        _err = Console(stderr=True, highlight=False)
    return _err


def state(value: str) -> str:
    """A state as Rich markup in its colour."""
    return f"[{STATE_STYLE.get(value, 'white')}]{value}[/]"


def when(value: dt.datetime | None) -> str:
    """A time in UTC to the minute (``2021-01-06 12:00``); seconds only when not zero."""
    if value is None:
        return "-"
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S" if value.second else "%Y-%m-%d %H:%M")


def seconds(value: float | None) -> str:
    """A duration: ``45 ms``, ``2.31 s``, ``4m 05s``, ``1h 02m``."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.2f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


@dataclass(frozen=True)
class Col:
    """A table column: ids and short values never wrap; ``wrap=True`` for free text."""

    name: str
    wrap: bool = False
    right: bool = False


def table(*cols: Col | str) -> Table:
    """A compact table: a header rule, no side borders, one space between columns.

    Titles are printed apart (:func:`say`): a Rich title wraps at the table's width.
    """
    from rich import box
    from rich.table import Table

    out = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for col in cols:
        c = Col(col) if isinstance(col, str) else col
        out.add_column(c.name, no_wrap=not c.wrap, overflow="fold", justify="right" if c.right else "left")
    return out


def task_table(tis: Iterable[TaskInstanceRecord], order: Sequence[str] = ()) -> Table:
    """Task instances (in ``order`` of task ids, e.g. topological): task, state, try, duration, reason."""
    from rich.markup import escape

    rank = {tid: i for i, tid in enumerate(order)}
    out = table("task", "state", Col("try", right=True), Col("duration", right=True), Col("reason", wrap=True))
    for ti in sorted(tis, key=lambda t: (rank.get(t.task_id, len(rank)), t.task_id)):
        out.add_row(escape(ti.task_id), state(ti.state.value), str(ti.try_number), seconds(ti.duration),
                    escape(ti.reason or ""))
    return out


def say(text: str, *, err: bool = False) -> None:
    """One line of Rich markup that is never broken at the terminal width (greppable in a pipe)."""
    (err_console() if err else console()).print(text, soft_wrap=True)


def raw(text: str) -> None:
    """Text as it is (a log file): no markup, no wrapping."""
    import click

    click.echo(text, nl=False)
