"""One scheduler pass: insert the due ticks of each schedule, once fleet-wide.

Every worker runs passes. A pass locks the schedule's row, finds the ticks after its
high-water mark (``last_tick``) up to ``now``, applies the pause, catch-up and overlap
policies, inserts the chosen ticks with ids derived from the schedule and the tick's UTC
instant (``ON CONFLICT DO NOTHING``), and advances the mark in the same transaction. A worker
with a slow clock, or one that wakes after old runs were pruned, finds the mark at or ahead of
its ticks and inserts nothing.

What each pass decided is counted on the schedule's row (fired, collapsed, missed, skipped,
lateness), so "why didn't my job run?" is one query (``schedule_status.sql``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from loguru import logger

from pgsched.clock import utcnow
from pgsched.cron import CronSchedule
from pgsched.errors import InvalidSchedule
from pgsched.queues import wake_payload
from pgsched.serialization import encode_inputs

if TYPE_CHECKING:
    from pgsched.app import App

#: Ticks inserted per transaction by a ``catch_up="all"`` pass: one statement of this many
#: rows holds the schedule's row lock for milliseconds; the pass goes on in new transactions.
CATCH_UP_BATCH = 500
#: How many ticks a deploy looks through for the first tick the old and new expressions share.
_SHARED_TICK_SEARCH = 1_000
#: A schedule row created at ``t`` fires a tick due exactly at ``t``.
_JUST_BEFORE = timedelta(microseconds=1)


@dataclass
class PassResult:
    """What one pass did for one schedule."""

    fired: list[str] = field(default_factory=list)
    collapsed: int = 0
    missed: int = 0
    skipped: int = 0

    def add(self, other: PassResult) -> None:
        self.fired.extend(other.fired)
        self.collapsed += other.collapsed
        self.missed += other.missed
        self.skipped += other.skipped


def carried_mark(new: CronSchedule, row: dict[str, Any] | None, now: datetime) -> datetime:
    """Where a deploy that changes the expression (or zone) puts the high-water mark.

    The new expression starts at the deploy: its ticks from before it were never owed, so
    they are neither backfilled nor counted. But a tick both expressions have that is still
    pending (above the old mark, up to now: typically a worker inside the tick's jitter
    window as the deploy lands) was owed by the old schedule and is wanted by the new one,
    so the mark goes just before the first such tick and the next pass fires or counts it
    under the schedule's policies.
    """
    fallback = now - _JUST_BEFORE
    if row is None:
        return fallback
    try:
        old = CronSchedule(new.name, row["expression"], row["timezone"])
    except InvalidSchedule:
        return fallback  # a definition this release no longer accepts owes nothing
    mark = row["last_tick"] or row["created_at"] - _JUST_BEFORE
    tick = new.next_tick(mark)
    for _ in range(_SHARED_TICK_SEARCH):
        if tick > now:
            return fallback
        shared = old.next_tick(tick - _JUST_BEFORE)
        if shared == tick:
            return tick - _JUST_BEFORE
        tick = new.next_tick(shared - _JUST_BEFORE)
    return fallback


class Scheduler:
    """The schedule loop's state in one process: which tick it plans to wake for next."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._planned: dict[str, datetime] = {}
        self._registered = False

    def register(self, now: datetime) -> None:
        """Upsert the schedules this code defines. Fails with ``UnknownQueue`` before writing
        anything if a schedule names a queue the app does not define.

        Each schedule's row is locked while its stored definition is compared with this
        code's, so a changed expression moves the high-water mark (``carried_mark``) from a
        mark no pass can advance meanwhile."""
        for schedule in self.app.schedules.values():
            self.app.get_queue(schedule.queue)
        db = self.app.db
        with db.connection() as conn:
            for schedule in self.app.schedules.values():
                with conn.transaction():
                    row = conn.execute(db.sql("schedule_definition"),
                                       {"name": schedule.name}).fetchone()
                    conn.execute(
                        db.sql("schedule_upsert"),
                        {
                            "name": schedule.name,
                            "expression": schedule.expression,
                            "timezone": schedule.tz,
                            "queue": schedule.queue,
                            "catch_up": schedule.catch_up,
                            "overlap": schedule.overlap,
                            "next_tick": schedule.next_tick(now),
                            "changed_mark": carried_mark(schedule, row, now),
                            "now": now,
                        },
                    )
        self._registered = True

    def run_pass(self, now: datetime | None = None) -> dict[str, PassResult]:
        """Fire what is due at ``now`` (default: the clock) for each schedule that may be due.

        A schedule whose planned tick is still ahead of ``now`` is not even locked, so an idle
        fleet costs nothing between ticks.
        """
        now = now or utcnow()
        if not self._registered:
            self.register(now)
        results = {}
        for schedule in self.app.schedules.values():
            planned = self._planned.get(schedule.name)
            if planned is not None and planned > now:
                continue
            results[schedule.name] = self._tick(schedule, now, planned)
            self._planned[schedule.name] = schedule.next_tick(now)
        return results

    def next_wakeup(self, now: datetime) -> datetime | None:
        """The next planned tick plus a random jitter, so the fleet does not wake as a herd."""
        wakeups = []
        for schedule in self.app.schedules.values():
            tick = self._planned.get(schedule.name) or schedule.next_tick(now)
            self._planned[schedule.name] = tick
            wakeups.append(tick + timedelta(seconds=random.uniform(0, schedule.max_jitter(tick))))
        return min(wakeups, default=None)

    def _tick(self, schedule: CronSchedule, now: datetime, woke_for: datetime | None) -> PassResult:
        """Fire the ticks due at ``now``: one short transaction, or for ``catch_up="all"``
        one per ``CATCH_UP_BATCH`` ticks, each advancing the mark past what it inserted."""
        total = PassResult()
        latest = schedule.prev_tick(now)
        paused = False
        first = True
        while True:
            batch, paused, more = self._batch(schedule, now, latest, woke_for, first)
            total.add(batch)
            first = False
            if not more:
                break
        if total.fired or total.missed or total.skipped:
            logger.bind(component="cron").info(
                "schedule {}: fired {} missed {} skipped {}{}",
                schedule.name, len(total.fired), total.missed, total.skipped,
                " (paused)" if paused else "",
            )
        return total

    def _batch(
        self,
        schedule: CronSchedule,
        now: datetime,
        latest: datetime | None,
        woke_for: datetime | None,
        first: bool,
    ) -> tuple[PassResult, bool, bool]:
        """One transaction of a pass: lock the row, insert the next ticks, advance the mark.
        Returns what it did, whether the schedule is paused, and whether ticks remain."""
        result = PassResult()
        db = self.app.db
        with db.connection() as conn, conn.transaction():
            row = conn.execute(db.sql("schedule_lock"), {"name": schedule.name}).fetchone()
            if row is None:
                return result, False, False
            mark = row["last_tick"] or row["created_at"] - _JUST_BEFORE
            if latest is None or latest <= mark:
                if first and woke_for is not None and woke_for <= mark:
                    result.collapsed = 1
                self._advance(conn, schedule, row["last_tick"], now, result, None)
                return result, row["paused"], False
            fire, upto = self._choose(schedule, row, mark, latest, now, result, first)
            if fire:
                self._insert(conn, schedule, fire, now, result)
            lateness = (now - fire[-1]).total_seconds() if fire else None
            self._advance(conn, schedule, upto, now, result, lateness)
        return result, row["paused"], upto < latest

    @staticmethod
    def _choose(
        schedule: CronSchedule,
        row: dict[str, Any],
        mark: datetime,
        latest: datetime,
        now: datetime,
        result: PassResult,
        first: bool,
    ) -> tuple[list[datetime], datetime]:
        """Apply pause, catch-up and overlap policies to the ticks in (mark, latest]: the
        ticks to insert now, and how far the mark may advance after them. The overlap check
        is the pass's first transaction's: the runs its own batches insert are not an overlap.
        """
        if row["paused"]:
            result.skipped = schedule.count_between(mark, latest)
            return [], latest
        if schedule.catch_up == "all":
            horizon = max(mark, now - schedule.catch_up_window - _JUST_BEFORE)
            result.missed = schedule.count_between(mark, horizon) if horizon > mark else 0
            if schedule.overlap == "skip" and row["busy"] and first:
                result.skipped = schedule.count_between(horizon, latest)
                return [], latest
            fire = list(schedule.ticks_between(horizon, latest, CATCH_UP_BATCH))
            full = len(fire) == CATCH_UP_BATCH
            return fire, fire[-1] if full else latest
        due = schedule.count_between(mark, latest)
        if schedule.catch_up == "none":
            on_time = (now - latest).total_seconds() <= schedule.on_time_grace(latest)
            fire = [latest] if on_time else []
        else:
            fire = [latest]
        result.missed = due - len(fire)
        if schedule.overlap == "skip" and row["busy"] and fire:
            result.skipped = len(fire)
            return [], latest
        return fire, latest

    def _insert(
        self, conn: Any, schedule: CronSchedule, ticks: list[datetime], now: datetime,
        result: PassResult,
    ) -> None:
        """Insert the runs of ``ticks`` in one statement; a tick whose run exists collapses."""
        spec = self.app.registry.workflow_for(schedule.name)
        rows = conn.execute(
            self.app.db.sql("schedule_insert"),
            {
                "name": schedule.name,
                "queue": schedule.queue,
                "max_attempts": spec.max_attempts or self.app.settings.max_attempts,
                "ids": [schedule.run_id(tick) for tick in ticks],
                "inputs": [encode_inputs((), {"scheduled_at": schedule.local(tick)})
                           for tick in ticks],
                "ticks": ticks,
                "now": now,
                "channel": self.app.db.channel,
                "wake": wake_payload(schedule.queue, ticks[-1], now),
            },
        ).fetchall()
        result.fired.extend(row["id"] for row in rows)
        result.collapsed += len(ticks) - len(rows)

    def _advance(
        self,
        conn: Any,
        schedule: CronSchedule,
        last_tick: datetime | None,
        now: datetime,
        result: PassResult,
        lateness: float | None,
    ) -> None:
        """Count the pass on the row; the SQL keeps ``last_tick`` from ever moving back."""
        conn.execute(
            self.app.db.sql("schedule_advance"),
            {
                "name": schedule.name,
                "last_tick": last_tick,
                "next_tick": schedule.next_tick(now if last_tick is None else max(last_tick, now)),
                "fired": len(result.fired),
                "collapsed": result.collapsed,
                "missed": result.missed,
                "skipped": result.skipped,
                "lateness_s": lateness,
                "now": now,
            },
        )
