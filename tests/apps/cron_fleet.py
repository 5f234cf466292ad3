"""Worker app for the cron fleet test: an every-second schedule whose runs record their tick.

The record is a transaction step, so it commits with the run's checkpoint: a run taken over
from a killed worker replays it instead of writing a second row. The table has no unique
constraint, so a tick that ran twice would show up as two rows.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from psycopg import sql

import pgsched

app = pgsched.App("cron-fleet")
TABLE = sql.Identifier(os.environ.get("PGSCHED_SCHEMA", "pgsched"), "fleet_ticks")


@app.transaction()
def record(conn: Any, scheduled_at: datetime) -> None:
    conn.execute(sql.SQL("INSERT INTO {} (scheduled_at, pid) VALUES (%s, %s)").format(TABLE),
                 (scheduled_at, os.getpid()))


@app.cron("* * * * * *", name="every-second", catch_up="all")
def every_second(scheduled_at: datetime) -> None:
    record(scheduled_at)
