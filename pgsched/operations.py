"""Operating on runs from Python: list, inspect, cancel, resume, retry, fork, queue stats, prune.

These functions take a ``Database`` only, never an App, so the CLI can operate on any schema
without importing the user's code. Each state change is one SQL statement that re-checks the
state it expects, so a run that finishes between the read and the write is reported rather
than overwritten.

Which operation for which run:

- ``cancel``: a waiting or running run (and its unfinished child workflows) becomes
  CANCELLED. A running one stops at its next step boundary, on whatever worker runs it.
- ``resume``: undoes a cancel. A CANCELLED run goes back to its queue.
- ``retry``: a failed run (ERROR, or DEAD after using up its attempts) goes back to its queue.
- ``fork``: a new run of the same workflow and inputs that keeps the checkpoints of the steps
  before ``from_step`` and runs the rest with the code deployed now. Works on any run.

``resume`` and ``retry`` both continue from the last checkpoint (the recorded steps are kept),
reset ``attempts`` to 0 so the run gets its full ``max_attempts`` again, and keep the last
``error`` until the run finishes, so the reason it stopped stays visible meanwhile.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from loguru import logger

from pgsched import lifecycle
from pgsched.clock import utcnow
from pgsched.db import Database
from pgsched.errors import ConfigurationError, InvalidOperation, WorkflowNotFound
from pgsched.handles import Handle
from pgsched.lifecycle import FINISHED, STATUSES, UNFINISHED

#: A worker whose heartbeat is older than this is not counted as serving a queue.
LIVE_WORKER_SECONDS = 30.0
MAX_LIMIT = 10_000


def _utc(value: datetime | None, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ConfigurationError(f"{what} must be a datetime, got {value!r}")
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _statuses(status: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    if status is None:
        return None
    wanted = [status] if isinstance(status, str) else list(status)
    wanted = [s.upper() for s in wanted]
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown or not wanted:
        raise ConfigurationError(
            f"unknown status {', '.join(unknown) or '(none)'}; use one of {', '.join(STATUSES)}"
        )
    return wanted


def _run(conn: psycopg.Connection, db: Database, workflow_id: str) -> dict[str, Any]:
    row = conn.execute(db.sql("ops_get"), {"id": workflow_id}).fetchone()
    if row is None:
        raise WorkflowNotFound(
            f"no run with id {workflow_id!r}; find runs with `pgsched workflows list` "
            "(or --id-prefix to search by the start of an id)"
        )
    return row


def list_workflows(
    db: Database,
    *,
    status: str | list[str] | None = None,
    name: str | None = None,
    queue: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    id_prefix: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Runs matching every given filter, newest first (``since`` inclusive, ``until``
    exclusive, both on the creation time)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ConfigurationError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise ConfigurationError(f"offset must not be negative, got {offset}")
    params = {
        "statuses": _statuses(status),
        "name": name,
        "queue": queue,
        "since": _utc(since, "since"),
        "until": _utc(until, "until"),
        "id_prefix": id_prefix or None,
        "limit": limit,
        "offset": offset,
    }
    with db.connection() as conn:
        return conn.execute(db.sql("ops_list"), params).fetchall()


def get_workflow(db: Database, workflow_id: str) -> dict[str, Any]:
    """One run with its inputs, output, error, its steps (with durations), child runs, the
    events it published and the messages sent to it (the first 100)."""
    with db.connection() as conn:
        run = _run(conn, db, workflow_id)
        steps = conn.execute(db.sql("ops_steps"), {"id": workflow_id}).fetchall()
        children = conn.execute(db.sql("ops_children"), {"id": workflow_id}).fetchall()
        events = conn.execute(db.sql("ops_events"), {"id": workflow_id}).fetchall()
        messages = conn.execute(db.sql("ops_messages"), {"id": workflow_id}).fetchall()
    started, finished = run["started_at"], run["finished_at"]
    run["duration_s"] = (finished - started).total_seconds() if started and finished else None
    run["steps"] = steps
    run["children"] = children
    run["events"] = events
    run["messages"] = messages
    return run


def cancel(db: Database, workflow_id: str) -> None:
    """Cancel a waiting or running run and its unfinished child workflows.

    Cancelling a run that is already CANCELLED does nothing, so a retried command is safe.
    """
    with db.connection() as conn:
        run = _run(conn, db, workflow_id)
        if run["status"] == "CANCELLED":
            return
        if run["status"] in FINISHED:
            raise InvalidOperation(
                f"run {workflow_id} already finished as {run['status']}; there is nothing to "
                "cancel"
            )
        _refuse_child(conn, db, run, "cancel")
        done = lifecycle.cancel_tree(conn, db, workflow_id, now=utcnow())
    if workflow_id not in done:
        raise InvalidOperation(
            f"run {workflow_id} finished while it was being cancelled; "
            f"see `pgsched workflows show {workflow_id}`"
        )
    logger.bind(component="operations").info(
        "cancelled run {}{}", workflow_id,
        f" and {len(done) - 1} child run(s)" if len(done) > 1 else "",
    )


def _refuse_child(conn: psycopg.Connection, db: Database, run: dict[str, Any], verb: str) -> None:
    """A child workflow runs inline in its parent's thread; operating on it alone would leave
    the parent stuck, so the operator is pointed at the parent."""
    if run["parent_id"] is None:
        return
    parent = conn.execute(db.sql("ops_get"), {"id": run["parent_id"]}).fetchone()
    if parent is not None and (verb != "cancel" or parent["status"] in UNFINISHED):
        raise InvalidOperation(
            f"run {run['id']} is a child workflow of {parent['id']} ({parent['status']}); "
            f"{verb} the parent instead: `pgsched workflows {verb} {parent['id']}`"
        )


def resume(db: Database, workflow_id: str) -> Handle:
    """Put a CANCELLED run back on its queue; it continues from its last checkpoint."""
    return _requeue(db, workflow_id, "resume", ("CANCELLED",))


def retry(db: Database, workflow_id: str) -> Handle:
    """Put a failed (ERROR) or dead-lettered (DEAD) run back on its queue; it continues from
    its last checkpoint with its attempts counted from zero."""
    return _requeue(db, workflow_id, "retry", ("ERROR", "DEAD"))


def _requeue(db: Database, workflow_id: str, verb: str, allowed: tuple[str, ...]) -> Handle:
    with db.connection() as conn:
        run = _run(conn, db, workflow_id)
        if run["status"] not in allowed:
            raise InvalidOperation(_wrong_state(workflow_id, run["status"], verb))
        _refuse_child(conn, db, run, verb)
        try:
            rows = lifecycle.requeue_tree(conn, db, workflow_id, from_statuses=list(allowed),
                                          now=utcnow())
        except psycopg.errors.UniqueViolation:
            conn.rollback()
            raise InvalidOperation(
                f"run {workflow_id} has dedup key {run['dedup_key']!r}, which another waiting "
                f"or running run of queue {run['queue']!r} holds now; cancel that run first, or "
                f"fork this one: `pgsched workflows fork {workflow_id} --from-step N`"
            ) from None
    if not any(row["id"] == workflow_id for row in rows):
        raise InvalidOperation(
            f"run {workflow_id} changed state while it was being {verb}d; "
            f"see `pgsched workflows show {workflow_id}`"
        )
    logger.bind(component="operations").info("{}d run {} on queue {}", verb, workflow_id,
                                             run["queue"])
    return Handle(db, workflow_id)


def _wrong_state(workflow_id: str, status: str, verb: str) -> str:
    if status in UNFINISHED:
        return f"run {workflow_id} is {status}, not stopped; there is nothing to {verb}"
    if status == "SUCCESS":
        return (
            f"run {workflow_id} succeeded; there is nothing to {verb}. To run it again with the "
            f"code deployed now, fork it: `pgsched workflows fork {workflow_id} --from-step 1`"
        )
    if status == "CANCELLED":
        return f"run {workflow_id} was cancelled, not failed; use `pgsched workflows resume`"
    return f"run {workflow_id} failed ({status}); use `pgsched workflows retry` to run it again"


def _fork_id(workflow_id: str) -> str:
    """``<original>-fork-<8 hex>``; forking a fork keeps the original's id as the stem."""
    stem = workflow_id.split("-fork-", 1)[0]
    return f"{stem}-fork-{uuid.uuid4().hex[:8]}"


