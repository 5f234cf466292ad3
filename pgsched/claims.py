"""Queues as the database holds them: declared limits, and what waits in them.

Claiming itself changes a run's state, so it lives in ``pgsched.lifecycle``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pgsched.db import Database

if TYPE_CHECKING:
    from pgsched.queues import Queue


def declare_queues(conn: Any, db: Database, queues: list[Queue], now: datetime) -> None:
    """Write each queue's limits and slot rows so the claim query can enforce them, in the
    caller's transaction. A worker then settles them on the strictest declaration of the live
    workers (``reconcile_queues``).

    In name order, whatever order the worker serves them in: two workers declaring the same
    queues in opposite orders in one transaction each would deadlock on the rows."""
    for queue in sorted(queues, key=lambda q: q.name):
        count, period = queue.rate_limit or (None, None)
        conn.execute(
            db.sql("declare_queue"),
            {
                "name": queue.name,
                "concurrency": queue.concurrency,
                "worker_concurrency": queue.worker_concurrency,
                "rate_limit": count,
                "rate_period_s": period,
                "now": now,
            },
        )


def declared_limits(queues: list[Queue]) -> dict[str, dict[str, Any]]:
    """What a worker's code declares for each queue it serves, as stored with its row."""
    return {
        q.name: {"concurrency": q.concurrency, "worker_concurrency": q.worker_concurrency,
                 "rate_limit": q.rate_limit[0] if q.rate_limit else None,
                 "rate_period_s": q.rate_limit[1] if q.rate_limit else None}
        for q in queues
    }


def reconcile_queues(conn: Any, db: Database, now: datetime) -> list[dict[str, Any]]:
    """Apply the strictest declaration of the live workers to each queue they serve; return
    the queues whose limits changed (see reconcile_queues.sql)."""
    return conn.execute(db.sql("reconcile_queues"), {"now": now}).fetchall()


def claim_settings(
    conn: Any, db: Database, names: list[str], now: datetime, timeout_s: float
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The limits the database holds for the queues ``names``, and the code versions
    (``App.version``) of the workers whose lease is live (see claim_settings.sql): one
    statement, so an idle worker's poll costs two statements with its peek."""
    rows = conn.execute(db.sql("claim_settings"),
                        {"names": names, "now": now, "timeout_s": timeout_s}).fetchall()
    return {row["name"]: row for row in rows if row["name"] is not None}, rows[0]["versions"]


@dataclass(frozen=True)
class Waiting:
    """What a peek found in one queue: whether a run can start now, and the earliest
    not-before time still ahead (None: every waiting run is due). ``suspects``: runs
    recovered from a crashed worker are ready, to be claimed one at a time."""

    ready: bool
    next_due: datetime | None
    suspects: bool = False


def peek(
    conn: Any, db: Database, queues: list[str], names: list[str] | str, now: datetime
) -> dict[str, Waiting]:
    """Which queues hold waiting runs of the workflows ``names`` (a list, or one array
    literal: ``pgsched.db.arrays.text_array``), and when the next one comes due."""
    rows = conn.execute(db.sql("peek"), {"queues": queues, "names": names, "now": now}).fetchall()
    return {row["name"]: Waiting(bool(row["ready"]), row["next_due"], bool(row["suspects"]))
            for row in rows}


def ready_queues(
    conn: Any, db: Database, queues: list[str], names: list[str], now: datetime
) -> set[str]:
    """The queues with a run that may start at ``now``."""
    return {name for name, waiting in peek(conn, db, queues, names, now).items() if waiting.ready}
