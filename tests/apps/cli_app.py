"""An app for the operator commands: a schedule that never fires on its own during a test
(January 1st), a job on a named queue, a job that always fails, and a job that waits."""

from __future__ import annotations

import time
from datetime import datetime

import pgsched

app = pgsched.App("cli")
emails = app.queue("emails", concurrency=4)


@app.cron("0 0 1 1 *", name="new_year_report")
def new_year_report(scheduled_at: datetime) -> str:
    return f"report for {scheduled_at.isoformat()}"


@app.workflow()
def add(a: int, b: int) -> int:
    return a + b


@app.workflow(max_attempts=1)
def boom(reason: str) -> None:
    raise RuntimeError(reason)


@app.workflow()
def nap(seconds: float) -> str:
    time.sleep(seconds)  # simulated work inside the job
    return "rested"
