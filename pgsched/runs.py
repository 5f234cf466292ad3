"""Executing one claimed run and deciding what its outcome means for the row."""

from __future__ import annotations

import asyncio
import json
import traceback
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from loguru import logger

from pgsched import lifecycle
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
from pgsched.lifecycle import Outcome
from pgsched.registry import WorkflowSpec
from pgsched.retrying import retry_transient
from pgsched.serialization import decode_inputs, dumps

if TYPE_CHECKING:
    from pgsched.db import Database

#: Failures that a retry cannot fix: the run goes to ERROR at once.
NON_RETRYABLE = (PermanentError, DeterminismError, SerializationError)
#: Their names, for a child's stored error read back by its parent.
NON_RETRYABLE_NAMES = frozenset(cls.__name__ for cls in NON_RETRYABLE)


def _storable(text: str) -> str:
    """``text`` without what jsonb refuses (U+0000, lone surrogates), made visible instead."""
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_json(exc: BaseException) -> str:
    """The stored form of a failure. An exception's message or traceback may hold anything a
    job put there; what jsonb cannot store is escaped, so recording a failure never fails."""
    return json.dumps(
        {
            "type": type(exc).__name__,
            "message": _storable(str(exc)),
            "traceback": _storable(
                "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))),
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
        output = dumps(result, f"result of workflow {spec.name!r}") if record else None
    except ClaimLost:
        raise
    except BaseException as exc:
        if record:
            finish_now(ctx, Outcome(ctx.workflow_id, ctx.token, "ERROR", error=error_json(exc)))
        raise
    finally:
        current_run.reset(reset)
    if record:
        finish_now(ctx, Outcome(ctx.workflow_id, ctx.token, "SUCCESS", output=output,
                                checkpoints=len(ctx.checkpoints)))
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
    """Record a child run's outcome at once (its parent's thread goes on with the result)."""

    def write() -> set[str]:
        with ctx.db.connection(autocommit=True) as conn:
            return lifecycle.finish(conn, ctx.db, [outcome], worker_id=ctx.worker_id,
                                    now=utcnow())

    if not retry_transient(write, f"recording the outcome of run {ctx.workflow_id}"):
        raise ClaimLost(
            f"run {ctx.workflow_id} is no longer owned by this attempt (cancelled, timed out or "
            "taken over); its outcome was not recorded"
        )


def execute(ctx: RunContext, spec: WorkflowSpec, claim: dict[str, Any]) -> Outcome | None:
    """Run a claimed top-level run; ``None`` means this attempt lost the run and writes nothing.

    Any ``BaseException`` a job raises (``sys.exit()``, ``KeyboardInterrupt``, an awaited
    task's ``CancelledError``) is a failed attempt like any exception: the thread, the slot
    and the retry budget all behave as for a ``ValueError``.
    """
    outcome = _attempt(ctx, spec, claim)
    # What the finish checks against the database: checkpoints lost since are redone.
    return None if outcome is None else replace(outcome, checkpoints=len(ctx.checkpoints))


def _attempt(ctx: RunContext, spec: WorkflowSpec, claim: dict[str, Any]) -> Outcome | None:
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
    except BaseException as exc:
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
    except BaseException as exc:
        logger.bind(component="run").exception("run {} crashed the runner", row["id"])
        outcome = Outcome(row["id"], token, "ERROR", error=error_json(exc))
    return outcome or Outcome(row["id"], token, "LOST")
