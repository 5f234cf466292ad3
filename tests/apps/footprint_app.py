"""Worker app for the connection footprint test: a job whose transaction step holds its
pooled connection for a while, so a busy worker's pool grows to its concurrency."""

from __future__ import annotations

import psycopg

import pgsched

app = pgsched.App("footprint")


@app.transaction()
def hold_connection(conn: psycopg.Connection, seconds: float) -> None:
    conn.execute("SELECT pg_sleep(%s)", (seconds,))


@app.workflow()
def busy(seconds: float) -> None:
    hold_connection(seconds)
