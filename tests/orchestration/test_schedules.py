"""Schedules and data intervals, Airflow's way: a run covers an interval and starts after it ends."""

from __future__ import annotations

import datetime as dt

import pytest

from headwater.errors import DagDefinitionError
from headwater.orchestration.schedules import DataInterval, normalize_schedule, timetable_for

U = dt.UTC


def d(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=U)


@pytest.mark.parametrize(
    ("given", "stored"),
    [(None, None), ("@once", "@once"), ("@daily", "0 0 * * *"), ("@hourly", "0 * * * *"),
     ("@weekly", "0 0 * * 0"), ("0 12 * * *", "0 12 * * *"), (dt.timedelta(hours=6), "every:21600")],
)
def test_normalize(given: object, stored: str | None) -> None:
    assert normalize_schedule(given) == stored  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["@sometimes", "61 * * * *", "* * *", dt.timedelta(0), 5])
def test_bad_schedules_say_what_to_write(bad: object) -> None:
    with pytest.raises(DagDefinitionError) as info:
        normalize_schedule(bad)  # type: ignore[arg-type]
    assert str(bad) in str(info.value) or "timedelta" in str(info.value) or "int" in str(info.value)


def test_daily_run_for_a_day_starts_after_it_ends() -> None:
    tt = timetable_for("0 0 * * *")
    first = tt.next_interval(None, start_date=d(2024, 1, 1), end_date=None, catchup=True, now=d(2024, 1, 1, 12))
    assert first == DataInterval(d(2024, 1, 1), d(2024, 1, 2))
    assert first.end > d(2024, 1, 1, 12)  # not due yet at noon of the 1st


def test_catchup_walks_every_interval_and_without_catchup_only_the_latest() -> None:
    tt = timetable_for("0 0 * * *")
    now = d(2024, 1, 31, 3)
    last, seen = None, []
    while True:
        nxt = tt.next_interval(last, start_date=d(2024, 1, 1), end_date=None, catchup=True, now=now)
        if nxt is None or nxt.end > now:
            break
        seen.append(nxt.start)
        last = nxt
    assert seen == [d(2024, 1, 1) + dt.timedelta(days=i) for i in range(30)]
    latest = tt.next_interval(None, start_date=d(2024, 1, 1), end_date=None, catchup=False, now=now)
    assert latest == DataInterval(d(2024, 1, 30), d(2024, 1, 31))


def test_cron_at_noon_without_catchup() -> None:
    tt = timetable_for("0 12 * * *")
    got = tt.next_interval(None, start_date=d(2021, 1, 1), end_date=None, catchup=False, now=d(2021, 3, 1, 13))
    assert got == DataInterval(d(2021, 2, 28, 12), d(2021, 3, 1, 12))


def test_timedelta_schedule_counts_from_start_date() -> None:
    tt = timetable_for("every:86400", d(2018, 1, 8, 6))
    got = tt.next_interval(None, start_date=d(2018, 1, 8, 6), end_date=None, catchup=True, now=d(2018, 2, 1))
    assert got == DataInterval(d(2018, 1, 8, 6), d(2018, 1, 9, 6))
    nxt = tt.next_interval(got, start_date=d(2018, 1, 8, 6), end_date=None, catchup=True, now=d(2018, 2, 1))
    assert nxt == DataInterval(d(2018, 1, 9, 6), d(2018, 1, 10, 6))


def test_end_date_stops_the_schedule() -> None:
    tt = timetable_for("0 0 * * *")
    last = DataInterval(d(2024, 1, 2), d(2024, 1, 3))
    assert tt.next_interval(last, start_date=d(2024, 1, 1), end_date=d(2024, 1, 2), catchup=True,
                            now=d(2025, 1, 1)) is None


def test_once_runs_once() -> None:
    tt = timetable_for("@once")
    first = tt.next_interval(None, start_date=d(2024, 5, 1), end_date=None, catchup=True, now=d(2024, 6, 1))
    assert first == DataInterval(d(2024, 5, 1), d(2024, 5, 1))
    assert tt.next_interval(first, start_date=d(2024, 5, 1), end_date=None, catchup=True, now=d(2024, 6, 1)) is None


def test_backfill_intervals_for_30_days() -> None:
    got = timetable_for("0 0 * * *").intervals_between(d(2024, 1, 1), d(2024, 1, 30))
    assert len(got) == 30 and got[0].start == d(2024, 1, 1) and got[-1].end == d(2024, 1, 31)


def test_manual_run_without_schedule_has_a_point_interval() -> None:
    tt = timetable_for(None)
    assert tt.interval_for(d(2024, 1, 1, 5)) == DataInterval(d(2024, 1, 1, 5), d(2024, 1, 1, 5))
    with pytest.raises(DagDefinitionError):
        tt.intervals_between(d(2024, 1, 1), d(2024, 1, 2))
