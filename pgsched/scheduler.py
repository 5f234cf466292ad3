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
from pgsched.queues import wake_payload
from pgsched.serialization import encode_inputs

if TYPE_CHECKING:
    from pgsched.app import App

#: At most this many missed ticks are inserted by one ``catch_up="all"`` pass.
MAX_CATCH_UP = 1000
#: A schedule row created at ``t`` fires a tick due exactly at ``t``.
_JUST_BEFORE = timedelta(microseconds=1)


@dataclass
class PassResult:
    """What one pass did for one schedule."""

    fired: list[str] = field(default_factory=list)
    collapsed: int = 0
    missed: int = 0
    skipped: int = 0


class Scheduler:
    """The schedule loop's state in one process: which tick it plans to wake for next."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._planned: dict[str, datetime] = {}
        self._registered = False

    def register(self, now: datetime) -> None:
        """Upsert the schedules this code defines. Fails with ``UnknownQueue`` before writing
        anything if a schedule names a queue the app does not define."""
        for schedule in self.app.schedules.values():
            self.app.get_queue(schedule.queue)
        with self.app.db.connection() as conn:
            for schedule in self.app.schedules.values():
                conn.execute(
                    self.app.db.sql("schedule_upsert"),
                    {
                        "name": schedule.name,
                        "expression": schedule.expression,
                        "timezone": schedule.tz,
                        "queue": schedule.queue,
                        "catch_up": schedule.catch_up,
                        "overlap": schedule.overlap,
                        "next_tick": schedule.next_tick(now),
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
        result = PassResult()
        db = self.app.db
        with db.connection() as conn, conn.transaction():
            row = conn.execute(db.sql("schedule_lock"), {"name": schedule.name}).fetchone()
            if row is None:
                return result
            mark = row["last_tick"] or row["created_at"] - _JUST_BEFORE
            latest = schedule.prev_tick(now)
            if latest is None or latest <= mark:
                if woke_for is not None and woke_for <= mark:
                    result.collapsed = 1
                self._advance(conn, schedule, row["last_tick"], now, result, None)
                return result
            due = schedule.count_between(mark, latest)
            fire = self._choose(schedule, row, mark, latest, due, now, result)
            for tick in fire:
                self._insert(conn, schedule, tick, now, result)
            lateness = (now - fire[-1]).total_seconds() if fire else None
            self._advance(conn, schedule, latest, now, result, lateness)
        if result.fired or result.missed or result.skipped:
            logger.bind(component="cron").info(
                "schedule {}: fired {} missed {} skipped {}{}",
                schedule.name, len(result.fired), result.missed, result.skipped,
                " (paused)" if row["paused"] else "",
            )
        return result

    @staticmethod
    def _choose(
        schedule: CronSchedule,
        row: dict[str, Any],
        mark: datetime,
        latest: datetime,
        due: int,
        now: datetime,
        result: PassResult,
    ) -> list[datetime]:
        """Apply pause, catch-up and overlap policies to the ``due`` ticks in (mark, latest]."""
        if row["paused"]:
            result.skipped = due
            return []
        if schedule.catch_up == "all":
            horizon = max(mark, now - schedule.catch_up_window - _JUST_BEFORE)
            fire = schedule.latest_ticks(horizon, latest, MAX_CATCH_UP)
        elif schedule.catch_up == "none":
            on_time = (now - latest).total_seconds() <= schedule.on_time_grace(latest)
            fire = [latest] if on_time else []
        else:
            fire = [latest]
        result.missed = due - len(fire)
        if schedule.overlap == "skip" and row["busy"] and fire:
            result.skipped = len(fire)
            return []
        return fire

    def _insert(
        self, conn: Any, schedule: CronSchedule, tick: datetime, now: datetime, result: PassResult
    ) -> None:
        spec = self.app.registry.workflow_for(schedule.name)
        run_id = schedule.run_id(tick)
        inserted = conn.execute(
            self.app.db.sql("enqueue"),
            {
                "id": run_id,
                "name": schedule.name,
                "queue": schedule.queue,
                "priority": 0,
                "dedup_key": None,
                "inputs": encode_inputs((), {"scheduled_at": schedule.local(tick)}),
                "max_attempts": spec.max_attempts or self.app.settings.max_attempts,
                "timeout_s": None,
                "not_before": tick,
                "scheduled_at": tick,
                "schedule_name": schedule.name,
                "parent_id": None,
                "forked_from": None,
                "now": now,
                "channel": self.app.db.channel,
                "wake": wake_payload(schedule.queue, tick, now),
            },
        ).fetchone()
        if inserted is None:
            result.collapsed += 1
        else:
            result.fired.append(run_id)

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
