"""What each dashboard page shows, read through ``pgsched.operations`` (the same functions
and statements as the CLI) plus the one statement only the dashboard needs: the last hour's
throughput per queue and minute."""

from __future__ import annotations

from typing import Any

from pgsched import operations
from pgsched.clock import utcnow
from pgsched.db import Database

#: Runs per page of the runs list.
PAGE_SIZE = 50
#: Minutes of throughput the queues page charts.
HISTORY_MINUTES = 60


#: Status filters with a statement of their own, one that walks an index holding only runs
#: of those statuses (any other filter is ``operations.list_workflows``).
_BY_STATUS = {"ERROR": "dash_runs_stopped", "DEAD": "dash_runs_stopped",
              "CANCELLED": "dash_runs_stopped", "ENQUEUED": "dash_runs_active",
              "RUNNING": "dash_runs_active"}


def runs_page(db: Database, *, status: str | None, queue: str | None, name: str | None,
              id_prefix: str | None, page: int) -> tuple[list[dict[str, Any]], bool]:
    """One page of runs, newest first, and whether a next page exists (one extra row is
    read to know, so no count over the whole table is needed).

    A failed, cancelled, waiting or running filter reads an index of those runs only: the
    shared statement would walk the whole history, newest first, to find a few failures."""
    status = (status or "").upper() or None
    limit, offset = PAGE_SIZE + 1, (page - 1) * PAGE_SIZE
    statement = _BY_STATUS.get(status or "")
    if statement is None:
        rows = operations.list_workflows(
            db, status=status, queue=queue or None, name=name or None,
            id_prefix=id_prefix or None, limit=limit, offset=offset,
        )
    else:
        with db.connection() as conn:
            rows = conn.execute(db.sql(statement), {
                "status": status, "queue": queue or None, "name": name or None,
                "id_prefix": id_prefix or None, "limit": limit, "offset": offset,
            }).fetchall()
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


def queues(db: Database) -> list[dict[str, Any]]:
    """``operations.queue_stats`` rows, each with ``finished_series`` and ``failed_series``:
    per-minute counts over the last hour, oldest first."""
    stats = operations.queue_stats(db)
    with db.connection() as conn:
        history = conn.execute(db.sql("dash_queue_history"), {"now": utcnow()}).fetchall()
    series: dict[str, tuple[list[int], list[int]]] = {}
    for row in history:
        finished, failed = series.setdefault(
            row["queue"], ([0] * HISTORY_MINUTES, [0] * HISTORY_MINUTES))
        index = HISTORY_MINUTES - 1 - min(max(row["minute"], 0), HISTORY_MINUTES - 1)
        finished[index] += row["finished"]
        failed[index] += row["failed"]
    empty = [0] * HISTORY_MINUTES
    for row in stats:
        finished, failed = series.get(row["queue"], (empty, empty))
        row["finished_series"], row["failed_series"] = finished, failed
        row["finished_hour"], row["failed_hour"] = sum(finished), sum(failed)
    return stats


def workers(db: Database) -> list[dict[str, Any]]:
    """Every registered worker, live or silent (the page marks which), as ``pgsched workers
    --all`` lists them."""
    with db.connection() as conn:
        return conn.execute(db.sql("cli_workers"),
                            {"live_s": operations.LIVE_WORKER_SECONDS, "all": True}).fetchall()
