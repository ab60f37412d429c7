"""Schedules and data intervals.

A DAG's ``schedule`` is normalised into one string (see :class:`DagSpec`) and turned
into a :class:`Timetable` that answers one question: which data interval comes
next. Like Airflow, the run for an interval is created once the interval has ended:
the ``@daily`` run for 2024-01-01 covers [2024-01-01, 2024-01-02) and starts after
midnight on the 2nd. Cron expressions are evaluated in UTC with ``cronsim``
(small, maintained, imports in ~9 ms against ~32 ms for croniter).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from headwater.clock import UTC, ensure_utc
from headwater.errors import DagDefinitionError

PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
ONCE = "@once"
_EVERY = "every:"


@dataclass(frozen=True, slots=True)
class DataInterval:
    """The span of data a run processes; ``start`` is also the run's logical date."""

    start: dt.datetime
    end: dt.datetime


def normalize_schedule(value: str | dt.timedelta | None) -> str | None:
    """Turn a user's schedule into the canonical string stored in a :class:`DagSpec`.

    Accepts ``None``, ``"@once"``, presets (``"@daily"`` ...), five-field cron
    expressions and positive ``timedelta``s. Raises :class:`DagDefinitionError`.
    """
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
        if seconds <= 0:
            raise DagDefinitionError(
                f"schedule timedelta must be positive, got {value!r}", hint="use e.g. timedelta(days=1)"
            )
        return f"{_EVERY}{seconds:g}"
    if not isinstance(value, str):
        raise DagDefinitionError(
            f"schedule must be a cron string, a preset, a timedelta or None, got {type(value).__name__}",
            hint="use e.g. '@daily', '0 12 * * *' or timedelta(hours=6)",
        )
    text = value.strip()
    if text == ONCE:
        return ONCE
    if text.startswith(_EVERY):
        float(text[len(_EVERY) :])
        return text
    if text.startswith("@"):
        if text not in PRESETS:
            raise DagDefinitionError(
                f"unknown schedule preset {text!r}",
                hint=f"use one of {', '.join([ONCE, *PRESETS])} or a cron expression",
            )
        return PRESETS[text]
    _check_cron(text)
    return text


