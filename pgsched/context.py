"""The state of the run the current thread is executing, and the fenced writes it makes."""

from __future__ import annotations

import asyncio
import json
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgsched import lifecycle
from pgsched.clock import utcnow
from pgsched.errors import ClaimLost, DeterminismError, StepPlacementError

if TYPE_CHECKING:
    from datetime import datetime

    from pgsched.db import Database


@dataclass
class RunContext:
    db: Database
    workflow_id: str
    workflow_name: str
    token: str
    worker_id: str
    queue: str
    checkpoints: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_step: int = 1
    #: The thread running the workflow body (set by ``runs.run_body``); ``None`` until then.
    thread_id: int | None = None
    #: The asyncio task running an async workflow's body; ``None`` for a sync workflow.
    task: asyncio.Task | None = None

    def take_step_number(self, what: str = "this pgsched call") -> int:
        """The next step number, taken when the call is made (before any await), so calls
        numbered in the body's order replay in that order whatever finishes first.

        Only the workflow body's own calls take numbers (``check_in_body``): a call inside a
        running step, or from another thread or asyncio task, would number the run
        differently on each execution. ``what`` names the call in that error.
        """
        check_in_body(self, what)
        number = self.next_step
        self.next_step += 1
        return number

    def replay(self, number: int, name: str) -> dict[str, Any] | None:
        """The checkpoint at this position, after checking the code still calls the same step."""
        saved = self.checkpoints.get(number)
        if saved is not None and saved["name"] != name:
            raise DeterminismError(
                f"workflow {self.workflow_name!r} (run {self.workflow_id}) called {name!r} as "
                f"step {number}, but the run it resumes recorded {saved['name']!r} there. The code "
                "changed under a running workflow: deploy the old code until such runs finish, "
                f"or fork the run: `pgsched workflows fork {self.workflow_id} --from-step {number}`"
            )
        return saved

    def checkpoint(
        self,
        conn: Any,
        number: int,
        name: str,
        kind: str,
        output: str,
        started_at: datetime,
        attempts: int = 1,
        child_id: str | None = None,
    ) -> None:
        recorded = lifecycle.checkpoint(
            conn,
            self.db,
            {
                "id": self.workflow_id,
                "token": self.token,
                "step_number": number,
                "name": name,
                "kind": kind,
                "output": output,
                "error": None,
                "attempts": attempts,
                "child_id": child_id,
                "started_at": started_at,
                "now": utcnow(),
            },
        )
        if not recorded:
            raise ClaimLost(
                f"run {self.workflow_id} is no longer owned by this attempt (cancelled, timed "
                "out or taken over); its step result was not recorded"
            )
        self.checkpoints[number] = {"name": name, "output": json.loads(output)}

    def fence(self, conn: Any) -> None:
        """Lock the run for the caller's transaction, or raise if this attempt lost it."""
        if not lifecycle.fence(conn, self.db, self.workflow_id, self.token):
            raise ClaimLost(
                f"run {self.workflow_id} is no longer owned by this attempt; "
                "the transaction step was rolled back"
            )


current_run: ContextVar[RunContext | None] = ContextVar("pgsched_current_run", default=None)
#: ``(kind, name)`` of the step whose code is running in this context, if any: calls made
#: inside it are part of it and take no step numbers of their own.
current_step: ContextVar[tuple[str, str] | None] = ContextVar("pgsched_current_step",
                                                               default=None)


def check_in_body(ctx: RunContext, what: str) -> None:
    """Refuse a numbered call made inside a running step or from a thread other than the
    workflow body's (``asyncio.to_thread``, ``run_in_executor``)."""
    outer = current_step.get()
    if outer is not None:
        raise StepPlacementError(
            f"{what} was called inside {outer[0]} {outer[1]!r} of workflow "
            f"{ctx.workflow_name!r} (run {ctx.workflow_id}). Calls inside a step are part of "
            "that step and get no checkpoint of their own, so this one would run again "
            f"whenever {outer[1]!r} is retried. Call it from the workflow body instead"
        )
    if ctx.thread_id is not None and threading.get_ident() != ctx.thread_id:
        raise StepPlacementError(
            f"{what} was called from a thread of its own (asyncio.to_thread, "
            f"run_in_executor, a thread pool), not from the body of workflow "
            f"{ctx.workflow_name!r} (run {ctx.workflow_id}). Its step number would depend "
            "on which thread gets there first, so a resumed run could hand it another call's "
            "result. Call it from the workflow body (await async steps, asyncio.gather "
            "several), or move the blocking work into a step: an async step may await "
            "asyncio.to_thread(...) itself"
        )
    if ctx.task is not None and _current_task() not in (None, ctx.task):
        raise StepPlacementError(
            f"{what} was called from an asyncio task of its own (a coroutine passed to "
            f"asyncio.gather or create_task), not from the body of workflow "
            f"{ctx.workflow_name!r} (run {ctx.workflow_id}). Its step number would depend on "
            "which task gets there first, so a resumed run could hand it another call's "
            "result. Gather the steps themselves (asyncio.gather(step_a(), step_b()) numbers "
            "them as called), or make the coroutine an async @app.workflow(): gathered child "
            "workflows are numbered as called and number their own steps"
        )


def _current_task() -> asyncio.Task | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no event loop running in this thread
        return None
