"""Worker app for the health tests: quick jobs, a failing job, and a job that holds the single
slot of the "held" queue until the test inserts a row into ``releases``."""

from __future__ import annotations

import os
import time

import psycopg
from psycopg import sql

import pgsched

app = pgsched.App("health")
work = app.queue("work")
held = app.queue("held", concurrency=1)
SCHEMA = sql.Identifier(os.environ["PGSCHED_SCHEMA"])


@app.workflow()
def add(a: int, b: int) -> int:
    return a + b


@app.workflow()
def explode() -> None:
    raise ValueError("boom")


@app.workflow()
def hold() -> str:
    with psycopg.connect(os.environ["PGSCHED_DATABASE_URL"], autocommit=True) as conn:
        query = sql.SQL("SELECT count(*) FROM {}.releases").format(SCHEMA)
        while conn.execute(query).fetchone()[0] == 0:  # type: ignore[index]
            time.sleep(0.05)
    return "released"
