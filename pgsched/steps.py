"""Calling steps, transactions and child workflows from inside a running workflow.

Each call takes the next step number. If the run being resumed already recorded that step,
its stored output is returned without running the code again; otherwise the code runs and
its output is checkpointed, fenced by the claim's attempt token.
"""

from __future__ import annotations

import json
import time
from typing import Any

from loguru import logger

from pgsched.backoff import backoff_seconds
from pgsched.clock import utcnow
from pgsched.context import RunContext, current_run
from pgsched.errors import PermanentError, WorkflowFailed
from pgsched.registry import StepSpec, WorkflowSpec
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
    # One fenced statement is its own transaction: autocommit spares BEGIN and COMMIT.
    with ctx.db.connection(autocommit=True) as conn:
        ctx.checkpoint(conn, number, spec.name, "step", output, started, attempts=attempt)
    return result


def call_transaction(ctx: RunContext, spec: StepSpec, args: tuple, kwargs: dict) -> Any:
    number = ctx.take_step_number()
    saved = ctx.replay(number, spec.name)
    if saved is not None:
        return from_jsonable(saved["output"])
    started = utcnow()
    with ctx.db.connection() as conn, conn.transaction():
        ctx.fence(conn)
        result = spec.fn(conn, *args, **kwargs)
        output = dumps(result, f"result of transaction {spec.name!r}")
        ctx.checkpoint(conn, number, spec.name, "transaction", output, started)
    return result


def call_child(ctx: RunContext, spec: WorkflowSpec, args: tuple, kwargs: dict) -> Any:
    """Run a child workflow inline, in its own row with its own checkpoints.

    Inline (rather than enqueued and awaited) so a parent never blocks a worker thread
    waiting for a child that needs a thread itself.
    """
    from pgsched.runs import run_body

    number = ctx.take_step_number()
    saved = ctx.replay(number, spec.name)
    if saved is not None:
        return from_jsonable(saved["output"])
    started = utcnow()
    child_id = f"{ctx.workflow_id}/{number}"
    now = utcnow()
    with ctx.db.connection() as conn:
        ctx.fence(conn)
        row = conn.execute(
            ctx.db.sql("start_child"),
            {
                "id": child_id,
                "name": spec.name,
                "queue": ctx.queue,
                "inputs": encode_inputs(args, kwargs),
                "max_attempts": 1,
                "parent_id": ctx.workflow_id,
                "worker": ctx.worker_id,
                "now": now,
            },
        ).fetchone()
        if row is None:
            row = conn.execute(ctx.db.sql("get_run"), {"id": child_id}).fetchone()
    if row["status"] == "SUCCESS":
        output = json.dumps(row["output"])
    elif row["status"] in _TERMINAL_FAILURES:
        raise WorkflowFailed(child_id, row["status"], row["error"])
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
        result = run_body(child, spec, args, kwargs, record=True)
        output = dumps(result, f"result of child workflow {spec.name!r}")
    with ctx.db.connection(autocommit=True) as conn:
        ctx.checkpoint(conn, number, spec.name, "child", output, started, child_id=child_id)
    return from_jsonable(json.loads(output))


def load_checkpoints(ctx: RunContext) -> None:
    with ctx.db.connection(autocommit=True) as conn:
        rows = conn.execute(ctx.db.sql("load_steps"), {"id": ctx.workflow_id}).fetchall()
    ctx.checkpoints = {row["step_number"]: row for row in rows}


def active_run() -> RunContext | None:
    return current_run.get()
