"""Claiming ready runs under the queue limits, shared by the worker and the test helpers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pgsched.db import Database

if TYPE_CHECKING:
    from pgsched.queues import Queue


def declare_queues(db: Database, queues: list[Queue], now: datetime) -> None:
    """Write each queue's limits and slot rows so the claim query can enforce them."""
    with db.connection() as conn:
        for queue in queues:
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


def send_claim(
    conn: Any,
    db: Database,
    queue: Queue,
    limit: int,
    *,
    worker_id: str,
    names: list[str],
    now: datetime,
) -> Any:
    """Send the statements that claim up to ``limit`` runs of ``queue``; return the cursor
    whose rows are the claimed runs.

    Nothing here reads a result before the claim itself, so in pipeline mode a whole claim
    round (finish, claims, commit) costs one network round trip, rate limit included: the
    advisory lock is a statement of its own and the count happens inside the claim.
    """
    if queue.concurrency is None and queue.rate_limit is None:
        return conn.cursor().execute(
            db.sql("claim_unlimited"),
            {"queue": queue.name, "limit": limit, "names": names, "worker": worker_id,
             "now": now},
        )
    rate_limit = window_start = prune_before = None
    if queue.rate_limit is not None:
        rate_limit, period = queue.rate_limit
        window_start = now - timedelta(seconds=period)
        prune_before = window_start - timedelta(seconds=period)
        conn.execute(db.sql("rate_window"), {"schema": db.schema, "queue": queue.name})
    return conn.cursor().execute(
        db.sql("claim"),
        {
            "queue": queue.name,
            "limited": queue.concurrency is not None,
            "limit": limit,
            "rate_limit": rate_limit,
            "window_start": window_start,
            "prune_before": prune_before,
            "names": names,
            "worker": worker_id,
            "now": now,
        },
    )


def claim_statements(queue: Queue) -> int:
    """How many statements ``send_claim`` sends for ``queue``: a rate-limited claim takes the
    queue's advisory lock in a statement of its own first, and both must share a transaction."""
    return 1 if queue.rate_limit is None else 2


def claim(
    conn: Any,
    db: Database,
    queue: Queue,
    limit: int,
    *,
    worker_id: str,
    names: list[str],
    now: datetime,
) -> list[dict[str, Any]]:
    """Claim up to ``limit`` runs of ``queue`` in the caller's transaction."""
    if limit <= 0:
        return []
    cursor = send_claim(conn, db, queue, limit, worker_id=worker_id, names=names, now=now)
    return list(cursor.fetchall())


@dataclass(frozen=True)
class Waiting:
    """What a peek found in one queue: whether a run can start now, and the earliest
    not-before time still ahead (None: every waiting run is due)."""

    ready: bool
    next_due: datetime | None


def peek(
    conn: Any, db: Database, queues: list[str], names: list[str], now: datetime
) -> dict[str, Waiting]:
    """Which queues hold waiting runs, and when the next one comes due."""
    rows = conn.execute(db.sql("peek"), {"queues": queues, "names": names, "now": now}).fetchall()
    return {row["name"]: Waiting(bool(row["ready"]), row["next_due"]) for row in rows}


def ready_queues(
    conn: Any, db: Database, queues: list[str], names: list[str], now: datetime
) -> set[str]:
    """The queues with a run that may start at ``now``."""
    return {name for name, waiting in peek(conn, db, queues, names, now).items() if waiting.ready}
