"""Worker app for the async client and tracing tests: a run with a step, a transaction and a
child workflow (with a step of its own), a plain one, one that fails, an async one that
gathers two async steps, and one whose step calls another step."""

from __future__ import annotations

import asyncio

import psycopg

import pgsched
from pgsched.errors import PermanentError

app = pgsched.App("aio")
jobs = app.queue("jobs")


@app.step()
def add_one(value: int) -> int:
    return value + 1


@app.transaction()
def note(conn: psycopg.Connection, value: int) -> int:
    conn.execute("SELECT 1")
    return value


@app.workflow()
def child_double(value: int) -> int:
    return add_one(value) * 2


@app.workflow()
def pipeline(value: int) -> int:
    return child_double(note(add_one(value)))


@app.workflow()
def double(value: int) -> int:
    return value * 2


@app.workflow()
def fail(message: str) -> None:
    raise PermanentError(message)


@app.step()
async def fetch(value: int) -> int:
    await asyncio.sleep(0.01)
    return value


@app.workflow()
async def gathered(value: int) -> list:
    return list(await asyncio.gather(fetch(value), fetch(value + 1)))


@app.step()
def outer(value: int) -> int:
    return add_one(value) + 1  # a step called by a step: part of it


@app.workflow()
def composed(value: int) -> int:
    return outer(value)
