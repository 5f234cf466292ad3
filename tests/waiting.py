"""Waiting on a condition in the database, with a deadline and a useful failure."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], object],
    timeout: float = 30.0,
    *,
    what: str = "condition",
    interval: float = 0.05,
    logs: Callable[[], str] | None = None,
) -> object:
    """Poll ``condition`` until it is truthy; fail with ``what`` (and worker logs) on timeout.

    This waits for an observable state, never for a guessed amount of time. Elapsed time is
    the sum of the sleeps, so the deadline holds even if a test froze the clock.
    """
    waited = 0.0
    while True:
        value = condition()
        if value:
            return value
        if waited > timeout:
            detail = f"\n{logs()}" if logs else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)  # the poll interval; the deadline counts these
        waited += interval


def worker_backends(sql: Callable[..., list[tuple]], pid: int) -> list[tuple[str, str]]:
    """(state, query) of each server backend of the worker process ``pid``: a worker's
    connections carry its id, registered in ``workers``, as application_name. Empty once its
    row is gone. What a worker is doing, seen from the server, for tests that wait on it."""
    return sql("SELECT a.state, a.query FROM pg_stat_activity a JOIN workers w "
               "ON a.application_name = w.id WHERE w.pid = %s", (pid,))
