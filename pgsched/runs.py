"""Executing one claimed run and deciding what its outcome means for the row."""

from __future__ import annotations

import asyncio
import json
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from loguru import logger

from pgsched.backoff import backoff_seconds
from pgsched.clock import utcnow
from pgsched.context import RunContext, current_run
from pgsched.errors import (
    ClaimLost,
    DeterminismError,
    JobTimeout,
    PermanentError,
    SerializationError,
)
from pgsched.registry import WorkflowSpec
from pgsched.serialization import decode_inputs, dumps

if TYPE_CHECKING:
    from pgsched.db import Database

#: Failures that a retry cannot fix: the run goes to ERROR at once.
NON_RETRYABLE = (PermanentError, DeterminismError, SerializationError)


@dataclass(frozen=True)
class Outcome:
    """What the worker writes back for a run; ``None`` fields keep the stored value."""

    workflow_id: str
    token: str
    status: str
    output: str | None = None
    error: str | None = None
    not_before: datetime | None = None


def error_json(exc: BaseException) -> str:
    return json.dumps(
        {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        }
    )


def run_body(
    ctx: RunContext,
    spec: WorkflowSpec,
    args: tuple,
    kwargs: dict,
    *,
    record: bool = False,
    timeout: float | None = None,
) -> Any:
    """Run the workflow function with ``ctx`` as the current run.

    With ``record`` (child workflows) the run's own row is finished here; top-level runs are
    finished by the worker in batches.
    """
    reset = current_run.set(ctx)
    try:
        if spec.is_async:
            result = asyncio.run(_with_timeout(spec.fn(*args, **kwargs), timeout))
        else:
            result = spec.fn(*args, **kwargs)
    except ClaimLost:
        raise
    except BaseException as exc:
        if record:
            finish_now(ctx, Outcome(ctx.workflow_id, ctx.token, "ERROR", error=error_json(exc)))
        raise
    finally:
        current_run.reset(reset)
    if record:
        output = dumps(result, f"result of workflow {spec.name!r}")
        finish_now(ctx, Outcome(ctx.workflow_id, ctx.token, "SUCCESS", output=output))
    return result


async def _with_timeout(coro: Any, timeout: float | None) -> Any:
    """Await ``coro``; past ``timeout`` cancel it for real (unlike a thread, a task can be)."""
    if not timeout:
        return await coro
    try:
        return await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError:
        raise JobTimeout(f"cancelled after its timeout of {timeout:g}s") from None


def finish_now(ctx: RunContext, outcome: Outcome) -> None:
    with ctx.db.connection(autocommit=True) as conn:
        write_outcomes(conn, ctx.db.sql("finish"), [outcome])


def finish_params(outcomes: list[Outcome], now: datetime) -> dict[str, Any]:
    """Parameters of ``finish.sql``: one array per column, so a batch is one statement."""
    return {
        "ids": [o.workflow_id for o in outcomes],
        "tokens": [o.token for o in outcomes],
        "statuses": [o.status for o in outcomes],
        "outputs": [o.output for o in outcomes],
        "errors": [o.error for o in outcomes],
        "not_befores": [o.not_before for o in outcomes],
        "now": now,
    }


def write_outcomes(conn: Any, finish_sql: str, outcomes: list[Outcome]) -> set[str]:
    """Write a batch of outcomes in one statement; return the ids this worker still owned."""
    rows = conn.execute(finish_sql, finish_params(outcomes, utcnow())).fetchall()
    return {row["id"] for row in rows}


def execute(ctx: RunContext, spec: WorkflowSpec, claim: dict[str, Any]) -> Outcome | None:
    """Run a claimed top-level run; ``None`` means this attempt lost the run and writes nothing."""
    token = ctx.token
    try:
        args, kwargs = decode_inputs(claim["inputs"])
        result = run_body(ctx, spec, args, kwargs, timeout=claim.get("timeout_s"))
        output = dumps(result, f"result of workflow {spec.name!r}")
    except ClaimLost:
        return None
    except JobTimeout as exc:
        return Outcome(ctx.workflow_id, token, "CANCELLED", error=error_json(exc))
    except NON_RETRYABLE as exc:
        return Outcome(ctx.workflow_id, token, "ERROR", error=error_json(exc))
    except Exception as exc:
        attempts, limit = claim["attempts"], claim["max_attempts"]
        if attempts >= limit:
            return Outcome(ctx.workflow_id, token, "DEAD", error=error_json(exc))
        delay = backoff_seconds(attempts)
        return Outcome(
            ctx.workflow_id, token, "ENQUEUED", error=error_json(exc),
            not_before=utcnow() + timedelta(seconds=delay),
        )
    return Outcome(ctx.workflow_id, token, "SUCCESS", output=output)


def execute_claimed(
    db: Database, spec: WorkflowSpec, row: dict[str, Any], *, worker_id: str, queue: str
) -> Outcome:
    """Run one claimed row to an outcome, resuming from its checkpoints.

    The body of a worker's run thread, and of ``pgsched.testing``'s in-process runner, so
    tests exercise exactly what workers do. A crash of the runner itself becomes an ERROR
    outcome; a lost claim becomes LOST, which writes nothing.
    """
    from pgsched.steps import load_checkpoints

    token = str(row["attempt_token"])
    ctx = RunContext(db=db, workflow_id=row["id"], workflow_name=row["name"], token=token,
                     worker_id=worker_id, queue=queue)
    try:
        if row["has_steps"]:
            load_checkpoints(ctx)
        outcome = execute(ctx, spec, row)
    except Exception as exc:
        logger.bind(component="run").exception("run {} crashed the runner", row["id"])
        outcome = Outcome(row["id"], token, "ERROR", error=error_json(exc))
    return outcome or Outcome(row["id"], token, "LOST")
