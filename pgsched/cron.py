"""Cron schedules: parsing, validation and tick arithmetic in a time zone.

Ticks are computed on local wall-clock time and then mapped to UTC instants:

* spring forward: a wall time inside the skipped hour runs at the same offset from the
  transition (02:30 Europe/Berlin on the spring-forward day runs at 03:30 CEST), once;
* fall back: a wall time that occurs twice runs at its first occurrence only, unless the
  expression runs every hour (hour field ``*``), in which case both occurrences are real,
  distinct ticks (an every-5-minutes schedule keeps ticking every 5 real minutes).

A tick is identified by its UTC instant, so ids stay unique and stable across DST.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

from pgsched.errors import InvalidSchedule

_FIELDS_5 = ("minute", "hour", "day of month", "month", "day of week")
_FIELDS_6 = ("second", *_FIELDS_5)
_MAX_DST_SHIFT = timedelta(hours=3)
CATCH_UP_POLICIES = ("latest", "all", "none")
OVERLAP_POLICIES = ("allow", "skip")


def _bad_field(expression: str) -> str:
    """Name the field croniter rejected, by checking each one alone."""
    parts = expression.split()
    if len(parts) not in (5, 6):
        return (
            f"expected 5 fields (minute hour day-of-month month day-of-week), 6 with a leading "
            f"seconds field, or a macro such as @hourly; got {len(parts)} field(s)"
        )
    names = _FIELDS_5 if len(parts) == 5 else _FIELDS_6
    for index, part in enumerate(parts):
        probe = ["*"] * len(parts)
        probe[index] = part
        try:
            croniter(" ".join(probe), datetime(2026, 1, 1), second_at_beginning=len(parts) == 6)
        except (CroniterError, ValueError, KeyError):
            return f"field {index + 1} ({names[index]}) {part!r} is not valid"
    return "the fields are valid alone but never match together"


def parse_zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            f"unknown time zone {tz!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None


@dataclass(frozen=True)
class CronSchedule:
    name: str
    expression: str
    tz: str = "UTC"
    queue: str = "default"
    jitter: float | None = None
    catch_up: str = "latest"
    overlap: str = "allow"
    catch_up_window: timedelta = timedelta(days=1)
    zone: ZoneInfo = field(init=False, repr=False, compare=False)
    with_seconds: bool = field(init=False, repr=False, compare=False)
    every_hour: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expression = " ".join(self.expression.split())
        object.__setattr__(self, "expression", expression)
        object.__setattr__(self, "zone", parse_zone(self.tz))
        parts = expression.split()
        object.__setattr__(self, "with_seconds", len(parts) == 6)
        try:
            croniter(expression, datetime(2026, 1, 1), second_at_beginning=self.with_seconds)
        except (CroniterError, ValueError, KeyError):
            raise InvalidSchedule(
                f"schedule {self.name!r}: invalid cron expression {self.expression!r}: "
                f"{_bad_field(expression)}"
            ) from None
        object.__setattr__(self, "every_hour", False)
        try:
            self.next_tick(datetime(2026, 1, 1, tzinfo=timezone.utc))
        except (CroniterError, ValueError):
            raise InvalidSchedule(
                f"schedule {self.name!r}: cron expression {self.expression!r} never matches a date"
            ) from None
        hour_field = parts[2 if self.with_seconds else 1] if len(parts) >= 5 else ""
        object.__setattr__(self, "every_hour", hour_field == "*")
        if self.catch_up not in CATCH_UP_POLICIES:
            raise InvalidSchedule(f"catch_up must be one of {CATCH_UP_POLICIES}, got {self.catch_up!r}")
        if self.overlap not in OVERLAP_POLICIES:
            raise InvalidSchedule(f"overlap must be one of {OVERLAP_POLICIES}, got {self.overlap!r}")
        if self.jitter is not None and self.jitter < 0:
            raise InvalidSchedule(f"jitter must be >= 0 seconds, got {self.jitter}")

    def _instants(self, wall: datetime) -> list[datetime]:
        """The UTC instants of one local wall time (none, one, or two around DST)."""
        first = wall.replace(tzinfo=self.zone, fold=0)
        second = wall.replace(tzinfo=self.zone, fold=1)
        instants = [first.astimezone(timezone.utc)]
        if first.utcoffset() != second.utcoffset():
            exists = first.astimezone(timezone.utc).astimezone(self.zone).replace(tzinfo=None) == wall
            if exists and self.every_hour:
                instants.append(second.astimezone(timezone.utc))
        return instants

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (an aware instant), in UTC."""
        after = after.astimezone(timezone.utc)
        wall_after = after.astimezone(self.zone).replace(tzinfo=None)
        walls = croniter(
            self.expression, wall_after - _MAX_DST_SHIFT, ret_type=datetime,
            second_at_beginning=self.with_seconds,
        )
        best: datetime | None = None
        while True:
            wall = walls.get_next(datetime)
            if best is not None and wall > best.astimezone(self.zone).replace(tzinfo=None) + _MAX_DST_SHIFT:
                return best
            for instant in self._instants(wall):
                if instant > after and (best is None or instant < best):
                    best = instant

    def ticks_between(self, after: datetime, until: datetime, limit: int = 100_000) -> Iterator[datetime]:
        """Ticks in ``(after, until]``, oldest first."""
        tick = self.next_tick(after)
        count = 0
        while tick <= until and count < limit:
            yield tick
            count += 1
            tick = self.next_tick(tick)

    def interval(self, around: datetime) -> timedelta:
        first = self.next_tick(around)
        return self.next_tick(first) - first

    def max_jitter(self, around: datetime) -> float:
        """Configured jitter, or 10% of the interval capped at 10 s: short schedules get little."""
        if self.jitter is not None:
            return self.jitter
        return min(10.0, self.interval(around).total_seconds() * 0.1)

    def run_id(self, tick: datetime) -> str:
        return f"cron:{self.name}:{tick.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}"

    def local(self, tick: datetime) -> datetime:
        return tick.astimezone(self.zone)
