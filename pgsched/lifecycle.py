"""The one owner of run state: every status change of a run goes through this module.

Each function here sends one named statement (``pgsched/sql/queries``) that, in one place,
checks the attempt token, keeps or releases the queue slot, and moves the run's descendants
with it. Nothing else in pgsched updates ``workflows.status``, ``attempt_token``,
``executor`` or ``queue_slots.holder``.

Statuses and who moves a run from where to where::

                      enqueue / cron tick / start
                                 |
                                 v
      +----------------------> ENQUEUED <------------------------------+
      |   retry (finish)          |  ^   ^                             |
      |                     claim |  |   | handback (stop, reconnect)  | resume / retry
      |                           v  |   | takeover (lease lapsed)     | (operator)
      +-------------------------- RUNNING                              |
                                  |  |                                 |
           finish: SUCCESS, ERROR,|  | child start (start_child)       |
           DEAD, CANCELLED (timeout)  v                                |
                                  |  children: WAITING <-> RUNNING     |
                                  |                                    |
                                  |  park (finish: sleep, recv)        |
                                  +-----> WAITING --- wake: time, message, already over
                                  |               (wake_due, send_message, wake_parked)
                                  v                                    |
               SUCCESS | ERROR | DEAD | CANCELLED ---------------------+
                                  ^
                  cancel (operator): ENQUEUED, RUNNING, WAITING -> CANCELLED

- **claim** (``claim*.sql``): ENQUEUED -> RUNNING, a fresh attempt token, ``attempts + 1``,
  a queue slot taken in the same statement when the queue has a fleet-wide limit.
- **checkpoint / fence** (``checkpoint.sql``, ``fence.sql``): no status change; written only
  while the token matches, so a late writer raises ``ClaimLost`` instead of writing.
- **finish** (``finish.sql``): RUNNING -> SUCCESS | ERROR | DEAD | CANCELLED, or ENQUEUED for
  a retry with a ``not_before`` (or when checkpoints the attempt wrote are missing: lost in a
  failover, they are redone, never skipped). Token-checked. Releases the slot, except after
  a timeout: the thread still runs, so the slot is kept until it returns (``returned``). A
  failure or cancel cancels unfinished descendants; a retry puts them in WAITING for the
  next attempt.
- **park** (``finish.sql`` with a WAITING outcome): RUNNING -> WAITING for a run whose
  workflow called ``pgsched.sleep`` or ``pgsched.recv``: executor, slot and the attempt given
  back, ``wake_at``/``wait_run``/``wait_topic`` kept. In the same transaction
  ``wake_parked.sql`` re-queues those whose wait ended meanwhile, so no wake-up is lost.
- **wake** (``wake_due.sql``, ``send_message.sql``): a parked top-level run -> ENQUEUED when
  its ``wake_at`` passes or a message it waits for arrives; it replays to its wait.
- **handback** (``handback.sql``): RUNNING -> ENQUEUED for runs this worker will not finish
  (stopping, or claimed by a round whose reply was lost); the attempt is refunded.
- **takeover** (``takeover.sql``): RUNNING runs of a worker whose lease lapsed -> ENQUEUED as
  suspects (attempt refunded; claimed alone next time) or, when the run was already alone on
  the worker that died, charged and DEAD after ``max_attempts``. Children -> WAITING.
- **cancel** (``ops_cancel.sql``): ENQUEUED | RUNNING | WAITING -> CANCELLED, whole tree.
- **requeue** (``ops_requeue.sql``): resume (CANCELLED) or retry (ERROR | DEAD) -> ENQUEUED,
  attempts from zero; stopped descendants -> WAITING.
- **start child** (``start_child.sql``): a child row is created RUNNING under its parent's
  worker, or a WAITING/ENQUEUED/RUNNING one is taken over with a fresh token.

A worker holds a lease (its heartbeat): it claims only while its last heartbeat is younger
than the takeover timeout, and a takeover never touches the runs of the worker running it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pgsched.db import Database

if TYPE_CHECKING:
    from pgsched.queues import Queue

#: Statuses in which a run is finished for good (until an operator resumes or retries it).
FINISHED = ("SUCCESS", "ERROR", "CANCELLED", "DEAD")
#: Statuses in which a run still has work to do.
UNFINISHED = ("ENQUEUED", "RUNNING", "WAITING")
STATUSES = ("ENQUEUED", "RUNNING", "WAITING", "SUCCESS", "ERROR", "CANCELLED", "DEAD")


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt; ``None`` fields keep the stored value.

    ``LOST`` means the attempt no longer owned the run and writes nothing. ``release=False``
    (a timeout) keeps the queue slot until the thread that still runs the code returns.
    """

    workflow_id: str
    token: str
    status: str
    output: str | None = None
    error: str | None = None
    not_before: datetime | None = None
    release: bool = True
    #: How many checkpoints the attempt saw stored or wrote. Fewer in the database when the
    #: outcome is written means some were lost (a failover to an asynchronous replica): the
    #: run goes back to its queue to redo them instead of being marked done without them.
    checkpoints: int = 0
    #: A WAITING (parked) outcome: when the wait ends by itself (``None``: only a message
    #: ends it), and which run's recv waits on which topic.
    wake_at: datetime | None = None
    wait_run: str | None = None
    wait_topic: str | None = None


