"""Cron schedules: parsing, validation and tick arithmetic in a time zone.

Ticks are matched on local wall-clock time and then mapped to UTC instants. Around DST:

* spring forward: a wall time inside the skipped hour runs shifted by the length of the gap,
  once (02:30 Europe/Berlin on the spring-forward day runs at 03:30 CEST; 02:30 New York runs
  at 03:30 EDT). It is not skipped, so a daily job never silently misses a day;
* fall back: a wall time that occurs twice runs at its first occurrence only, unless the
  hour field is a wildcard (``*``, ``*/2``, ``@hourly``), in which case both occurrences are
  real, distinct ticks (an every-5-minutes schedule keeps ticking every 5 real minutes).
  This is the rule of Vixie cron.

A tick is identified by its UTC instant, so ids stay unique and stable across DST.

How ticks are found: the zone's timeline is cut into *segments* of constant UTC offset. Inside
a segment a wall time maps to an instant by subtracting one offset, so one ``croniter`` call
finds the next (or previous) tick there; only the segments next to a transition need special
wall ranges (the gap walls of a spring forward belong to the segment before it, at its
offset; the repeated walls of a fall back are dropped from the segment after it unless the
hour is a wildcard). Cost is a few croniter calls per tick whatever the schedule's frequency.
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
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_SECOND = timedelta(seconds=1)
_PROBE_STEP = timedelta(days=7)
_PROBE_HORIZON = timedelta(days=400)
#: Largest UTC offset change of any zone; bounds how far a gap wall can be shifted.
_MAX_DST_SHIFT = timedelta(hours=3)
#: Ticks counted exactly per call of ``count_between``; beyond, the count is extrapolated.
COUNT_EXACT_LIMIT = 10_000
#: Never wait more than this fraction of the interval before firing a tick.
_JITTER_FRACTION = 0.1
_JITTER_CAP_S = 10.0
CATCH_UP_POLICIES = ("latest", "all", "none")
OVERLAP_POLICIES = ("allow", "skip")


def _bad_field(expression: str) -> str:
    """Name the field croniter rejected, by checking each one alone."""
    parts = expression.split()
    if len(parts) not in (5, 6):
        return (
            f"expected 5 fields (minute hour day-of-month month day-of-week), 6 with a leading "
            f"seconds field, or a macro such as {', '.join(sorted(_MACROS))}; "
            f"got {len(parts)} field(s)"
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


def parse_zone(tz: str, schedule: str | None = None) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        owner = f"schedule {schedule!r}: " if schedule else ""
        raise InvalidSchedule(
            f"{owner}unknown time zone tz={tz!r}; use an IANA name such as 'UTC', "
            "'Europe/Berlin' or 'America/New_York'"
        ) from None


def _floor_second(value: datetime) -> datetime:
    return value.replace(microsecond=0)


@dataclass(frozen=True)
class _Segment:
    """A stretch of the zone's timeline with one UTC offset, and the wall times it owns.

    ``start``/``end`` are the transitions around it (``None``: none within the probe
    horizon). Walls in ``[wall_lo, wall_hi)`` map to ``wall - offset``.
    """

    start: datetime | None
    end: datetime | None
    offset: timedelta
    wall_lo: datetime | None
    wall_hi: datetime | None

    @property
    def last_instant(self) -> datetime | None:
        """The latest instant a wall of this segment maps to (past ``end`` for a gap)."""
        if self.wall_hi is None:
            return None
        return self.wall_hi.replace(tzinfo=timezone.utc) - _SECOND - self.offset


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
        object.__setattr__(self, "zone", parse_zone(self.tz, self.name))
        parts = _MACROS.get(expression.lower(), expression).split()
        object.__setattr__(self, "with_seconds", len(parts) == 6)
        hour_field = parts[2 if self.with_seconds else 1] if len(parts) in (5, 6) else ""
        object.__setattr__(self, "every_hour", hour_field.startswith("*"))
        try:
            if len(parts) not in (5, 6):  # croniter also takes a 7th (year) field; we don't
                raise ValueError(expression)
            croniter(expression, datetime(2026, 1, 1), second_at_beginning=self.with_seconds)
        except (CroniterError, ValueError, KeyError):
            raise InvalidSchedule(
                f"schedule {self.name!r}: invalid cron expression {self.expression!r}: "
                f"{_bad_field(expression)}"
            ) from None
        try:
            self.next_tick(datetime(2026, 1, 1, tzinfo=timezone.utc))
        except (CroniterError, ValueError):
            raise InvalidSchedule(
                f"schedule {self.name!r}: cron expression {self.expression!r} never matches a "
                f"date: day-of-month {parts[-3]!r} never occurs in month {parts[-2]!r} (as "
                "with day 30 or 31 of February); fix the day-of-month or month field"
            ) from None
        if self.catch_up not in CATCH_UP_POLICIES:
            raise InvalidSchedule(
                f"schedule {self.name!r}: catch_up must be one of {CATCH_UP_POLICIES}, "
                f"got {self.catch_up!r}"
            )
        if self.overlap not in OVERLAP_POLICIES:
            raise InvalidSchedule(
                f"schedule {self.name!r}: overlap must be one of {OVERLAP_POLICIES}, "
                f"got {self.overlap!r}"
            )
        if self.jitter is not None and self.jitter < 0:
            raise InvalidSchedule(
                f"schedule {self.name!r}: jitter must be >= 0 seconds, got {self.jitter}"
            )

    # -- the zone's timeline ---------------------------------------------------------------

    def _offset(self, instant: datetime) -> timedelta:
        """The zone's UTC offset at ``instant``, from wall digits rather than ``utcoffset()``:
        under freezegun ``astimezone`` returns a FakeDatetime that has lost its ``fold``, so
        ``utcoffset()`` would be wrong for the second pass through a repeated hour."""
        utc = instant.astimezone(timezone.utc)
        return utc.astimezone(self.zone).replace(tzinfo=None) - utc.replace(tzinfo=None)

    def _bisect(self, lo: datetime, hi: datetime) -> datetime:
        """The first whole second in ``(lo, hi]`` whose offset differs from ``lo``'s."""
        base = self._offset(lo)
        lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
        while hi_s - lo_s > 1:
            mid = (lo_s + hi_s) // 2
            if self._offset(datetime.fromtimestamp(mid, timezone.utc)) == base:
                lo_s = mid
            else:
                hi_s = mid
        return datetime.fromtimestamp(hi_s, timezone.utc)

    def _transition_after(self, instant: datetime) -> datetime | None:
        base = self._offset(instant)
        lo = instant
        while lo - instant < _PROBE_HORIZON:
            hi = lo + _PROBE_STEP
            if self._offset(hi) != base:
                return self._bisect(lo, hi)
            lo = hi
        return None

    def _transition_at_or_before(self, instant: datetime) -> datetime | None:
        base = self._offset(instant)
        hi = instant
        while instant - hi < _PROBE_HORIZON:
            lo = hi - _PROBE_STEP
            if self._offset(lo) != base:
                return self._bisect(lo, hi)
            hi = lo
        return None

    def _segment(self, instant: datetime) -> _Segment:
        offset = self._offset(instant)
        start = self._transition_at_or_before(instant)
        end = self._transition_after(instant)
        wall_lo = wall_hi = None
        if start is not None:
            before = self._offset(start - _SECOND)
            repeated = before > offset and not self.every_hour
            wall_lo = (start + (before if repeated else offset)).replace(tzinfo=None)
        if end is not None:
            wall_hi = (end + max(offset, self._offset(end))).replace(tzinfo=None)
        return _Segment(start, end, offset, wall_lo, wall_hi)

    def _walls(self, start: datetime) -> croniter:
        return croniter(
            self.expression, start, ret_type=datetime, second_at_beginning=self.with_seconds
        )

    def _first_in(self, segment: _Segment, after: datetime) -> datetime | None:
        """The segment's first tick strictly after ``after``."""
        start = _floor_second((after + segment.offset).replace(tzinfo=None))
        if segment.wall_lo is not None:
            start = max(start, segment.wall_lo - _SECOND)
        wall = self._walls(start).get_next(datetime)
        if segment.wall_hi is not None and wall >= segment.wall_hi:
            return None
        return wall.replace(tzinfo=timezone.utc) - segment.offset

    def _last_in(self, segment: _Segment, at: datetime) -> datetime | None:
        """The segment's last tick at or before ``at``."""
        top = _floor_second((at + segment.offset).replace(tzinfo=None))
        if segment.wall_hi is not None:
            top = min(top, segment.wall_hi - _SECOND)
        wall = self._walls(top + _SECOND).get_prev(datetime)
        if segment.wall_lo is not None and wall < segment.wall_lo:
            return None
        return wall.replace(tzinfo=timezone.utc) - segment.offset

    # -- ticks -----------------------------------------------------------------------------

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (an aware instant), in UTC."""
        after = after.astimezone(timezone.utc)
        segment = self._segment(after)
        best: datetime | None = None
        if segment.start is not None and after - segment.start < _MAX_DST_SHIFT:
            previous = self._segment(segment.start - _SECOND)
            best = self._first_in(previous, after)
        while True:
            candidate = self._first_in(segment, after)
            if candidate is not None and (best is None or candidate < best):
                best = candidate
            if segment.end is None or (best is not None and best <= segment.end):
                assert best is not None
                return best
            segment = self._segment(segment.end)

    def prev_tick(self, at: datetime) -> datetime | None:
        """The last tick at or before ``at``, or ``None`` if there is none in the horizon."""
        at = at.astimezone(timezone.utc)
        segment = self._segment(at)
        best: datetime | None = None
        while True:
            candidate = self._last_in(segment, at)
            if candidate is not None and (best is None or candidate > best):
                best = candidate
            if segment.start is None:
                return best
            previous = self._segment(segment.start - _SECOND)
            reach = previous.last_instant
            if best is not None and reach is not None and reach < best:
                return best
            if at - segment.start > _PROBE_HORIZON:
                return best
            segment = previous

    def ticks_between(
        self, after: datetime, until: datetime, limit: int = 100_000
    ) -> Iterator[datetime]:
        """Ticks in ``(after, until]``, oldest first.

        Inside one segment (and away from a spring-forward gap) a single croniter walks the
        walls; crossing a transition falls back to ``next_tick``.
        """
        count = 0
        tick = self.next_tick(after)
        while tick <= until and count < limit:
            yield tick
            count += 1
            segment = self._segment(tick)
            near_gap = segment.start is not None and tick - segment.start < _MAX_DST_SHIFT
            if near_gap or segment.end is None:
                boundary = None if near_gap else until
            else:
                boundary = min(until, segment.end - _SECOND)
            if boundary is not None and tick < boundary:
                walls = self._walls((tick + segment.offset).replace(tzinfo=None))
                while count < limit:
                    candidate = walls.get_next(datetime).replace(tzinfo=timezone.utc)
                    candidate -= segment.offset
                    if candidate > boundary:
                        break
                    tick = candidate
                    yield tick
                    count += 1
            tick = self.next_tick(tick)

    def count_between(self, after: datetime, until: datetime) -> int:
        """How many ticks lie in ``(after, until]``: exact up to ``COUNT_EXACT_LIMIT``, then
        extrapolated from the spacing of the counted ones (a metric, not a schedule)."""
        first = last = None
        count = 0
        for tick in self.ticks_between(after, until, COUNT_EXACT_LIMIT):
            first = first or tick
            last = tick
            count += 1
        if count < COUNT_EXACT_LIMIT or last is None or first is None or last == first:
            return count
        spacing = (last - first) / (count - 1)
        return count + int((until - last) / spacing)

    def interval(self, around: datetime) -> timedelta:
        first = self.next_tick(around)
        return self.next_tick(first) - first

    def max_jitter(self, around: datetime) -> float:
        """The most a worker waits past a tick before firing it, so the fleet does not wake as
        one herd: the configured jitter, else 10% of the interval capped at 10 s. Either way
        at most half the interval, so jitter alone can never make a tick late enough to miss
        the next one."""
        half = self.interval(around).total_seconds() / 2
        if self.jitter is not None:
            return min(self.jitter, half)
        return min(_JITTER_CAP_S, half * 2 * _JITTER_FRACTION)

    def on_time_grace(self, around: datetime) -> float:
        """How late a pass may see a tick and still call it on time (for ``catch_up="none"``):
        the jitter plus a little scheduling slack, never more than half the interval more."""
        half = self.interval(around).total_seconds() / 2
        return self.max_jitter(around) + min(30.0, half)

    def run_id(self, tick: datetime) -> str:
        """The run id of a tick: stable, unique per schedule and UTC instant, sortable."""
        utc = tick.astimezone(timezone.utc)
        return f"cron:{self.name}:{utc.strftime('%Y-%m-%dT%H:%M:%S')}Z"

    def local(self, tick: datetime) -> datetime:
        """The tick in the schedule's zone, with the right ``fold`` even under freezegun:
        0, except for the second pass through a repeated (fall-back) hour."""
        offset = self._offset(tick)
        wall = (tick.astimezone(timezone.utc) + offset).replace(tzinfo=None)
        first = wall.replace(tzinfo=self.zone)
        return first if first.utcoffset() == offset else wall.replace(tzinfo=self.zone, fold=1)
