"""Worker app for the fleet-clock test: everything records when it ran on the database clock.

``ticks`` gets one row per cron run (its scheduled time and the database's time at start),
``starts`` one row per job start, with the queue it ran from.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from psycopg import sql

import pgsched

app = pgsched.App("fleet-clock")
SCHEMA = sql.Identifier(os.environ.get("PGSCHED_SCHEMA", "pgsched"))
fast = app.queue("fast")
slow = app.queue("slow")
rated = app.queue("rated", rate_limit=(5, 2))


@app.transaction()
def record_tick(conn: Any, scheduled_at: datetime) -> None:
    conn.execute(sql.SQL("INSERT INTO {}.ticks (scheduled_at, started, pid) "
                         "VALUES (%s, clock_timestamp(), %s)").format(SCHEMA),
                 (scheduled_at, os.getpid()))


@app.cron("* * * * * *", name="every-second")
def every_second(scheduled_at: datetime) -> None:
    record_tick(scheduled_at)


@app.transaction()
def record_start(conn: Any, label: str) -> None:
    conn.execute(sql.SQL("INSERT INTO {}.starts (label, started, pid) "
                         "VALUES (%s, clock_timestamp(), %s)").format(SCHEMA),
                 (label, os.getpid()))


@app.workflow()
def stamp(label: str) -> None:
    record_start(label)
