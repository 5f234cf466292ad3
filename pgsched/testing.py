"""Test pgsched apps in-process, against a real database, with frozen time.

Import this module before you freeze time; a test then reads like this::

    from freezegun import freeze_time
    from pgsched.testing import advance, run_scheduler, run_until_idle

    def test_sweep_runs_every_5_minutes():
        with freeze_time("2026-03-29 00:00", tz_offset=0) as frozen:
            runs = advance(frozen, app, until=timedelta(hours=2))
        assert [r["scheduled_at"].minute for r in runs][:3] == [0, 5, 10]

``run_scheduler`` is one scheduler pass at the current (frozen) time, exactly as a worker's
schedule loop does it; ``run_until_idle`` claims and executes ready runs on the calling
thread, through the same claim, execute and write-outcome functions the worker uses;
``advance`` moves the frozen clock from instant to instant and does both at each one.

Why importing this module matters: freezegun also freezes ``time.monotonic``, and psycopg and
psycopg_pool measure their timeouts with it. Under a frozen clock a connect timeout or a pool
wait never expires, so a test whose database is slow or down hangs forever instead of
failing. On import, this module adds them to freezegun's ignore list (they see the real
clock; your code and pgsched's scheduling still see the frozen one), and each helper refuses
to run under a freeze that was started without that setting.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from pgsched import __version__, lifecycle
from pgsched.claims import declare_queues, peek
from pgsched.clock import utcnow
from pgsched.errors import ConfigurationError, PgschedError
from pgsched.lifecycle import Outcome
from pgsched.runs import execute_claimed
from pgsched.scheduler import Scheduler
from pgsched.serialization import from_jsonable

if TYPE_CHECKING:
    from pgsched.app import App

__all__ = ["advance", "in_process_worker", "run_scheduler", "run_until_idle"]

#: Modules that must keep the real clock under freezegun (prefixes, as freezegun matches them).
REAL_CLOCK_MODULES = ("psycopg", "psycopg_pool")


def _configure_freezegun() -> None:
    try:
        import freezegun
    except ImportError:
        return
    freezegun.configure(extend_ignore_list=list(REAL_CLOCK_MODULES))


_configure_freezegun()


def _check_clock() -> None:
    """Refuse to talk to the database under a freeze that would stop psycopg's timeouts."""
    try:
        from freezegun import api
    except ImportError:
        return
    active = getattr(api, "ignore_lists", None)
    if not active:
        return
    ignored = tuple(active[-1])
    if not all(module.startswith(ignored) for module in REAL_CLOCK_MODULES):
        raise ConfigurationError(
            "time was frozen without leaving psycopg on the real clock, so a database wait "
            "could hang forever: import pgsched.testing before calling freeze_time(), or pass "
            "freeze_time(..., ignore=['psycopg', 'psycopg_pool'])"
        )


def run_scheduler(app: App, now: datetime | None = None) -> list[str]:
    """One scheduler pass at ``now`` (default: the current, possibly frozen, time).

    Registers the app's schedules like a starting worker (so an unknown queue raises
    ``UnknownQueue``), inserts every due tick under the schedule's policies, and returns the
    ids of the runs it inserted.
    """
    _check_clock()
    app.ensure_schema()
    results = Scheduler(app).run_pass(now or utcnow())
    return [run_id for result in results.values() for run_id in result.fired]


@contextmanager
def in_process_worker(app: App, queues: list[str]) -> Iterator[str]:
    """A worker row for the calling thread, so takeover never mistakes its runs for orphans;
    removed on exit."""
    worker_id = f"testing:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    params = {
        "id": worker_id,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "app": app.name,
        "queues": queues,
        "workflows": sorted(app.registry.workflows),
        "concurrency": 1,
        "queue_limits": Jsonb({}),  # declares nothing beyond declare_queues
        "version": __version__,
        "app_version": app.version,
    }
    with app.db.connection() as conn:
        conn.execute(app.db.sql("worker_register"), params)
    try:
        yield worker_id
    finally:
        with app.db.connection() as conn:
            conn.execute(app.db.sql("worker_remove"), {"id": worker_id})


def _report(row: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "queue": row["queue"],
        "status": outcome.status,
        "attempt": row["attempts"],
        "scheduled_at": row["scheduled_at"],
        "output": from_jsonable(json.loads(outcome.output)) if outcome.output else None,
        "error": json.loads(outcome.error) if outcome.error else None,
    }


