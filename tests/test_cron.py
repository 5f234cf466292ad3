"""Tick arithmetic, without a database.

DST behaviour these tests pin down (and the README states):

* spring forward: a wall time inside the skipped hour is shifted by the gap and runs once
  (02:30 Europe/Berlin on 2026-03-29 runs at 03:30 CEST = 01:30 UTC; 02:30 New York on
  2026-03-08 runs at 03:30 EDT = 07:30 UTC);
* fall back: a repeated wall time runs once, at its first occurrence (01:30 New York on
  2026-11-01 runs at 01:30 EDT = 05:30 UTC, not again at 01:30 EST); schedules whose hour
  field is a wildcard keep their real-time rhythm and run in both occurrences.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from pgsched.clock import utcnow
from pgsched.cron import CronSchedule
from pgsched.errors import InvalidSchedule

UTC = timezone.utc


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ticks(schedule: CronSchedule, start: datetime, span: timedelta) -> list[datetime]:
    return list(schedule.ticks_between(start, start + span))


def test_every_5_minutes_over_2_hours_is_24_ticks() -> None:
    schedule = CronSchedule("sweep", "*/5 * * * *", tz="Europe/Berlin")
    start = utc(2026, 6, 1, 10)
    found = ticks(schedule, start - timedelta(microseconds=1), timedelta(hours=2))
    window = [t for t in found if t < start + timedelta(hours=2)]
    assert window == [start + timedelta(minutes=5 * i) for i in range(24)]


def test_every_5_minutes_keeps_real_rhythm_across_both_dst_changes() -> None:
    schedule = CronSchedule("sweep", "*/5 * * * *", tz="Europe/Berlin")
    for day in (utc(2026, 3, 29), utc(2026, 10, 25)):
        found = ticks(schedule, day, timedelta(hours=4))
        assert len(found) == 48
        assert {b - a for a, b in zip(found, found[1:], strict=False)} == {timedelta(minutes=5)}


def test_seconds_field() -> None:
    every_10s = CronSchedule("fast", "*/10 * * * * *")
    assert ticks(every_10s, utc(2026, 1, 1), timedelta(minutes=1)) == [
        utc(2026, 1, 1, 0, 0, s) for s in (10, 20, 30, 40, 50)
    ] + [utc(2026, 1, 1, 0, 1)]
    every_second = CronSchedule("tick", "* * * * * *", tz="America/New_York")
    found = ticks(every_second, utc(2026, 3, 8, 6, 59, 30), timedelta(minutes=1))
    assert found == [utc(2026, 3, 8, 6, 59, 31) + timedelta(seconds=i) for i in range(60)]


def test_next_and_prev_are_strict_and_inclusive() -> None:
    schedule = CronSchedule("hourly", "@hourly")
    assert schedule.next_tick(utc(2026, 1, 1, 10)) == utc(2026, 1, 1, 11)
    assert schedule.next_tick(utc(2026, 1, 1, 10, 0, 0, 1)) == utc(2026, 1, 1, 11)
    assert schedule.prev_tick(utc(2026, 1, 1, 10)) == utc(2026, 1, 1, 10)
    assert schedule.prev_tick(utc(2026, 1, 1, 9, 59, 59)) == utc(2026, 1, 1, 9)


@pytest.mark.parametrize(
    ("zone", "day", "utc_tick", "local_text"),
    [
        ("Europe/Berlin", utc(2026, 3, 29), utc(2026, 3, 29, 1, 30), "03:30:00+02:00"),
        ("America/New_York", utc(2026, 3, 8, 5), utc(2026, 3, 8, 7, 30), "03:30:00-04:00"),
    ],
)
def test_spring_forward_shifts_a_skipped_time_and_runs_it_once(
    zone: str, day: datetime, utc_tick: datetime, local_text: str
) -> None:
    schedule = CronSchedule("nightly", "30 2 * * *", tz=zone)
    found = ticks(schedule, day - timedelta(days=1), timedelta(days=3))
    on_the_day = [t for t in found if schedule.local(t).date() == schedule.local(utc_tick).date()]
    assert on_the_day == [utc_tick]
    assert schedule.local(utc_tick).isoformat().endswith(local_text)
    assert len(found) == 3 and len({schedule.run_id(t) for t in found}) == 3


@pytest.mark.parametrize(
    ("zone", "expression", "first_occurrence"),
    [
        ("Europe/Berlin", "30 2 * * *", utc(2026, 10, 25, 0, 30)),  # 02:30 CEST, not CET
        ("America/New_York", "30 1 * * *", utc(2026, 11, 1, 5, 30)),  # 01:30 EDT, not EST
    ],
)
def test_fall_back_runs_a_repeated_time_once_at_its_first_occurrence(
    zone: str, expression: str, first_occurrence: datetime
) -> None:
    schedule = CronSchedule("nightly", expression, tz=zone)
    found = ticks(schedule, first_occurrence - timedelta(hours=12), timedelta(hours=24))
    assert found == [first_occurrence]
    assert schedule.local(found[0]).fold == 0


def test_dst_math_is_the_same_under_freezegun() -> None:
    """freezegun's datetimes drop ``fold`` in ``astimezone``; tick math must not care."""
    schedule = CronSchedule("half-hourly", "30 * * * *", tz="America/New_York")
    start = utc(2026, 11, 1, 4)
    expected = ticks(schedule, start, timedelta(hours=4))
    expected_local = [schedule.local(t).isoformat() for t in expected]
    with freeze_time("2026-11-01 06:45:00"):
        assert ticks(schedule, start, timedelta(hours=4)) == expected
        assert [schedule.local(t).isoformat() for t in expected] == expected_local
        assert schedule.prev_tick(utcnow()) == utc(2026, 11, 1, 6, 30)
    assert expected_local[1:3] == ["2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00"]


