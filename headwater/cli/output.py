"""Rich output shared by commands: consoles, state colours, tables of task instances."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
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
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(highlight=False)
    return _console


def err_console() -> Console:
    global _err
    if _err is None:
        from rich.console import Console

        _err = Console(stderr=True, highlight=False)
    return _err


def state(value: str) -> str:
    """A state as Rich markup in its colour."""
    return f"[{STATE_STYLE.get(value, 'white')}]{value}[/]"


def when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def task_table(tis: Iterable[TaskInstanceRecord], title: str | None = None) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("task", "state", "try", "duration", "reason"):
        table.add_column(col, overflow="fold")
    for ti in tis:
        table.add_row(ti.task_id, state(ti.state.value), str(ti.try_number), seconds(ti.duration), ti.reason or "")
    return table
