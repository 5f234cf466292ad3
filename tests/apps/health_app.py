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
            time.sleep(0.05)  # a job blocked until released: poll interval
    return "released"


@app.workflow()
def kill_listener() -> str:
    """Make this worker's LISTEN thread die of an error it does not catch, as a bug would."""
    import threading

    (listener,) = [t for t in threading.enumerate() if t.name == "pgsched-listen"]

    def boom(payload: str) -> None:
        raise RuntimeError("listener bug")

    listener.on_notify = boom  # type: ignore[attr-defined]
    with psycopg.connect(os.environ["PGSCHED_DATABASE_URL"], autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, 'work')", (f"pgsched_{os.environ['PGSCHED_SCHEMA']}",))
    listener.join(10)
    return "dead" if not listener.is_alive() else "alive"


@app.workflow()
def ignore_timeout() -> None:
    """A run that never returns, whatever its timeout says (threads cannot be killed)."""
    while True:
        time.sleep(0.05)  # never returns, on purpose: it outlives its timeout
