"""Calling steps, transactions and child workflows from inside a running workflow.

Each call made by the workflow body takes the next step number, at the moment of the call
(an async step's or child's number is taken before its coroutine is first awaited), so
``asyncio.gather(a(), b())`` numbers ``a`` before ``b`` whichever finishes first. If the run
being resumed already recorded that step, its stored output is returned without running the
code again; otherwise the code runs and its output is checkpointed, fenced by the claim's
attempt token.

Steps compose: a step called while another step's code runs is a plain call, part of the
outer step (one checkpoint, the outer's; retried with it). A transaction step or a child
workflow called there is refused (``StepPlacementError``): its commit, or its run, would be
repeated by every retry of the outer step, so it could not be exactly once. So is any
numbered call from a thread, or an asyncio task, other than the workflow body's: its number
would depend on timing (``context.check_in_body``).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import psycopg
from loguru import logger

from pgsched import lifecycle
from pgsched.backoff import backoff_seconds
from pgsched.clock import utcnow
from pgsched.context import RunContext, current_run, current_step
from pgsched.errors import PermanentError, StepPlacementError, WorkflowFailed
from pgsched.registry import StepSpec, WorkflowSpec
from pgsched.retrying import retry_transient
from pgsched.serialization import dumps, encode_inputs, from_jsonable

_TERMINAL_FAILURES = ("ERROR", "DEAD", "CANCELLED")


def call_step(ctx: RunContext, spec: StepSpec, args: tuple, kwargs: dict) -> Any:
    """A step called in a run: checkpointed from the workflow body, a plain call inside a
    running step. An async step returns an awaitable (in a sync workflow, its result)."""
    if current_step.get() is not None:
        return spec.fn(*args, **kwargs)
    number = ctx.take_step_number(f"step {spec.name!r}")
    saved = ctx.replay(number, spec.name)
    if spec.is_async:
        return _awaited_by(ctx, _async_step(ctx, spec, number, saved, args, kwargs))
    if saved is not None:
        return from_jsonable(saved["output"])
    started = utcnow()
    attempt = 1
    while True:
        entered = current_step.set(("step", spec.name))
        try:
            result = spec.fn(*args, **kwargs)
            break
        except PermanentError:
            raise
        except Exception as exc:
            if attempt > spec.retries:
                raise
            time.sleep(_retry_delay(ctx, spec, attempt, exc))
            attempt += 1
        finally:
            current_step.reset(entered)
    output = dumps(result, f"result of step {spec.name!r}")
    saved = record_step(ctx, number, spec.name, "step", output, started, attempts=attempt)
    return result if saved is None else from_jsonable(saved["output"])


async def _async_step(
    ctx: RunContext, spec: StepSpec, number: int, saved: dict[str, Any] | None,
    args: tuple, kwargs: dict,
) -> Any:
    """The body of an async step call whose number was taken when the call was made."""
    if saved is not None:
        return from_jsonable(saved["output"])
    started = utcnow()
    attempt = 1
    while True:
        entered = current_step.set(("step", spec.name))
        try:
            result = await spec.fn(*args, **kwargs)
            break
        except PermanentError:
            raise
        except Exception as exc:
            if attempt > spec.retries:
                raise
            delay = _retry_delay(ctx, spec, attempt, exc)
        finally:
            current_step.reset(entered)
        await asyncio.sleep(delay)
        attempt += 1
    output = dumps(result, f"result of step {spec.name!r}")
    # The write blocks; in a thread, so steps gathered with this one go on meanwhile.
    saved = await asyncio.to_thread(record_step, ctx, number, spec.name, "step", output, started,
                                    attempts=attempt)
    return result if saved is None else from_jsonable(saved["output"])


def _retry_delay(ctx: RunContext, spec: StepSpec, attempt: int, exc: Exception) -> float:
    delay = backoff_seconds(attempt, spec.backoff, spec.max_backoff)
    logger.bind(component="step").warning(
        "step {} of {} failed (attempt {}/{}): {!r}; retrying in {:.2f}s",
        spec.name, ctx.workflow_id, attempt, spec.retries + 1, exc, delay,
    )
    return delay


def _awaited_by(ctx: RunContext, coro: Coroutine[Any, Any, Any]) -> Any:
    """An async step or child called by an async workflow body is returned for it to await;
    called by a plain workflow body, it runs to its result here."""
    from pgsched.runs import run_coroutine

    if ctx.task is not None:
        return coro
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_coroutine(coro)
    # A plain workflow on an event loop's thread (a sync child of an async parent): loops do
    # not nest, so the coroutine gets a loop in a helper thread while this thread waits.
    with ThreadPoolExecutor(1, thread_name_prefix="pgsched-async-call") as pool:
        return pool.submit(contextvars.copy_context().run, run_coroutine, coro).result()


def record_step(
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
    outer = current_step.get()
    if outer is not None:
        raise _nested_transaction(ctx, spec, outer)
    number = ctx.take_step_number(f"transaction step {spec.name!r}")
    saved = ctx.replay(number, spec.name)
    if saved is not None:
        return from_jsonable(saved["output"])

    def body(conn: Any) -> Any:
        entered = current_step.set(("transaction step", spec.name))
        try:
            return spec.fn(conn, *args, **kwargs)
        finally:
            current_step.reset(entered)

    return commit_step(ctx, number, spec.name, "transaction", body,
                       encode=lambda result: dumps(result, f"result of transaction {spec.name!r}"))


#: Returned by a ``commit_step`` body that found nothing to do: the step is rolled back and
#: not checkpointed (a ``recv`` with no message yet).
NOT_DONE = object()


def commit_step(
    ctx: RunContext,
    number: int,
    name: str,
    kind: str,
    body: Callable[[Any], Any],
    encode: Callable[[Any], str] = json.dumps,
) -> Any:
    """Run ``body(conn)`` and checkpoint its result in one fenced transaction: its writes
    and the checkpoint commit together, or neither does.

    A try that failed transiently may have committed (the COMMIT's reply was lost): the next
    try looks for the checkpoint first, so the writes happen exactly once. ``body`` may
    return ``NOT_DONE`` to roll back and record nothing.
    """
    started = utcnow()
    tried = False

    def attempt() -> Any:
        nonlocal tried
        if tried:
            saved = _stored_step(ctx, number)
            if saved is not None:
                ctx.checkpoints[number] = saved
                return from_jsonable(saved["output"])
        tried = True
        with ctx.db.connection() as conn, conn.transaction():
            ctx.fence(conn)
            result = body(conn)
            if result is NOT_DONE:
                raise psycopg.Rollback()  # leaves the block; the transaction rolls back
            ctx.checkpoint(conn, number, name, kind, encode(result), started)
        return result

    return retry_transient(attempt, f"{kind} step {number} of run {ctx.workflow_id}")


def _nested_transaction(ctx: RunContext, spec: StepSpec, outer: tuple[str, str]) -> Exception:
    kind, name = outer
    where = f"{kind} {name!r} of workflow {ctx.workflow_name!r} (run {ctx.workflow_id})"
    if kind == "transaction step":
        return StepPlacementError(
            f"transaction step {spec.name!r} was called inside {where}. It would commit in a "
            f"transaction of its own, apart from {name!r}'s, so not exactly once with it. To "
            f"write in {name!r}'s transaction, use the connection it was given (pass it to a "
            f"plain function); or call {spec.name!r} from the workflow body"
        )
    return StepPlacementError(
        f"transaction step {spec.name!r} was called inside {where}. A call inside a step is "
        f"part of it and has no checkpoint of its own, so its commit could not be exactly "
        f"once: each retry of {name!r} (or a worker dying before {name!r} is checkpointed) "
        f"would commit it again. Call {spec.name!r} from the workflow body instead"
    )


def call_child(ctx: RunContext, spec: WorkflowSpec, args: tuple, kwargs: dict) -> Any:
    """Run a child workflow inline, in its own row with its own checkpoints.

    Inline (rather than enqueued and awaited) so a parent never blocks a worker thread
    waiting for a child that needs a thread itself. An async child called by an async
    parent returns an awaitable that runs it on the parent's loop; called by a plain parent
    it runs to its result.
    """
    outer = current_step.get()
    if outer is not None:
        raise StepPlacementError(
            f"child workflow {spec.name!r} was called inside {outer[0]} {outer[1]!r} of "
            f"workflow {ctx.workflow_name!r} (run {ctx.workflow_id}). A child is a run of its "
            "own, identified by its position among its parent's checkpoints, and a call "
            f"inside a step has none: each retry of {outer[1]!r} would run it again. Call "
            f"{spec.name!r} from the workflow body instead"
        )
    number = ctx.take_step_number(f"child workflow {spec.name!r}")
    saved = ctx.replay(number, spec.name)
    if spec.is_async:
        return _awaited_by(ctx, _async_child(ctx, spec, number, saved, args, kwargs))
    if saved is not None:
        return from_jsonable(saved["output"])
    from pgsched.runs import NON_RETRYABLE, run_body

    started = utcnow()
    child_id, row, child = _start_child(ctx, spec, number, args, kwargs)
    if child is None:
        output = json.dumps(row["output"])
    else:
        try:
            result = run_body(child, spec, args, kwargs, record=True)
        except NON_RETRYABLE as exc:
            raise PermanentError(f"child workflow {child_id} failed: {exc}") from exc
        output = dumps(result, f"result of child workflow {spec.name!r}")
    saved = record_step(ctx, number, spec.name, "child", output, started, child_id=child_id)
    return from_jsonable(json.loads(output) if saved is None else saved["output"])


async def _async_child(
    ctx: RunContext, spec: WorkflowSpec, number: int, saved: dict[str, Any] | None,
    args: tuple, kwargs: dict,
) -> Any:
    """An async child on its parent's event loop (a nested ``asyncio.run`` cannot work)."""
    from pgsched.runs import NON_RETRYABLE, run_body_async

    if saved is not None:
        return from_jsonable(saved["output"])
    started = utcnow()
    child_id, row, child = await asyncio.to_thread(_start_child, ctx, spec, number, args,
                                                   kwargs)
    if child is None:
        output = json.dumps(row["output"])
    else:
        try:
            result = await run_body_async(child, spec, args, kwargs, record=True)
        except NON_RETRYABLE as exc:
            raise PermanentError(f"child workflow {child_id} failed: {exc}") from exc
        output = dumps(result, f"result of child workflow {spec.name!r}")
    saved = await asyncio.to_thread(record_step, ctx, number, spec.name, "child", output, started,
                                    child_id=child_id)
    return from_jsonable(json.loads(output) if saved is None else saved["output"])


def _start_child(
    ctx: RunContext, spec: WorkflowSpec, number: int, args: tuple, kwargs: dict
) -> tuple[str, dict[str, Any], RunContext | None]:
    """Insert (or find) the child's row: its id, its row, and the context to run its body
    in, with its checkpoints loaded; ``None`` when it already succeeded."""
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
        return child_id, row, None
    if row["status"] in _TERMINAL_FAILURES:
        _raise_child_failure(child_id, row)
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
    return child_id, row, child


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
