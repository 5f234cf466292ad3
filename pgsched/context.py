"""The state of the run the current thread is executing, and the fenced writes it makes."""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgsched import lifecycle
from pgsched.clock import utcnow
from pgsched.errors import ClaimLost, DeterminismError

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

    def take_step_number(self) -> int:
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
