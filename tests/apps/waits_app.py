"""Worker app for the durable-wait tests: workflows that sleep, wait for messages, send and
publish events, and a quick job to show a worker stays free while runs wait."""

from __future__ import annotations

import os
from datetime import timedelta

import psycopg
from psycopg import sql

import pgsched

# Tests start workers of two releases of this same code by setting WAITS_APP_VERSION.
app = pgsched.App("waits", version=os.environ.get("WAITS_APP_VERSION"))
jobs = app.queue("jobs", worker_concurrency=1)
SCHEMA = sql.Identifier(os.environ["PGSCHED_SCHEMA"])


@app.workflow()
def nap(seconds: float) -> str:
    pgsched.set_event("stage", "napping")
    pgsched.sleep(seconds)
    return "rested"


@app.workflow()
def quick(n: int) -> int:
    return n


@app.workflow()
def approval(claim_id: int) -> dict:
    pgsched.set_event("stage", "awaiting approval")
    decision = pgsched.recv("approval", timeout=timedelta(days=7))
    pgsched.set_event("stage", "decided")
    return {"claim": claim_id, "decision": decision}


@app.transaction()
def note(conn: psycopg.Connection, text: str) -> None:
    conn.execute(sql.SQL("INSERT INTO {}.notes (text) VALUES (%s)").format(SCHEMA), (text,))


@app.workflow()
def collector(count: int) -> list:
    """Receives ``count`` messages, noting each in the same database (exactly once)."""
    got = []
    for _ in range(count):
        message = pgsched.recv("items")
        note(repr(message))
        got.append(message)
    return got


@app.workflow()
def whoami() -> int:
    """Which worker process resumed this run after its message."""
    pgsched.recv("go")
    return os.getpid()
