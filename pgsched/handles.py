"""A handle on a run: its id, its status, and a way to wait for its result."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pgsched.errors import ResultTimeout, WorkflowFailed, WorkflowNotFound
from pgsched.serialization import from_jsonable

if TYPE_CHECKING:
    from pgsched.db import Database

TERMINAL = ("SUCCESS", "ERROR", "CANCELLED", "DEAD")


class Handle:
    def __init__(self, db: Database, workflow_id: str) -> None:
        self._db = db
        self.workflow_id = workflow_id

    def __repr__(self) -> str:
        return f"Handle({self.workflow_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Handle) and other.workflow_id == self.workflow_id

    def __hash__(self) -> int:
        return hash(self.workflow_id)

    def _row(self) -> dict[str, Any]:
        with self._db.connection(autocommit=True) as conn:
            return self._found(
                conn.execute(self._db.sql("get_run"), {"id": self.workflow_id}).fetchone())

    def _found(self, row: dict[str, Any] | None) -> dict[str, Any]:
        if row is None:
            raise WorkflowNotFound(f"no run with id {self.workflow_id!r}")
        return row

    def status(self) -> str:
        return str(self._row()["status"])

    async def status_async(self) -> str:
        """``status()`` for asyncio callers (an async pool of the app's own)."""
        from pgsched import aio

        return str((await aio.get_run(self))["status"])

    def result(self, timeout: float | None = None, poll: float = 0.02) -> Any:
        """Wait until the run finishes and return its output, or raise WorkflowFailed.

        Elapsed time is counted from the sleeps themselves rather than a clock, so the wait
        still ends under freezegun, which stops ``time.monotonic``.
        """
        waited = 0.0
        delay = poll
        while True:
            finished, output = self._settled(self._row(), timeout, waited)
            if finished:
                return output
            time.sleep(delay)
            waited += delay
            delay = next_poll(delay)

    async def result_async(self, timeout: float | None = None, poll: float = 0.02) -> Any:
        """``result()`` for asyncio callers: the same polls and backoff, awaiting instead of
        blocking the event loop."""
        from pgsched import aio

        return await aio.result(self, timeout, poll)

    def _settled(self, row: dict[str, Any], timeout: float | None,
                 waited: float) -> tuple[bool, Any]:
        """``(True, output)`` for a successful run, ``(False, None)`` to wait on; raises
        WorkflowFailed for a failed one, ResultTimeout once ``waited`` reaches ``timeout``."""
        if row["status"] == "SUCCESS":
            return True, from_jsonable(row["output"])
        if row["status"] in TERMINAL:
            raise WorkflowFailed(self.workflow_id, row["status"], row["error"])
        if timeout is not None and waited >= timeout:
            raise ResultTimeout(
                f"run {self.workflow_id} is still {row['status']} after {timeout:g}s; "
                "is a worker serving its queue? (`pgsched queues`)"
            )
        return False, None


def next_poll(delay: float) -> float:
    """The pause before the next look at a run: growing, so a long run costs few queries,
    and capped, so a finished one is noticed within half a second."""
    return min(delay * 1.5, 0.5)