def fork(db: Database, workflow_id: str, *, from_step: int, queue: str | None = None) -> Handle:
    """Start a new run that replays the checkpoints of steps ``1..from_step-1`` of this run
    and executes ``from_step`` onwards with the code deployed now.

    ``from_step`` may be one past the last recorded step, which keeps every checkpoint. The
    new run records ``forked_from``; the original is left as it is.
    """
    with db.connection() as conn:
        run = _run(conn, db, workflow_id)
        counted = conn.execute(db.sql("ops_step_count"), {"id": workflow_id}).fetchone()
        last = int(counted["last_step"])
        if isinstance(from_step, bool) or not isinstance(from_step, int) or not (
            1 <= from_step <= last + 1
        ):
            raise InvalidOperation(
                f"run {workflow_id} recorded {last} step(s), so from_step must be between 1 "
                f"and {last + 1} (1 re-runs everything, {last + 1} keeps every checkpoint); "
                f"got {from_step!r}. See the steps with `pgsched workflows show {workflow_id}`"
            )
        if queue is not None and queue != run["queue"]:
            known = conn.execute(db.sql("ops_queue_known"), {"queue": queue}).fetchone()
            if not known["known"]:
                raise InvalidOperation(
                    f"no worker has declared queue {queue!r}, so nothing would run the fork; "
                    "start a worker whose app defines it, or leave the queue out"
                )
        row = conn.execute(
            db.sql("ops_fork"),
            {"id": workflow_id, "new_id": _fork_id(workflow_id), "from_step": from_step,
             "queue": queue, "now": utcnow(), "channel": db.channel},
        ).fetchone()
    logger.bind(component="operations").info(
        "forked run {} from step {} as {} on queue {} ({} checkpoint(s) kept)",
        workflow_id, from_step, row["id"], row["queue"], row["copied_steps"],
    )
    return Handle(db, row["id"])


