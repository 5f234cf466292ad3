"""``pgsched enqueue QUEUE NAME --args JSON``: an operator adds a run without the app's code.

The row is the one ``queue.enqueue`` writes (same statement, same NOTIFY), built from the
workflow's registered name and JSON arguments. The CLI cannot check the arguments against
the function, so it checks what the database knows: that a worker declared the queue, and
whether a live worker has the workflow's code (if none has, the run waits, and it says so).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import click

from pgsched import operations
from pgsched.cli.common import cli, echo_json, json_option, settings_of
from pgsched.cli.workflows import open_database, parse_duration
from pgsched.clock import utcnow
from pgsched.db import Database
from pgsched.errors import ConfigurationError, InvalidOperation
from pgsched.queues import new_id, wake_payload
from pgsched.serialization import encode_inputs


def insert_run(db: Database, *, name: str, queue: str, args: list[Any], kwargs: dict[str, Any],
               max_attempts: int, workflow_id: str | None = None, priority: int = 0,
               delay: timedelta | None = None, schedule_name: str | None = None,
               now: datetime | None = None) -> str:
    """Insert one ENQUEUED run and wake the queue's workers; return its id."""
    now = now or utcnow()
    not_before = now + (delay or timedelta())
    run_id = workflow_id or new_id()
    params = {
        "id": run_id, "name": name, "queue": queue, "priority": priority, "dedup_key": None,
        "inputs": encode_inputs(tuple(args), kwargs), "max_attempts": max_attempts,
        "timeout_s": None, "not_before": not_before,
        "scheduled_at": now if schedule_name else None, "schedule_name": schedule_name,
        "parent_id": None, "forked_from": None, "now": now, "channel": db.channel,
        "wake": wake_payload(queue, not_before, now), "trace_context": None,
    }
    with db.connection() as conn:
        if conn.execute(db.sql("enqueue"), params).fetchone() is None:
            raise InvalidOperation(
                f"a run with id {run_id!r} already exists; see `pgsched workflows show "
                f"{run_id}`, or choose another --workflow-id"
            )
    return run_id


def waiting_reason(db: Database, name: str, queue: str) -> str | None:
    """Why a new run of ``name`` on ``queue`` would not start now, or None if it would."""
    with db.connection() as conn:
        row = conn.execute(db.sql("cli_workflow_known"),
                           {"name": name, "queue": queue,
                            "live_s": operations.LIVE_WORKER_SECONDS}).fetchone()
    if not row["has_code"]:
        return (f"no live worker has workflow {name!r}: the run waits until a worker whose app "
                "defines it starts (`pgsched workers` lists them)")
    if not row["serves_queue"]:
        return (f"no live worker with workflow {name!r} serves queue {queue!r}: the run waits "
                "until one does")
    return None


def _json_value(text: str, kind: type, what: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc}): {text!r}", param_hint=what) from None
    if not isinstance(value, kind):
        raise click.BadParameter(
            f"must be a JSON {'array' if kind is list else 'object'}, got {text!r}",
            param_hint=what)
    return value


@cli.command("enqueue")
@click.argument("queue")
@click.argument("name")
@click.option("--args", "args_json", default="[]", show_default=True, metavar="JSON",
              help="Positional arguments as a JSON array, e.g. '[42, \"a@b.c\"]'.")
@click.option("--kwargs", "kwargs_json", default="{}", show_default=True, metavar="JSON",
              help="Keyword arguments as a JSON object.")
@click.option("--workflow-id", default=None, help="The run's id (default: a new UUIDv7).")
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--delay", default=None, metavar="DURATION",
              help="Start no earlier than this from now (90s, 15m, 2h).")
@click.option("--max-attempts", type=click.IntRange(min=1), default=None,
              help="Attempts before the run is dead-lettered (default PGSCHED_MAX_ATTEMPTS).")
@json_option
@click.pass_context
def enqueue_command(ctx: click.Context, queue: str, name: str, args_json: str,
                    kwargs_json: str, workflow_id: str | None, priority: int,
                    delay: str | None, max_attempts: int | None, as_json: bool) -> None:
    """Add a run of workflow NAME (its registered name) to QUEUE, as the app's
    `queue.enqueue` would; a worker with the code runs it."""
    args = _json_value(args_json, list, "--args")
    kwargs = _json_value(kwargs_json, dict, "--kwargs")
    db = open_database(ctx)
    with db.connection() as conn:
        known = conn.execute(db.sql("ops_queue_known"), {"queue": queue}).fetchone()["known"]
    if not known:
        raise ConfigurationError(
            f"no worker has declared queue {queue!r}; `pgsched queues` lists the known ones "
            "(a queue appears when a worker whose app defines it starts)"
        )
    run_id = insert_run(db, name=name, queue=queue, args=args, kwargs=kwargs,
                        max_attempts=max_attempts or settings_of(ctx).max_attempts,
                        workflow_id=workflow_id, priority=priority,
                        delay=parse_duration(delay) if delay else None)
    reason = waiting_reason(db, name, queue)
    if as_json:
        echo_json({"id": run_id, "name": name, "queue": queue, "status": "ENQUEUED",
                   "waiting_for_worker": reason})
        return
    click.echo(f"enqueued {run_id} ({name} on queue {queue})")
    if reason:
        click.echo(f"warning: {reason}", err=True)