# -- claim ---------------------------------------------------------------------------------


def send_claim(
    conn: Any,
    db: Database,
    queue: Queue,
    limit: int,
    *,
    worker_id: str,
    names: list[str] | str,
    now: datetime,
    suspect: bool = False,
    version: str | None = None,
    live_versions: list[str] | tuple[str, ...] = (),
) -> Any:
    """Send the statements that claim up to ``limit`` runs of ``queue``; return the cursor
    whose rows are the claimed runs.

    Nothing here reads a result before the claim itself, so in pipeline mode a whole claim
    round (finish, claims, commit) costs one network round trip, rate limit included: the
    advisory lock is a statement of its own and the count happens inside the claim.
    ``suspect`` claims runs recovered from a crashed worker instead of ordinary ones.
    ``names``: the workflows the claimer can run, a list or one array literal
    (``pgsched.db.arrays.text_array``).
    ``version`` is the claiming worker's ``App.version``: a run that ran under another
    version still in ``live_versions`` is left to a worker of that version.
    """
    params = {"queue": queue.name, "limit": limit, "names": names, "worker": worker_id,
              "now": now, "suspect": suspect, "version": version,
              "live_versions": list(live_versions)}
    if queue.concurrency is None and queue.rate_limit is None:
        return conn.cursor().execute(db.sql("claim_unlimited"), params)
    rate_limit = window_start = prune_before = None
    if queue.rate_limit is not None:
        rate_limit, period = queue.rate_limit
        window_start = now - timedelta(seconds=period)
        prune_before = window_start - timedelta(seconds=period)
        conn.execute(db.sql("rate_window"), {"schema": db.schema, "queue": queue.name})
    return conn.cursor().execute(
        db.sql("claim"),
        {**params, "limited": queue.concurrency is not None, "rate_limit": rate_limit,
         "window_start": window_start, "prune_before": prune_before},
    )


def claim_statements(queue: Queue) -> int:
    """How many statements ``send_claim`` sends for ``queue``: a rate-limited claim takes the
    queue's advisory lock in a statement of its own first, and both must share a transaction."""
    return 1 if queue.rate_limit is None else 2


def claim(conn: Any, db: Database, queue: Queue, limit: int, **options: Any
          ) -> list[dict[str, Any]]:
    """Claim up to ``limit`` runs of ``queue`` in the caller's transaction (``options`` as for
    ``send_claim``)."""
    if limit <= 0:
        return []
    return list(send_claim(conn, db, queue, limit, **options).fetchall())


# -- finish --------------------------------------------------------------------------------


def send_finish(
    conn: Any,
    db: Database,
    outcomes: list[Outcome],
    *,
    returned: list[str],
    worker_id: str,
    now: datetime,
) -> Any:
    """Send the batched finish without reading its result (in a pipeline a read costs a
    round trip). Rows whose token no longer matches are fenced out by the statement itself;
    ``returned`` are the runs whose threads came back, whose executor and slot are released
    if this worker no longer owns them. The cursor's rows are the outcomes recorded."""
    back = set(returned)
    # A timeout keeps the slot while its thread runs; if the thread is back already, release.
    writes = [o if o.release or o.workflow_id not in back else replace(o, release=True)
              for o in outcomes if o.status != "LOST"]
    cursor = conn.cursor().execute(
        db.sql("finish"),
        {
            "ids": [o.workflow_id for o in writes],
            "tokens": [o.token for o in writes],
            "statuses": [o.status for o in writes],
            "outputs": [o.output for o in writes],
            "errors": [o.error for o in writes],
            "not_befores": [o.not_before for o in writes],
            "releases": [o.release for o in writes],
            "checkpoints": [o.checkpoints for o in writes],
            "wake_ats": [o.wake_at for o in writes],
            "wait_runs": [o.wait_run for o in writes],
            "wait_topics": [o.wait_topic for o in writes],
            "returned": returned,
            "worker": worker_id,
            "channel": db.channel,
            "now": now,
        },
    )
    parked = [o.workflow_id for o in writes if o.status == "WAITING"]
    if parked:
        # A statement of its own, after the finish (see wake_parked.sql for why).
        conn.cursor().execute(db.sql("wake_parked"),
                              {"ids": parked, "now": now, "channel": db.channel})
    return cursor


