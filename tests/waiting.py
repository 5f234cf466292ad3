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
