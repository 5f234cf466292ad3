"""What each dashboard page shows, read through ``pgsched.operations`` (the same functions
and statements as the CLI) plus the one statement only the dashboard needs: the last hour's
throughput per queue and minute."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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
#: Runs a search that no index serves (a queue alone, an id prefix) reads for one page at
#: most, newest first from where the previous page stopped: a page costs the same at a
#: thousand runs or a hundred million, and a queue that has a run in every few hundred still
#: fills a page at once.
SCAN_ROWS = 1000


@dataclass
class RunsPage:
    """One page of the runs list: its rows, newest first, and the query parameters of the
    next (older) page, if there may be one."""

    rows: list[dict[str, Any]]
    next: dict[str, str | int] | None
    #: A search page that stopped reading before it filled: the creation time of the oldest
    #: run it read (older runs are the next page's).
    searched_to: datetime | None = None
    #: Paged by a cursor (a search), not by page number.
    search: bool = False


def runs_page(db: Database, *, status: str | None, queue: str | None, name: str | None,
              id_prefix: str | None, page: int, before: str | None = None) -> RunsPage:
    """One page of runs, newest first.

    A failed, cancelled, waiting or running filter reads an index of those runs only: the
    shared statement would walk the whole history, newest first, to find a few failures. A
    workflow name has an index of its own. A queue alone or an id prefix has none (one would
    cost every enqueue and status change), so it is a bounded search (``search``), paged by
    a cursor (``before``) instead of a page number. Other pages read one extra row to know
    whether a next page exists, with no count over the whole table."""
    status = (status or "").upper() or None
    statement = _BY_STATUS.get(status or "")
    if statement is None and not name and (queue or id_prefix):
        return search(db, status=status, queue=queue or None, id_prefix=id_prefix or None,
                      before=before)
    limit, offset = PAGE_SIZE + 1, (page - 1) * PAGE_SIZE
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
    return RunsPage(rows[:PAGE_SIZE], {"page": page + 1} if len(rows) > PAGE_SIZE else None)


def search(db: Database, *, status: str | None, queue: str | None, id_prefix: str | None,
           before: str | None) -> RunsPage:
    """Runs matching the filters among the ``SCAN_ROWS`` newest created before the cursor
    ``before`` (``"<created_at ISO>|<id>"``, from the previous page; None or unreadable:
    from the newest). The next page goes on after the last match of a full page, or after
    the oldest run read when the page did not fill; none once the history is exhausted."""
    before_at, before_id = _cursor(before)
    with db.connection() as conn:
        rows = conn.execute(db.sql("dash_runs_search"), {
            "status": status, "queue": queue, "id_prefix": id_prefix, "scan": SCAN_ROWS,
            "limit": PAGE_SIZE, "before_at": before_at, "before_id": before_id,
        }).fetchall()
    runs = [row for row in rows if row["kind"] == "run"]
    end = next((row for row in rows if row["kind"] == "end"), None)
    exact = [row for row in rows if row["kind"] == "exact"
             and all(run["id"] != row["id"] for run in runs)]
    if len(runs) == PAGE_SIZE:
        last, searched_to = runs[-1], None
    elif end is not None and end["scanned"] == SCAN_ROWS:
        last, searched_to = end, end["created_at"]
    else:
        last, searched_to = None, None
    following = ({"before": f"{last['created_at'].isoformat()}|{last['id']}"}
                 if last is not None else None)
    if before_at is not None:  # the run whose id is the whole prefix led the first page
        runs = [run for run in runs if run["id"] != id_prefix]
    return RunsPage(exact + runs, following, searched_to, search=True)


def _cursor(before: str | None) -> tuple[datetime | None, str | None]:
    """A ``before`` cursor's creation time and id; (None, None) for none or a mangled one
    (the search starts again from the newest run rather than failing the page)."""
    at, separator, run_id = (before or "").partition("|")
    try:
        return (datetime.fromisoformat(at), run_id) if separator else (None, None)
    except ValueError:
        return None, None


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
