"""One scheduler pass: insert the due ticks of each schedule, once fleet-wide.

Every worker runs passes. A pass locks the schedule's row, computes the ticks after its
high-water mark (``last_tick``) up to ``now``, applies the catch-up, overlap and pause
policies, inserts the chosen ticks with ids derived from the schedule and the tick's UTC
instant (``ON CONFLICT DO NOTHING``), and advances the mark in the same transaction. A worker
with a slow clock or one that wakes after old runs were pruned finds the mark ahead of its
ticks and inserts nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from loguru import logger

from pgsched.clock import utcnow
from pgsched.cron import CronSchedule
from pgsched.serialization import encode_inputs

if TYPE_CHECKING:
    from pgsched.app import App

_MAX_CATCH_UP = 1000


@dataclass
class PassResult:
    """What one pass did for one schedule."""

    fired: list[str] = field(default_factory=list)
    collapsed: int = 0
    missed: int = 0
    skipped: int = 0


class Scheduler:
    def __init__(self, app: App) -> None:
        self.app = app
        self._planned: dict[str, datetime] = {}
        self._registered = False

    def register(self, now: datetime) -> None:
        """Upsert the schedules this code defines; check that their queues exist."""
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
                        "now": now,
                    },
                )
        self._registered = True

    def run_pass(self, now: datetime | None = None) -> dict[str, PassResult]:
        """Fire what is due at ``now`` (default: the clock) for each schedule that may be due."""
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
            mark = row["last_tick"] or row["created_at"]
            due = list(schedule.ticks_between(mark, now))
            if not due:
                if woke_for is not None and woke_for <= mark:
                    result.collapsed = 1
                    self._advance(conn, schedule, mark, now, result, None)
                return result
            fire = self._choose(schedule, row, due, now, result)
            spec = self.app.registry.workflow_for(schedule.name)
            for tick in fire:
                inserted = conn.execute(
                    db.sql("enqueue"),
                    {
                        "id": schedule.run_id(tick),
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
                        "channel": self.app.channel,
                    },
                ).fetchone()
                if inserted is None:
                    result.collapsed += 1
                else:
                    result.fired.append(schedule.run_id(tick))
            lateness = (now - fire[-1]).total_seconds() if fire else None
            self._advance(conn, schedule, due[-1], now, result, lateness)
        if result.fired or result.missed or result.skipped:
            logger.bind(component="cron").info(
                "schedule {}: fired {} missed {} skipped {}",
                schedule.name, len(result.fired), result.missed, result.skipped,
            )
        return result

    @staticmethod
    def _choose(
        schedule: CronSchedule, row: dict, due: list[datetime], now: datetime, result: PassResult
    ) -> list[datetime]:
        """Apply pause, overlap and catch-up policies to the due ticks."""
        if row["paused"]:
            result.skipped = len(due)
            return []
        if schedule.catch_up == "all":
            horizon = now - schedule.catch_up_window
            fire = [t for t in due if t >= horizon][-_MAX_CATCH_UP:]
        elif schedule.catch_up == "none":
            grace = timedelta(seconds=schedule.max_jitter(due[-1]) + 1.0)
            fire = due[-1:] if now - due[-1] <= grace else []
        else:
            fire = due[-1:]
        result.missed = len(due) - len(fire)
        if schedule.overlap == "skip" and row["busy"] and fire:
            result.skipped = len(fire)
            return []
        return fire

    def _advance(
        self,
        conn: object,
        schedule: CronSchedule,
        last_tick: datetime,
        now: datetime,
        result: PassResult,
        lateness: float | None,
    ) -> None:
        conn.execute(  # type: ignore[attr-defined]
            self.app.db.sql("schedule_advance"),
            {
                "name": schedule.name,
                "last_tick": last_tick,
                "next_tick": schedule.next_tick(max(last_tick, now)),
                "fired": len(result.fired),
                "collapsed": result.collapsed,
                "missed": result.missed,
                "skipped": result.skipped,
                "lateness_s": lateness,
                "now": now,
            },
        )
