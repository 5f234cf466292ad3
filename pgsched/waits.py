"""Durable waits, messages and events inside a running workflow.

``pgsched.sleep`` and ``pgsched.recv`` do not block the worker thread: when the wait is not
over, they raise ``Parked`` out of the workflow body, the worker records the run WAITING
(lifecycle: park) and the thread goes back to work. Whatever ends the wait (its wake time,
a message) re-queues the run, and the worker that claims it replays the workflow from its
checkpoints up to the wait, which now returns.

Each wait checkpoints *when* it ends before it first parks (``sleep``/``recv:<topic>:until``
steps), so a replay keeps the original deadline instead of starting a new one; a ``recv``
checkpoints the message it took in the same transaction that marks the message read, so a
message is received exactly once. Sending and events are in ``pgsched.messages``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from pgsched.clock import utcnow
from pgsched.context import RunContext, current_run
from pgsched.errors import InvalidWaitArgument, NotInWorkflow
from pgsched.serialization import dumps, from_jsonable
from pgsched.steps import NOT_DONE, commit_step, record_step

#: The longest wait or timeout accepted: beyond it a deadline is a mistake, not a plan.
MAX_WAIT_SECONDS = 100 * 365 * 86400.0


class Parked(BaseException):  # noqa: N818 - control flow, not an error
    """Raised out of a workflow body to park its run until ``wake_at`` or a message.

    A ``BaseException`` so that a workflow's ``except Exception`` does not swallow it.
    """

    def __init__(self, wake_at: datetime | None, wait_run: str | None = None,
                 wait_topic: str | None = None) -> None:
        super().__init__(f"parked until {wake_at or 'a message arrives'}")
        self.wake_at = wake_at
        self.wait_run = wait_run
        self.wait_topic = wait_topic


def running(what: str) -> RunContext:
    ctx = current_run.get()
    if ctx is None:
        raise NotInWorkflow(
            f"{what} works only inside a running @app.workflow(): it checkpoints in the run's "
            "history and parks the run. Outside a workflow, use app.send() / app.get_event(), "
            "or time.sleep()")
    return ctx


def _seconds(duration: float | timedelta | None, what: str) -> float | None:
    if duration is None:
        return None
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
            or not 0 <= seconds <= MAX_WAIT_SECONDS):
        raise InvalidWaitArgument(f"{what} must be a timedelta or a number of seconds from 0 "
                                  f"to {MAX_WAIT_SECONDS:.0f} (100 years), got {duration!r}")
    return float(seconds)


def check_name(value: Any, what: str) -> str:
    """A topic or event key: a non-empty string (it is stored and matched as text)."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InvalidWaitArgument(
            f"{what} must be a non-empty string without NUL, got {value!r}")
    return value


def _deadline(ctx: RunContext, name: str, kind: str, seconds: float | None) -> datetime | None:
    """The end of a wait, fixed by a checkpoint the first time the workflow reaches it."""
    number = ctx.take_step_number(f"{name!r} (a durable wait)")
    saved = ctx.replay(number, name)
    if saved is None:
        until = None if seconds is None else utcnow() + timedelta(seconds=seconds)
        output = json.dumps({"until": until.isoformat() if until else None})
        saved = record_step(ctx, number, name, kind, output, utcnow())
        if saved is None:
            return until
    stored = saved["output"]["until"]
    return None if stored is None else datetime.fromisoformat(stored)


def sleep(duration: float | timedelta) -> None:
    """Pause the current workflow for ``duration`` without holding a worker.

    The run is parked (WAITING) and resumed by any worker once the time has come, even
    across restarts and deploys. Code of the workflow before this call runs again on
    resume; steps before it replay from their checkpoints.
    """
    ctx = running("pgsched.sleep()")
    seconds = _seconds(duration, "pgsched.sleep()'s duration")
    until = _deadline(ctx, "sleep", "sleep", seconds)
    if until is not None and utcnow() < until:
        raise Parked(until)


def recv(topic: str = "default", timeout: float | timedelta | None = None) -> Any:
    """Receive the next message sent to this run on ``topic`` (``App.send``), in send order.

    Waits, parked, until one arrives or ``timeout`` passes (``None``: no limit), then
    returns the message, or ``None`` on timeout. Each message is received once.
    """
    ctx = running("pgsched.recv()")
    check_name(topic, "pgsched.recv()'s topic")
    seconds = _seconds(timeout, "pgsched.recv()'s timeout")
    until = _deadline(ctx, f"recv:{topic}:until", "recv", seconds)
    name = f"recv:{topic}"
    number = ctx.take_step_number("pgsched.recv()")
    saved = ctx.replay(number, name)
    if saved is not None:
        return from_jsonable(saved["output"])

    def take(conn: Any) -> Any:
        row = conn.execute(ctx.db.sql("receive_message"),
                           {"id": ctx.workflow_id, "topic": topic, "step": number}).fetchone()
        if row is not None:
            return from_jsonable(row["payload"])
        return None if until is not None and utcnow() >= until else NOT_DONE

    received = commit_step(ctx, number, name, "recv", take,
                           encode=lambda message: dumps(message, f"message on {topic!r}"))
    if received is NOT_DONE:
        raise Parked(until, ctx.workflow_id, topic)
    return received