def test_fall_back_with_wildcard_hour_runs_both_occurrences() -> None:
    schedule = CronSchedule("half-hourly", "30 * * * *", tz="Europe/Berlin")
    found = ticks(schedule, utc(2026, 10, 24, 23), timedelta(hours=4))
    local = [schedule.local(t).strftime("%H:%M%z") for t in found]
    assert local == ["01:30+0200", "02:30+0200", "02:30+0100", "03:30+0100"]


def test_local_tick_has_fold_0_except_in_the_repeated_hour() -> None:
    """``fold=1`` means "the second occurrence of this wall time": only the repeated hour of
    a fall back has one. Under freezegun too, where ``astimezone`` loses ``fold``."""
    schedule = CronSchedule("hourly", "30 * * * *", tz="Europe/Berlin")
    for frozen in (False, True):
        with freeze_time("2026-10-24 12:00", tz_offset=0) if frozen else _nothing():
            plain = schedule.local(utc(2026, 7, 1, 10, 30))
            first = schedule.local(utc(2026, 10, 25, 0, 30))  # 02:30 CEST
            second = schedule.local(utc(2026, 10, 25, 1, 30))  # 02:30 CET, the repeat
        assert (plain.hour, plain.fold, plain.utcoffset()) == (12, 0, timedelta(hours=2))
        assert (first.hour, first.fold, first.utcoffset()) == (2, 0, timedelta(hours=2))
        assert (second.hour, second.fold, second.utcoffset()) == (2, 1, timedelta(hours=1))


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def test_ticks_across_a_year_of_transitions_are_ordered_and_unique() -> None:
    schedule = CronSchedule("quarter", "*/15 * * * *", tz="America/New_York")
    found = ticks(schedule, utc(2026, 1, 1), timedelta(days=366))
    assert found == sorted(set(found))
    assert len({schedule.run_id(t) for t in found}) == len(found)
    assert len(found) == 366 * 96
    assert {b - a for a, b in zip(found, found[1:], strict=False)} == {timedelta(minutes=15)}


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("61 * * * *", "field 1 (minute) '61'"),
        ("0 25 * * *", "field 2 (hour) '25'"),
        ("0 0 32 * *", "field 3 (day of month) '32'"),
        ("*/5 * * 13 *", "field 4 (month) '13'"),
        ("0 0 * * funday", "field 5 (day of week) 'funday'"),
        ("75 * * * * *", "field 1 (second) '75'"),
        ("* * * *", "got 4 field(s)"),
        ("@fortnightly", "got 1 field(s)"),
        ("0 0 30 2 *", "never matches a date"),
    ],
)
def test_invalid_expression_names_the_bad_field(expression: str, fragment: str) -> None:
    with pytest.raises(InvalidSchedule) as info:
        CronSchedule("report", expression)
    assert fragment in str(info.value)
    assert "'report'" in str(info.value)


def test_invalid_zone_names_the_zone() -> None:
    with pytest.raises(InvalidSchedule, match=r"tz='Mars/Olympus'.*IANA"):
        CronSchedule("report", "0 * * * *", tz="Mars/Olympus")


def test_invalid_policies_and_jitter() -> None:
    with pytest.raises(InvalidSchedule, match="catch_up"):
        CronSchedule("x", "* * * * *", catch_up="some")
    with pytest.raises(InvalidSchedule, match="overlap"):
        CronSchedule("x", "* * * * *", overlap="queue")
    with pytest.raises(InvalidSchedule, match="jitter"):
        CronSchedule("x", "* * * * *", jitter=-1)


def test_jitter_is_bounded_configurable_and_smaller_for_short_intervals() -> None:
    at = utc(2026, 1, 1)
    assert CronSchedule("s", "* * * * * *").max_jitter(at) == pytest.approx(0.1)
    assert CronSchedule("m", "* * * * *").max_jitter(at) == pytest.approx(6.0)
    assert CronSchedule("h", "@hourly").max_jitter(at) == pytest.approx(10.0)
    assert CronSchedule("h", "@hourly", jitter=42).max_jitter(at) == 42
    # a configured jitter never exceeds half the interval
    assert CronSchedule("s", "* * * * * *", jitter=30).max_jitter(at) == pytest.approx(0.5)
