"""An app for the dashboard's browser test: a report workflow with steps that can fail, a
workflow that keeps taking short steps until cancelled, and a cron schedule that never fires
during a test (January 1st). ``dash_log`` (created by the test) records when the cancelled
workflow's code stops."""

from __future__ import annotations

import time
from datetime import datetime

from psycopg import sql

import pgsched

app = pgsched.App("dashboard-demo")
reports = app.queue("reports", concurrency=2)


@app.cron("0 0 1 1 *", name="new_year_report")
def new_year_report(scheduled_at: datetime) -> str:
    return f"report for {scheduled_at.isoformat()}"


@app.step()
def fetch_rows(source: str) -> int:
    time.sleep(0.05)  # simulated work inside the step
    return len(source) * 10


@app.step()
def render(rows: int) -> str:
    time.sleep(0.02)  # simulated work inside the step
    return f"{rows} rows rendered"


@app.workflow(max_attempts=1)
def build_report(source: str, fail: bool = False) -> str:
    rows = fetch_rows(source)
    text = render(rows)
    if fail:
        raise ValueError(f"report {source!r} has no totals row")
    return text


@app.step()
def tick(n: int) -> int:
    time.sleep(0.05)  # simulated work inside the step
    return n


def log(key: str, what: str) -> None:
    with app.db.connection() as conn:
        conn.execute(sql.SQL("INSERT INTO {}.dash_log (key, what) VALUES (%s, %s)").format(
            sql.Identifier(app.db.schema)), (key, what))


@app.workflow()
def keep_ticking(key: str) -> int:
    """Short steps until cancelled (at most a minute): a cancel stops it at a step boundary."""
    try:
        for n in range(1200):
            tick(n)
        return 1200
    finally:
        log(key, "exit")
