"""Messages to runs and events from runs: ``App.send``, ``pgsched.set_event``,
``App.get_event``.

A message is a row for its recipient run (``pgsched.recv`` takes it, see ``pgsched.waits``);
sending one wakes the recipient if it is parked waiting for it. Sent from inside a workflow,
a message is a transaction step of the sender: it is sent once however often the sender
replays or retries. An event is a value a run publishes under a key; the last one set wins
and any process can read it, waiting for it with LISTEN rather than polling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgsched import lifecycle
from pgsched.clock import utcnow
from pgsched.context import RunContext, current_run
from pgsched.errors import MessageUndeliverable, WorkflowNotFound
from pgsched.serialization import dumps, from_jsonable
from pgsched.steps import commit_step
from pgsched.waits import check_name, running

if TYPE_CHECKING:
    from pgsched.db import Database


def send(db: Database, workflow_id: str, message: Any, *, topic: str,
         idempotency_key: str | None) -> None:
    """Deliver ``message`` to run ``workflow_id`` on ``topic`` (see ``App.send``)."""
    check_name(topic, "topic")
    params = {"id": workflow_id, "topic": topic, "key": idempotency_key,
              "payload": dumps(message, f"message to run {workflow_id!r}")}
    ctx = current_run.get()
    if ctx is None:
        with db.connection() as conn, conn.transaction():
            _deliver(conn, db, {**params, "now": utcnow()})
        return
    name = f"send:{topic}"
    number = ctx.take_step_number("app.send()")
    if ctx.replay(number, name) is None:
        commit_step(ctx, number, name, "send",
                    lambda conn: _deliver(conn, ctx.db, {**params, "now": utcnow()}))


def _deliver(conn: Any, db: Database, params: dict[str, Any]) -> None:
    row = lifecycle.send_message(conn, db, params)
    if row is None or row["status"] is None:
        raise WorkflowNotFound(
            f"no run with id {params['id']!r} to send a message to; check the id "
            "(`pgsched workflows list`)")
    if row["status"] not in lifecycle.UNFINISHED:
        raise MessageUndeliverable(
            f"run {params['id']!r} is {row['status']}: a message to it would never be read. "
            f"Resume or retry it first (`pgsched workflows resume {params['id']}`) if it "
            "should still receive messages")


def set_event(key: str, value: Any) -> None:
    """Publish ``value`` under ``key`` for the current run; ``App.get_event`` reads it from
    anywhere at once. The last value set for a key wins. A transaction step of the run:
    published once however often the workflow replays."""
    ctx = running("pgsched.set_event()")
    check_name(key, "pgsched.set_event()'s key")
    payload = dumps(value, f"value of event {key!r}")
    name = f"event:{key}"
    number = ctx.take_step_number("pgsched.set_event()")
    if ctx.replay(number, name) is None:
        commit_step(ctx, number, name, "event", lambda conn: _publish(conn, ctx, key, payload))


def _publish(conn: Any, ctx: RunContext, key: str, payload: str) -> None:
    conn.execute(ctx.db.sql("set_event"),
                 {"id": ctx.workflow_id, "key": key, "value": payload, "now": utcnow(),
                  "channel": events_channel(ctx.db)})


def get_event(db: Database, workflow_id: str, key: str, timeout: float) -> Any:
    """The value run ``workflow_id`` set for ``key``, waiting up to ``timeout`` seconds for
    it to be set; ``None`` if it was not set by then.

    LISTEN comes before the first read, so a value set between the read and the wait still
    wakes it. The wait is counted in psycopg's own timeouts (the real clock, also under
    freezegun), slice by slice.
    """
    from psycopg import sql

    with db.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(events_channel(db))))
        waited = 0.0
        while True:
            row = conn.execute(db.sql("get_event"), {"id": workflow_id, "key": key}).fetchone()
            found, value = event_value(row, workflow_id, key)
            if found:
                return value
            if waited >= timeout:
                return None
            slice_ = min(0.5, timeout - waited)
            if not any(n.payload == workflow_id
                       for n in conn.notifies(timeout=slice_, stop_after=1)):
                waited += slice_


def event_value(row: dict[str, Any], workflow_id: str, key: str) -> tuple[bool, Any]:
    """What a ``get_event.sql`` row says: ``(True, value)`` once set, ``(False, None)`` not
    yet; WorkflowNotFound for an unknown run (``get_event`` and ``aio.get_event`` alike)."""
    if not row["known"]:
        raise WorkflowNotFound(
            f"no run with id {workflow_id!r} to read event {key!r} of; check the id "
            "(`pgsched workflows list`)")
    return (True, from_jsonable(row["value"])) if row["found"] else (False, None)


def events_channel(db: Database) -> str:
    """The NOTIFY channel of a schema's events (``get_event`` listens there)."""
    return f"{db.channel}_events"