def finish(
    conn: Any, db: Database, outcomes: list[Outcome], *, worker_id: str, now: datetime
) -> set[str]:
    """Record ``outcomes`` of returned threads; return the ids whose outcome was written."""
    cursor = send_finish(conn, db, outcomes, returned=[o.workflow_id for o in outcomes],
                         worker_id=worker_id, now=now)
    return {row["id"] for row in cursor.fetchall()}


def release(
    conn: Any, db: Database, returned: list[str], *, worker_id: str, now: datetime
) -> None:
    """Release the executor and slot of runs whose threads returned after this worker lost
    them (cancelled or timed out while running)."""
    if returned:
        send_finish(conn, db, [], returned=returned, worker_id=worker_id, now=now).fetchall()


# -- waking parked runs ---------------------------------------------------------------------


def wake_due(conn: Any, db: Database, *, now: datetime, limit: int = 1000
             ) -> tuple[int, datetime | None]:
    """Re-queue up to ``limit`` parked runs whose ``wake_at`` has passed; return how many,
    and when the next parked run comes due."""
    row = conn.execute(db.sql("wake_due"),
                       {"now": now, "limit": limit, "channel": db.channel}).fetchone()
    return int(row["woken"]), row["next_wake"]


def send_message(conn: Any, db: Database, params: dict[str, Any]) -> dict[str, Any] | None:
    """Deliver a message in the caller's transaction, waking the recipient's top-level run
    if it is parked waiting for it. Returns the send's row (``status`` of the recipient,
    ``seq`` of the message, ``None`` when its idempotency key was used already), or ``None``
    when no run has that id."""
    root = conn.execute(db.sql("message_root"), {"id": params["id"]}).fetchone()
    if root is None:
        return None
    return conn.execute(db.sql("send_message"),
                        {**params, "root": root["id"], "channel": db.channel}).fetchone()


# -- leaving a worker ----------------------------------------------------------------------


def handback(
    conn: Any, db: Database, ids: list[str], *, worker_id: str, now: datetime
) -> list[str]:
    """Return runs this worker will not finish to their queues, attempts refunded."""
    if not ids:
        return []
    rows = conn.execute(
        db.sql("handback"),
        {"worker": worker_id, "ids": ids, "now": now, "channel": db.channel},
    ).fetchall()
    return [row["id"] for row in rows]


def owned_runs(conn: Any, db: Database, worker_id: str) -> list[str]:
    """The top-level runs the database says this worker runs."""
    rows = conn.execute(db.sql("worker_runs"), {"worker": worker_id}).fetchall()
    return [row["id"] for row in rows]


def takeover(
    conn: Any, db: Database, *, worker_id: str, timeout_s: float, now: datetime
) -> list[dict[str, Any]]:
    """Take over the runs of workers whose lease lapsed (never ``worker_id``'s own)."""
    return conn.execute(
        db.sql("takeover"),
        {"worker": worker_id, "timeout_s": timeout_s, "now": now, "channel": db.channel},
    ).fetchall()


def release_stranded_slots(conn: Any, db: Database) -> list[dict[str, Any]]:
    """Free slots held by runs that neither run nor may still run. Needs REPEATABLE READ
    (see the statement); a serialization failure means a claim raced it: try again later."""
    return conn.execute(db.sql("release_stranded_slots")).fetchall()


# -- operators -----------------------------------------------------------------------------


def cancel_tree(conn: Any, db: Database, workflow_id: str, *, now: datetime) -> list[str]:
    """Cancel a run and its unfinished descendants; return the ids cancelled."""
    rows = conn.execute(db.sql("ops_cancel"), {"id": workflow_id, "now": now}).fetchall()
    return [row["id"] for row in rows]


def requeue_tree(
    conn: Any, db: Database, workflow_id: str, *, from_statuses: list[str], now: datetime
) -> list[dict[str, Any]]:
    """Put a stopped run back on its queue (descendants WAITING); rows: id, depth."""
    return conn.execute(
        db.sql("ops_requeue"),
        {"id": workflow_id, "from_statuses": from_statuses, "now": now, "channel": db.channel},
    ).fetchall()


# -- inside a running run ------------------------------------------------------------------


def start_child(conn: Any, db: Database, params: dict[str, Any]) -> dict[str, Any] | None:
    """Create a child run under its parent's worker, or take over a WAITING one; ``None``
    when the child already finished (the caller reads it)."""
    return conn.execute(db.sql("start_child"), params).fetchone()


def checkpoint(conn: Any, db: Database, params: dict[str, Any]) -> bool:
    """Write a step's checkpoint if the attempt still owns the run; return whether it did."""
    return conn.execute(db.sql("checkpoint"), params).fetchone() is not None


def fence(conn: Any, db: Database, workflow_id: str, token: str) -> bool:
    """Lock the run for the caller's transaction if this attempt still owns it."""
    row = conn.execute(db.sql("fence"), {"id": workflow_id, "token": token}).fetchone()
    return row is not None
