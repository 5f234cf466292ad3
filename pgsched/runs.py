"""Executing one claimed run and deciding what its outcome means for the row."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
import traceback
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from loguru import logger

from pgsched import lifecycle, tracing
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
from pgsched.waits import Parked

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
    finished by the worker in batches. An async workflow runs on an event loop of its own
    (``run_body_async``); an async child of an async parent runs on its parent's loop.
    """
    if spec.is_async:
        return run_coroutine(
            run_body_async(ctx, spec, args, kwargs, record=record, timeout=timeout))
    with _body_of(ctx, spec, record) as result:
        result.append(spec.fn(*args, **kwargs))
    return result[0]


@contextmanager
def _body_of(ctx: RunContext, spec: WorkflowSpec, record: bool) -> Iterator[list[Any]]:
    """``ctx`` is the current run inside the block, which puts the body's result in the
    list it is given. With ``record`` (a child) the run's row is finished as the block
    ends: SUCCESS with that result, WAITING for a park, ERROR for any other exception; a
    lost claim writes nothing."""
    reset = current_run.set(ctx)
    ctx.thread_id = threading.get_ident()
    result: list[Any] = []
    try:
        yield result
        output = dumps(result[0], f"result of workflow {spec.name!r}") if record else None
    except ClaimLost:
        raise
    except Parked as parked:
        if record:
            finish_now(ctx, parked_outcome(ctx, parked))
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


def parked_outcome(ctx: RunContext, parked: Parked) -> Outcome:
    """The WAITING outcome of a run whose workflow called a wait that is not over."""
    return Outcome(ctx.workflow_id, ctx.token, "WAITING", wake_at=parked.wake_at,
                   wait_run=parked.wait_run, wait_topic=parked.wait_topic,
                   checkpoints=len(ctx.checkpoints))


async def run_body_async(
    ctx: RunContext,
    spec: WorkflowSpec,
    args: tuple,
    kwargs: dict,
    *,
    record: bool = False,
    timeout: float | None = None,
) -> Any:
    """``run_body`` for an ``async def`` workflow, on the running loop. The outcome of a
    child is written from the loop's thread: a short write, and one that must happen even
    while the child's task is being cancelled."""
    async def body() -> Any:
        ctx.task = asyncio.current_task()  # the timeout runs the body in a task of its own
        return await spec.fn(*args, **kwargs)

    with _body_of(ctx, spec, record) as result:
        result.append(await _with_timeout(body(), timeout))
    return result[0]


class ContextExecutor(ThreadPoolExecutor):
    """The default executor of a workflow's event loop: each task runs in a copy of the
    submitter's context, as ``asyncio.to_thread`` does, so a step called through
    ``run_in_executor`` knows its run (and is refused) instead of running unrecorded."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to its result on a fresh event loop in this thread (what ``asyncio.run``
    does), with a default executor that carries the caller's context into its threads.

    ``run_in_executor(None, step)`` then sees the run it was called from, and is refused like
    ``asyncio.to_thread(step)`` instead of silently running the step unrecorded.
    """
    loop = asyncio.new_event_loop()
    loop.set_default_executor(ContextExecutor())
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        try:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


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
    # What the finish checks against the database: checkpoints lost since are redone. Most
    # runs wrote none, and ``replace`` was a quarter of a no-op run's cost in the worker.
    written = len(ctx.checkpoints)
    if outcome is None or outcome.checkpoints == written:
        return outcome
    return replace(outcome, checkpoints=written)


def _attempt(ctx: RunContext, spec: WorkflowSpec, claim: dict[str, Any]) -> Outcome | None:
    token = ctx.token
    try:
        args, kwargs = decode_inputs(claim["inputs"])
        result = run_body(ctx, spec, args, kwargs, timeout=claim.get("timeout_s"))
        output = dumps(result, f"result of workflow {spec.name!r}")
    except ClaimLost:
        return None
    except Parked as parked:
        return parked_outcome(ctx, parked)
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
        outcome = tracing.run(execute, ctx, spec, row)
    except BaseException as exc:
        logger.bind(component="run").exception("run {} crashed the runner", row["id"])
        outcome = Outcome(row["id"], token, "ERROR", error=error_json(exc))
    return outcome or Outcome(row["id"], token, "LOST")
