"""Claiming ready runs under the queue limits, shared by the worker and the test helpers."""

from __future__ import annotations

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
    """Claim up to ``limit`` runs of ``queue`` in the caller's transaction.

    A rate-limited queue first takes a transaction-scoped advisory lock and counts the starts
    in its window; every other claim relies on SKIP LOCKED alone.
    """
    if limit <= 0:
        return []
    window_start = None
    if queue.rate_limit is not None:
        count, period = queue.rate_limit
        window_start = now - timedelta(seconds=period)
        row = conn.execute(
            db.sql("rate_window"), {"queue": queue.name, "window_start": window_start}
        ).fetchone()
        limit = min(limit, count - int(row["started"]))
        if limit <= 0:
            return []
    rows = conn.execute(
        db.sql("claim"),
        {
            "queue": queue.name,
            "limited": queue.concurrency is not None,
            "limit": limit,
            "names": names,
            "worker": worker_id,
            "now": now,
        },
    ).fetchall()
    if window_start is not None and rows:
        conn.execute(
            db.sql("record_starts"),
            {"queue": queue.name, "window_start": window_start, "now": now, "count": len(rows)},
        )
    return rows


def ready_queues(conn: Any, db: Database, queues: list[str], names: list[str], now: datetime) -> set[str]:
    rows = conn.execute(db.sql("peek"), {"queues": queues, "names": names, "now": now}).fetchall()
    return {row["name"] for row in rows}