def queue_stats(db: Database) -> list[dict[str, Any]]:
    """Per queue: waiting (ready now), scheduled (not before a future time), running, limits,
    slots held, age of the oldest ready run, runs finished and failed in the last minute, and
    live workers serving it. Child workflows run inside their parent and are not counted."""
    with db.connection() as conn:
        return conn.execute(
            db.sql("ops_queue_stats"), {"now": utcnow(), "live_s": LIVE_WORKER_SECONDS}
        ).fetchall()


def list_schedules(db: Database) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return conn.execute(db.sql("ops_schedules")).fetchall()


def set_schedule_paused(db: Database, name: str, paused: bool) -> None:
    """Pause or resume a schedule fleet-wide; a paused schedule's ticks are skipped, not
    queued for later."""
    with db.connection() as conn:
        row = conn.execute(
            db.sql("schedule_pause"), {"name": name, "paused": paused, "now": utcnow()}
        ).fetchone()
    if row is None:
        raise ConfigurationError(
            f"no schedule named {name!r}; list them with `pgsched schedules` (a schedule "
            "appears once a worker whose app defines it has started)"
        )


def prune_batch(db: Database, cutoff: datetime, batch_size: int, *, exclusive: bool) -> int | None:
    """Delete one batch of finished runs older than ``cutoff``; return how many.

    With ``exclusive`` the batch runs only if no other session is pruning this schema right
    now, and returns ``None`` when it is.
    """
    with db.connection() as conn:
        if exclusive:
            got = conn.execute(db.sql("ops_prune_lock"), {"schema": db.schema}).fetchone()
            if not got["locked"]:
                return None
        row = conn.execute(
            db.sql("ops_prune_batch"), {"cutoff": cutoff, "batch_size": batch_size}
        ).fetchone()
    return int(row["deleted"])


def prune(db: Database, older_than: timedelta, batch_size: int = 1000) -> int:
    """Delete finished runs (SUCCESS, ERROR, CANCELLED, DEAD) that finished more than
    ``older_than`` ago, with their steps, in batches of ``batch_size``; return how many.

    Waiting and running runs are never touched. Each batch commits on its own, so pruning a
    large backlog never holds locks for long.
    """
    if older_than.total_seconds() <= 0:
        raise ConfigurationError(f"older_than must be positive, got {older_than}")
    if batch_size < 1:
        raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
    cutoff = utcnow() - older_than
    total = 0
    while True:
        deleted = prune_batch(db, cutoff, batch_size, exclusive=False) or 0
        total += deleted
        if deleted < batch_size:
            break
    logger.bind(component="prune").info("pruned {} run(s) finished before {}", total, cutoff)
    return total


def versions(db: Database) -> list[dict[str, Any]]:
    """Unfinished runs per code version, with the live workers of each."""
    with db.connection() as conn:
        return conn.execute(db.sql("cli_versions")).fetchall()