def run_until_idle(
    app: App, queues: list[str] | None = None, max_runs: int = 10_000
) -> list[dict[str, Any]]:
    """Claim and execute ready runs on this thread until none is ready at the current time.

    Runs are claimed one at a time, highest priority and oldest first, under the same queue
    limits a worker obeys. Work a run enqueues for now runs in the same call; a retry with
    backoff or a delayed job waits until the clock reaches it. Returns one dict per
    execution: ``id``, ``name``, ``queue``, ``status`` (``ENQUEUED`` means a retry was
    scheduled; ``WAITING``, that the run parked in pgsched.sleep or pgsched.recv),
    ``attempt``, ``scheduled_at``, ``output`` and ``error``.
    """
    _check_clock()
    app.ensure_schema()
    selected = [app.get_queue(name) for name in (queues or sorted(app.queues))]
    with app.db.connection() as conn:
        declare_queues(conn, app.db, selected, utcnow())
    names = sorted(app.registry.workflows)
    executed: list[dict[str, Any]] = []
    with in_process_worker(app, [q.name for q in selected]) as worker_id:
        while True:
            found: tuple[Any, dict[str, Any]] | None = None
            for queue in selected:
                with app.db.connection() as conn:
                    rows = lifecycle.claim(conn, app.db, queue, 1, worker_id=worker_id,
                                           names=names, now=utcnow(), version=app.version)
                if rows:
                    found = (queue, rows[0])
                    break
            if found is None:
                with app.db.connection(autocommit=True) as conn:
                    woken, _ = lifecycle.wake_due(conn, app.db, now=utcnow())
                if woken:
                    continue  # parked runs whose time came: run them now too
                return executed
            if len(executed) >= max_runs:
                raise PgschedError(
                    f"run_until_idle executed {max_runs} runs and work is still ready at "
                    f"{utcnow().isoformat()}; does a job keep enqueuing itself? Raise max_runs "
                    "if this is expected"
                )
            queue, row = found
            spec = app.registry.workflows[row["name"]]
            outcome = execute_claimed(app.db, spec, row, worker_id=worker_id, queue=queue.name)
            if outcome.status != "LOST":
                with app.db.connection() as conn:
                    lifecycle.finish(conn, app.db, [outcome], worker_id=worker_id, now=utcnow())
            executed.append(_report(row, outcome))


def _next_due(app: App, now: datetime) -> datetime | None:
    """The earliest instant after ``now`` when something could happen: a schedule's next
    tick, a waiting run (retry, delayed job) coming due, or a parked run's wake time."""
    candidates = [schedule.next_tick(now) for schedule in app.schedules.values()]
    with app.db.connection() as conn:
        found = peek(conn, app.db, sorted(app.queues), sorted(app.registry.workflows), now)
        # limit 0: wakes nothing, only tells when the next parked run comes due
        _, next_wake = lifecycle.wake_due(conn, app.db, now=now, limit=0)
    candidates += [w.next_due for w in found.values() if w.next_due is not None]
    candidates += [next_wake] if next_wake is not None else []
    return min(candidates, default=None)


def advance(
    frozen: Any,
    app: App,
    until: datetime | timedelta,
    step: timedelta | float | None = None,
    queues: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Move a freezegun clock to ``until``, stopping at each instant on the way to run a
    scheduler pass and the work that is ready (``run_scheduler`` + ``run_until_idle``).

    ``frozen`` is what ``freeze_time(...)`` yields. Without ``step`` the clock jumps from
    one due instant to the next (schedule ticks, retries, delayed jobs), which is exact and
    fast; with ``step`` (a timedelta or seconds) it moves in fixed steps, like a worker that
    wakes that often. The current instant is processed first. Returns every execution, in
    order, as ``run_until_idle`` reports them.
    """
    now = utcnow()
    target = now + until if isinstance(until, timedelta) else until
    if target.tzinfo is None:
        target = target.replace(tzinfo=timezone.utc)
    fixed = timedelta(seconds=step) if isinstance(step, (int, float)) else step
    if fixed is not None and fixed <= timedelta(0):
        raise ConfigurationError(f"step must be positive, got {step!r}")
    executed: list[dict[str, Any]] = []
    while True:
        if app.schedules:
            run_scheduler(app, now)
        executed += run_until_idle(app, queues)
        if now >= target:
            return executed
        following = now + fixed if fixed is not None else _next_due(app, now)
        now = target if following is None else min(following, target)
        frozen.move_to(now)
