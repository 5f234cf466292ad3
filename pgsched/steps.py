"""Calling steps, transactions and child workflows from inside a running workflow.

Each call takes the next step number. If the run being resumed already recorded that step,
its stored output is returned without running the code again; otherwise the code runs and
its output is checkpointed, fenced by the claim's attempt token.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from loguru import logger

from pgsched import lifecycle
from pgsched.backoff import backoff_seconds
from pgsched.clock import utcnow
from pgsched.context import RunContext, current_run
from pgsched.errors import PermanentError, WorkflowFailed
from pgsched.registry import StepSpec, WorkflowSpec
from pgsched.retrying import retry_transient
from pgsched.serialization import dumps, encode_inputs, from_jsonable

_TERMINAL_FAILURES = ("ERROR", "DEAD", "CANCELLED")


def call_step(ctx: RunContext, spec: StepSpec, args: tuple, kwargs: dict) -> Any:
    number = ctx.take_step_number()
    saved = ctx.replay(number, spec.name)
    if saved is not None:
        return from_jsonable(saved["output"])
    started = utcnow()
    attempt = 1
    while True:
        try:
            result = spec.fn(*args, **kwargs)
            break
        except PermanentError:
            raise
        except Exception as exc:
            if attempt > spec.retries:
                raise
            delay = backoff_seconds(attempt, spec.backoff, spec.max_backoff)
            logger.bind(component="step").warning(
                "step {} of {} failed (attempt {}/{}): {!r}; retrying in {:.2f}s",
                spec.name, ctx.workflow_id, attempt, spec.retries + 1, exc, delay,
            )
            time.sleep(delay)
            attempt += 1
    output = dumps(result, f"result of step {spec.name!r}")
    saved = _record(ctx, number, spec.name, "step", output, started, attempts=attempt)
    return result if saved is None else from_jsonable(saved["output"])


def _record(
    ctx: RunContext, number: int, name: str, kind: str, output: str, started: datetime,
    **extra: Any,
) -> dict[str, Any] | None:
    """Checkpoint a finished step through transient database failures.

    One fenced statement is its own transaction (autocommit spares BEGIN and COMMIT). If a
    try fails after the server committed it (the reply was lost), the next try finds the
    checkpoint and returns it instead of writing it twice; ``None`` means this call wrote it.
    """
    tried = False

    def write() -> dict[str, Any] | None:
        nonlocal tried
        if tried:
            saved = _stored_step(ctx, number)
            if saved is not None:
                ctx.checkpoints[number] = saved
                return saved
        tried = True
        with ctx.db.connection(autocommit=True) as conn:
            ctx.checkpoint(conn, number, name, kind, output, started, **extra)
        return None

    return retry_transient(write, f"checkpointing step {number} of run {ctx.workflow_id}")


def _stored_step(ctx: RunContext, number: int) -> dict[str, Any] | None:
    with ctx.db.connection(autocommit=True) as conn:
        rows = conn.execute(ctx.db.sql("load_steps"), {"id": ctx.workflow_id}).fetchall()
    return next((row for row in rows if row["step_number"] == number), None)


def call_transaction(ctx: RunContext, spec: StepSpec, args: tuple, kwargs: dict) -> Any:
    number = ctx.take_step_number()
    saved = ctx.replay(number, spec.name)
    if saved is not None:
        return from_jsonable(saved["output"])
    started = utcnow()
    tried = False

    def attempt() -> Any:
        """The step's writes and its checkpoint commit together, or neither does. A try that
        failed transiently may have committed (the COMMIT's reply was lost): the next try
        looks for the checkpoint first, so the writes happen exactly once."""
        nonlocal tried
        if tried:
            saved = _stored_step(ctx, number)
            if saved is not None:
                ctx.checkpoints[number] = saved
                return from_jsonable(saved["output"])
        tried = True
        with ctx.db.connection() as conn, conn.transaction():
            ctx.fence(conn)
            result = spec.fn(conn, *args, **kwargs)
            output = dumps(result, f"result of transaction {spec.name!r}")
            ctx.checkpoint(conn, number, spec.name, "transaction", output, started)
        return result

    return retry_transient(attempt, f"transaction step {number} of run {ctx.workflow_id}")


def call_child(ctx: RunContext, spec: WorkflowSpec, args: tuple, kwargs: dict) -> Any:
    """Run a child workflow inline, in its own row with its own checkpoints.

    Inline (rather than enqueued and awaited) so a parent never blocks a worker thread
    waiting for a child that needs a thread itself.
    """
    from pgsched.runs import NON_RETRYABLE, run_body

    number = ctx.take_step_number()
    saved = ctx.replay(number, spec.name)
    if saved is not None:
        return from_jsonable(saved["output"])
    started = utcnow()
    child_id = f"{ctx.workflow_id}/{number}"
    params = {
        "id": child_id,
        "name": spec.name,
        "queue": ctx.queue,
        "inputs": encode_inputs(args, kwargs),
        "max_attempts": 1,
        "parent_id": ctx.workflow_id,
        "worker": ctx.worker_id,
        "now": utcnow(),
    }

    def start() -> dict[str, Any]:
        with ctx.db.connection() as conn:
            ctx.fence(conn)
            row = lifecycle.start_child(conn, ctx.db, params)
            if row is None:
                row = conn.execute(ctx.db.sql("get_run"), {"id": child_id}).fetchone()
        return row

    row = retry_transient(start, f"starting child run {child_id}")
    if row["status"] == "SUCCESS":
        output = json.dumps(row["output"])
    elif row["status"] in _TERMINAL_FAILURES:
        _raise_child_failure(child_id, row)
    else:
        child = RunContext(
            db=ctx.db,
            workflow_id=child_id,
            workflow_name=spec.name,
            token=str(row["attempt_token"]),
            worker_id=ctx.worker_id,
            queue=ctx.queue,
        )
        if row["has_steps"]:
            load_checkpoints(child)
        try:
            result = run_body(child, spec, args, kwargs, record=True)
        except NON_RETRYABLE as exc:
            raise PermanentError(f"child workflow {child_id} failed: {exc}") from exc
        output = dumps(result, f"result of child workflow {spec.name!r}")
    saved = _record(ctx, number, spec.name, "child", output, started, child_id=child_id)
    return from_jsonable(json.loads(output) if saved is None else saved["output"])


def _raise_child_failure(child_id: str, row: dict[str, Any]) -> None:
    """A child that failed for a reason a retry cannot fix fails its parent for good; any
    other failure is retried with the parent, whose next attempt re-runs the child."""
    from pgsched.runs import NON_RETRYABLE_NAMES

    failure = WorkflowFailed(child_id, row["status"], row["error"])
    if row["status"] == "CANCELLED" or (row["error"] or {}).get("type") in NON_RETRYABLE_NAMES:
        raise PermanentError(str(failure)) from failure
    raise failure


def load_checkpoints(ctx: RunContext) -> None:
    def load() -> list[dict[str, Any]]:
        with ctx.db.connection(autocommit=True) as conn:
            return conn.execute(ctx.db.sql("load_steps"), {"id": ctx.workflow_id}).fetchall()

    rows = retry_transient(load, f"loading the checkpoints of run {ctx.workflow_id}")
    ctx.checkpoints = {row["step_number"]: row for row in rows}


def active_run() -> RunContext | None:
    return current_run.get()
