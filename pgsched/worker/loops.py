"""Background loops: each one small class behind one protocol, run on its own thread.

A loop does one unit of work in ``run_once`` and returns how many seconds to wait before the
next. Waiting uses ``threading.Event.wait``, which runs on the OS clock and is not affected
by freezegun.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from loguru import logger

from pgsched.clock import utcnow
from pgsched.scheduler import Scheduler

if TYPE_CHECKING:
    from pgsched.app import App
    from pgsched.worker.metrics import WorkerMetrics


class Loop(Protocol):
    name: str

    def run_once(self) -> float:
        """Do one unit of work; return the seconds until the next."""


class LoopThread(threading.Thread):
    """Runs a loop until stopped; an error is logged and retried, never fatal."""

    def __init__(self, loop: Loop, stop: threading.Event) -> None:
        super().__init__(name=f"pgsched-{loop.name}", daemon=True)
        self.loop = loop
        self.stop = stop
        self.last_success = time.monotonic()
        self.failures = 0

    def run(self) -> None:
        log = logger.bind(component=self.loop.name)
        while not self.stop.is_set():
            try:
                delay = self.loop.run_once()
                self.last_success = time.monotonic()
                self.failures = 0
            except Exception as exc:
                self.failures += 1
                delay = min(30.0, 0.5 * 2 ** min(self.failures, 6))
                log.warning("{} failed ({!r}); retrying in {:.1f}s", self.loop.name, exc, delay)
            self.stop.wait(max(0.0, delay))


def jittered(seconds: float, spread: float = 0.2) -> float:
    return seconds * random.uniform(1 - spread, 1 + spread)


class Heartbeat:
    """Proves this worker is alive; re-registers if it was declared dead and removed."""

    name = "heartbeat"

    def __init__(
        self, app: App, worker_id: str, register: Callable[[], None], interval: float
    ) -> None:
        self.app = app
        self.worker_id = worker_id
        self.register = register
        self.interval = interval
        self.stopping = False

    def run_once(self) -> float:
        with self.app.db.connection(autocommit=True) as conn:
            row = conn.execute(
                self.app.db.sql("heartbeat"), {"id": self.worker_id, "stopping": self.stopping}
            ).fetchone()
        if row is None:
            logger.bind(component=self.name).warning(
                "this worker was declared dead (missed heartbeats); registering again"
            )
            self.register()
        return jittered(self.interval, 0.1)


class Takeover:
    """Requeues the runs of workers whose heartbeat lapsed. Any live worker may do it."""

    name = "takeover"

    def __init__(self, app: App, timeout: float, metrics: WorkerMetrics) -> None:
        self.app = app
        self.timeout = timeout
        self.metrics = metrics

    def run_once(self) -> float:
        with self.app.db.connection(autocommit=True) as conn:
            rows = conn.execute(
                self.app.db.sql("takeover"),
                {"timeout_s": self.timeout, "now": utcnow(), "channel": self.app.db.channel},
            ).fetchall()
        self.metrics.record_takeovers(rows)
        if rows:
            logger.bind(component=self.name).warning(
                "took over {} run(s) from dead workers: {}",
                len(rows), ", ".join(f"{r['id']}→{r['status']}" for r in rows[:10]),
            )
        return jittered(max(1.0, self.timeout / 4))


class CronLoop:
    """Sleeps until the next tick plus jitter, then runs a scheduler pass."""

    name = "cron"

    def __init__(self, scheduler: Scheduler, metrics: WorkerMetrics) -> None:
        self.scheduler = scheduler
        self.metrics = metrics

    def run_once(self) -> float:
        self.metrics.record_pass(self.scheduler.run_pass())
        wake = self.scheduler.next_wakeup(utcnow())
        if wake is None:
            return 3600.0
        return min(60.0, (wake - utcnow()).total_seconds())
