"""Background loops: each one small class behind one protocol, run on its own thread.

A loop does one unit of work in ``run_once`` and returns how many seconds to wait before the
next. After a failure it waits with a backoff capped at its own ``max_backoff``, so a loop
resumes within one of its intervals once the database is back. Waiting uses
``threading.Event.wait``, which runs on the OS clock and is not affected by freezegun.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import psycopg
from loguru import logger

from pgsched import clock, lifecycle
from pgsched.claims import reconcile_queues
from pgsched.clock import utcnow
from pgsched.scheduler import Scheduler
from pgsched.worker.dispatcher import IDLE_POLL_FACTOR

if TYPE_CHECKING:
    from pgsched.app import App
    from pgsched.worker.lease import Lease
    from pgsched.worker.metrics import WorkerMetrics


class Loop(Protocol):
    name: str
    #: The longest wait after a failure: at most the loop's normal interval.
    max_backoff: float

    def run_once(self) -> float:
        """Do one unit of work; return the seconds until the next."""


class LoopThread(threading.Thread):
    """Runs a loop until stopped; an error is logged and retried, never fatal.

    ``wakeup``, for a loop that can learn of work sooner than its own wait (the alarm, told
    of each run this worker parks): setting it ends the wait at once. Without it the thread
    waits on ``stop``."""

    def __init__(self, loop: Loop, stop: threading.Event,
                 wakeup: threading.Event | None = None) -> None:
        super().__init__(name=f"pgsched-{loop.name}", daemon=True)
        self.loop = loop
        self.stop = stop
        self.wakeup = wakeup
        self.last_success = time.monotonic()
        self.failures = 0

    def run(self) -> None:
        log = logger.bind(component=self.loop.name)
        while not self.stop.is_set():
            try:
                delay = self.loop.run_once()
                if self.failures:
                    log.info("{} works again after {} failure(s)", self.loop.name,
                             self.failures)
                self.last_success = time.monotonic()
                self.failures = 0
            except Exception as exc:
                self.failures += 1
                delay = min(self.loop.max_backoff, 0.25 * 2 ** min(self.failures, 8))
                if self.failures == 1 or self.failures % 10 == 0:
                    log.warning("{} failed ({}: {}); retrying in {:.1f}s (failure {})",
                                self.loop.name, type(exc).__name__,
                                str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                                delay, self.failures)
            if self.wakeup is None:
                self.stop.wait(max(0.0, delay))
            elif self.wakeup.wait(max(0.0, delay)):
                # A daemon thread: a worker that halts meanwhile is gone before this wait
                # ends, and the check above keeps a late one from starting another pass.
                self.wakeup.clear()


def jittered(seconds: float, spread: float = 0.2) -> float:
    return seconds * random.uniform(1 - spread, 1 + spread)


class Heartbeat:
    """Renews this worker's lease; re-registers if it was declared dead and removed.

    It has a connection of its own, outside the pool, so job code that holds every pooled
    connection can never starve it; a broken connection is replaced on the next beat.
    """

    name = "heartbeat"

    def __init__(
        self,
        app: App,
        worker_id: str,
        register: Callable[[psycopg.Connection], None],
        interval: float,
        lease: Lease,
    ) -> None:
        self.app = app
        self.worker_id = worker_id
        self.register = register
        self.interval = interval
        self.max_backoff = interval
        self.lease = lease
        self.stopping = False
        self._conn: psycopg.Connection | None = None

    def run_once(self) -> float:
        sent, wall_sent = time.monotonic(), clock.local_now()
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self.app.db.connect(autocommit=True,
                                                 connect_timeout=max(1.0, self.interval))
            row = self._conn.execute(
                self.app.db.sql("heartbeat"), {"id": self.worker_id, "stopping": self.stopping}
            ).fetchone()
        except Exception:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            raise
        wall_received = clock.local_now()
        if row is None:
            self.lease.lost()
            logger.bind(component=self.name).warning(
                "this worker was declared dead (missed heartbeats): its runs were taken over "
                "and their late writes are refused; registering again before claiming")
            self.register(self._conn)  # on this connection: the pool may still be reconnecting
        else:
            clock.observe(row["db_now"], wall_sent, wall_received)
        self.lease.renewed(sent)
        return jittered(self.interval, 0.1)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


#: Passes between two repairs of stranded slots: a repair only finds what a crash between
#: two releases left, so once a minute or so is plenty for an idle fleet's statement budget.
REPAIR_EVERY = 8


class Takeover:
    """Takes over the runs of workers whose lease lapsed. Any live worker may do it; none
    takes its own runs (its heartbeat tells it when it lost them)."""

    name = "takeover"

    def __init__(self, app: App, worker_id: str, timeout: float, metrics: WorkerMetrics) -> None:
        self.app = app
        self.worker_id = worker_id
        self.timeout = timeout
        self.metrics = metrics
        self.max_backoff = max(1.0, timeout / 4)
        self.passes = 0

    def run_once(self) -> float:
        db = self.app.db
        with db.connection(autocommit=True) as conn:
            rows = lifecycle.takeover(conn, db, worker_id=self.worker_id,
                                      timeout_s=self.timeout, now=utcnow())
        self.metrics.record_takeovers(rows)
        if rows:
            logger.bind(component=self.name).warning(
                "took over {} run(s) from workers that stopped heartbeating: {}",
                len(rows), ", ".join(f"{r['id']}→{r['status']}" for r in rows[:10]),
            )
        with db.connection(autocommit=True) as conn:
            changed = reconcile_queues(conn, db, utcnow())
        if changed:
            logger.bind(component=self.name).info(
                "queue limits follow the live workers' declarations now: {}",
                ", ".join(f"{r['name']} concurrency={r['concurrency']}" for r in changed))
        self.passes += 1
        if self.passes % REPAIR_EVERY == 0:
            self._release_stranded_slots()
        return jittered(self.max_backoff)

    def _release_stranded_slots(self) -> None:
        db = self.app.db
        try:
            with db.connection() as conn:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                freed = lifecycle.release_stranded_slots(conn, db)
        except psycopg.errors.SerializationFailure:
            return  # a claim took one of those slots meanwhile: look again next pass
        if freed:
            logger.bind(component=self.name).warning(
                "freed {} queue slot(s) held by runs that no longer run", len(freed))


class Alarm:
    """Re-queues parked runs (``pgsched.sleep``, a ``recv`` timeout) when their time comes.

    Every worker runs one; each pass is an index probe that also answers when the next
    parked run comes due, so the alarm sleeps until then. A run parked after the probe is
    announced by the worker that parked it (``expect``, from its dispatcher), which wakes its
    own alarm early if need be; so an idle alarm probes only every ``IDLE_POLL_FACTOR``
    poll intervals, as the idle dispatcher does: that fallback covers a run whose parking
    worker died before its alarm rang. A message wakes its run at once without this loop
    (``lifecycle.send_message``).
    """

    name = "alarm"
    #: Runs woken per pass: a burst is taken in slices, the next one at once.
    batch = 1000

    def __init__(self, app: App, interval: float) -> None:
        self.app = app
        self.interval = interval
        self.max_backoff = interval
        self.wakeup = threading.Event()
        self._lock = threading.Lock()
        #: The earliest wake time announced since the last probe began.
        self._expected: datetime | None = None
        #: When the pass after this one is due (None while a pass runs or before the first).
        self._next: datetime | None = None

    def expect(self, at: datetime) -> None:
        """A run this worker parked comes due at ``at``: ring then, if not sooner already.
        Called after the park committed, so a probe that starts later sees the run."""
        with self._lock:
            if self._expected is None or at < self._expected:
                self._expected = at
            if self._next is not None and at < self._next:
                self.wakeup.set()

    def run_once(self) -> float:
        db = self.app.db
        now = utcnow()
        with self._lock:
            # Taken before the probe: a hint that arrives during it is kept for the next
            # wait, and the probe itself sees every run parked before it began.
            expected, self._expected, self._next = self._expected, None, None
        with db.connection(autocommit=True) as conn:
            woken, next_wake = lifecycle.wake_due(conn, db, now=now, limit=self.batch)
        if woken:
            logger.bind(component=self.name).info(
                "woke {} parked run(s) whose wait is over", woken)
        if woken >= self.batch:
            return 0.0
        idle = IDLE_POLL_FACTOR * self.interval
        waits = [(at - now).total_seconds() for at in (next_wake, expected)
                 if at is not None and at > now]
        delay = min(idle, *waits) if waits else jittered(idle, 0.1)
        with self._lock:
            self._next = now + timedelta(seconds=delay)
            if self._expected is not None and self._expected < self._next:
                self.wakeup.set()  # announced while the probe ran
        return delay


class CronLoop:
    """Sleeps until the next tick plus jitter, then runs a scheduler pass."""

    name = "cron"
    max_backoff = 5.0

    def __init__(self, scheduler: Scheduler, metrics: WorkerMetrics) -> None:
        self.scheduler = scheduler
        self.metrics = metrics

    def run_once(self) -> float:
        self.metrics.record_pass(self.scheduler.run_pass())
        wake = self.scheduler.next_wakeup(utcnow())
        if wake is None:
            return 3600.0
        return min(60.0, (wake - utcnow()).total_seconds())