def _check_cron(expr: str) -> None:
    from cronsim import CronSim, CronSimError

    if len(expr.split()) != 5:
        raise DagDefinitionError(
            f"cron schedule {expr!r} must have 5 fields (minute hour day month weekday)",
            hint="for example '0 12 * * *' runs daily at 12:00 UTC",
        )
    try:
        CronSim(expr, dt.datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise DagDefinitionError(f"invalid cron schedule {expr!r}: {exc}") from exc


class Timetable(Protocol):
    """Answers which data interval a schedule runs next."""

    def next_interval(
        self,
        last: DataInterval | None,
        *,
        start_date: dt.datetime | None,
        end_date: dt.datetime | None,
        catchup: bool,
        now: dt.datetime,
    ) -> DataInterval | None:
        """The interval of the next scheduled run after ``last``, whether due yet or not.

        A run is due when ``interval.end <= now`` (``@once``: when ``start <= now``).
        ``None`` means the schedule creates no more runs.
        """
        ...

    def interval_for(self, logical_date: dt.datetime) -> DataInterval:
        """The interval of a run at ``logical_date`` (manual runs, tests, backfills)."""
        ...

    def intervals_between(self, start: dt.datetime, end: dt.datetime) -> list[DataInterval]:
        """Every scheduled interval whose logical date lies in [start, end] (backfill)."""
        ...


class NullTimetable:
    """``schedule=None``: runs only when triggered."""

    def next_interval(
        self,
        last: DataInterval | None,
        *,
        start_date: dt.datetime | None,
        end_date: dt.datetime | None = None,
        catchup: bool = True,
        now: dt.datetime | None = None,
    ) -> DataInterval | None:
        return None

    def interval_for(self, logical_date: dt.datetime) -> DataInterval:
        d = ensure_utc(logical_date)
        return DataInterval(d, d)

    def intervals_between(self, start: dt.datetime, end: dt.datetime) -> list[DataInterval]:
        raise DagDefinitionError(
            "a DAG with schedule=None has no intervals to backfill",
            hint="trigger runs with `headwater dags trigger`, or give the DAG a schedule",
        )


class OnceTimetable(NullTimetable):
    """``@once``: one run at the start date."""

    def next_interval(
        self,
        last: DataInterval | None,
        *,
        start_date: dt.datetime | None,
        end_date: dt.datetime | None = None,
        catchup: bool = True,
        now: dt.datetime | None = None,
    ) -> DataInterval | None:
        if last is not None or start_date is None:
            return None
        d = ensure_utc(start_date)
        return DataInterval(d, d)


class _PeriodicTimetable:
    """Shared logic of cron and fixed-delta schedules: intervals run tick to tick."""

    def _next_tick(self, after: dt.datetime) -> dt.datetime:  # strictly after
        raise NotImplementedError

    def _prev_tick(self, before: dt.datetime) -> dt.datetime:  # strictly before
        raise NotImplementedError

    def _align(self, when: dt.datetime) -> dt.datetime:
        """The first tick at or after ``when``."""
        return self._next_tick(when - dt.timedelta(microseconds=1))

    def next_interval(
        self,
        last: DataInterval | None,
        *,
        start_date: dt.datetime | None,
        end_date: dt.datetime | None,
        catchup: bool,
        now: dt.datetime,
    ) -> DataInterval | None:
        if start_date is None:
            return None
        earliest = self._align(ensure_utc(start_date))
        start = earliest if last is None else max(earliest, last.end)
        if not catchup:
            # Only the latest complete interval: the one ending at the last tick <= now.
            latest_end = self._prev_tick(ensure_utc(now) + dt.timedelta(microseconds=1))
            latest_start = self._prev_tick(latest_end)
            start = max(start, latest_start)
        if end_date is not None and start > ensure_utc(end_date):
            return None
        return DataInterval(start, self._next_tick(start))

    def interval_for(self, logical_date: dt.datetime) -> DataInterval:
        d = ensure_utc(logical_date)
        return DataInterval(d, self._next_tick(d))

    def intervals_between(self, start: dt.datetime, end: dt.datetime) -> list[DataInterval]:
        out: list[DataInterval] = []
        tick = self._align(ensure_utc(start))
        stop = ensure_utc(end)
        while tick <= stop:
            nxt = self._next_tick(tick)
            out.append(DataInterval(tick, nxt))
            tick = nxt
        return out


class CronTimetable(_PeriodicTimetable):
    """A five-field cron expression, evaluated in UTC."""

    def __init__(self, expr: str) -> None:
        self.expr = expr

    def _next_tick(self, after: dt.datetime) -> dt.datetime:
        from cronsim import CronSim

        # cronsim works at whole seconds; drop sub-second parts but stay strictly after.
        base = ensure_utc(after).replace(microsecond=0)
        return next(CronSim(self.expr, base))

    def _prev_tick(self, before: dt.datetime) -> dt.datetime:
        from cronsim import CronSim

        base = ensure_utc(before)
        if base.microsecond:
            base = base.replace(microsecond=0) + dt.timedelta(seconds=1)
        return next(CronSim(self.expr, base, reverse=True))


class DeltaTimetable(_PeriodicTimetable):
    """A fixed ``timedelta``, counted from the start date."""

    def __init__(self, seconds: float, anchor: dt.datetime | None) -> None:
        self.delta = dt.timedelta(seconds=seconds)
        self.anchor = ensure_utc(anchor) if anchor else dt.datetime(1970, 1, 1, tzinfo=UTC)

    def _next_tick(self, after: dt.datetime) -> dt.datetime:
        n = (ensure_utc(after) - self.anchor) // self.delta + 1
        return self.anchor + n * self.delta

    def _prev_tick(self, before: dt.datetime) -> dt.datetime:
        k = -((self.anchor - ensure_utc(before)) // self.delta)  # ceil((before - anchor) / delta)
        return self.anchor + (k - 1) * self.delta


def timetable_for(schedule: str | None, start_date: dt.datetime | None = None) -> Timetable:
    """The timetable of a normalised schedule string (see :func:`normalize_schedule`)."""
    if schedule is None:
        return NullTimetable()
    if schedule == ONCE:
        return OnceTimetable()
    if schedule.startswith(_EVERY):
        return DeltaTimetable(float(schedule[len(_EVERY) :]), start_date)
    return CronTimetable(schedule)
