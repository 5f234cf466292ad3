"""Worker app for the queue tests: jobs that record when, where and in what order they ran.

Every record is committed on its own connection with ``clock_timestamp()``, so the tests read
what happened from the database, never from the worker's logs or memory.
"""

from __future__ import annotations

import asyncio
import os
import time

import psycopg
from psycopg import sql

import pgsched

app = pgsched.App("queues")
SCHEMA = sql.Identifier(os.environ["PGSCHED_SCHEMA"])

limited = app.queue("limited", concurrency=3, worker_concurrency=2)
rated = app.queue("rated", rate_limit=(5, 2))
ordered = app.queue("ordered")
jobs = app.queue("jobs")


def record(table: str, **values: object) -> None:
    columns = list(values)
    query = sql.SQL("INSERT INTO {}.{} ({}) VALUES ({})").format(
        SCHEMA, sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    with psycopg.connect(os.environ["PGSCHED_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(query, list(values.values()))


def gate_open(name: str) -> bool:
    with psycopg.connect(os.environ["PGSCHED_DATABASE_URL"], autocommit=True) as conn:
        query = sql.SQL("SELECT 1 FROM {}.gates WHERE name = %s").format(SCHEMA)
        return conn.execute(query, (name,)).fetchone() is not None


def wait_gate(name: str) -> None:
    while not gate_open(name):
        time.sleep(0.02)  # a job blocked on a gate: poll interval


@app.workflow()
def span(index: int, seconds: float) -> None:
    """Records its start and end with the database clock, so overlap is measured on one clock."""
    with psycopg.connect(os.environ["PGSCHED_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(sql.SQL("INSERT INTO {}.spans (job, pid, started) "
                             "VALUES (%s, %s, clock_timestamp())").format(SCHEMA),
                     (index, os.getpid()))
        time.sleep(seconds)  # simulated work between the recorded start and end
        conn.execute(sql.SQL("UPDATE {}.spans SET ended = clock_timestamp() WHERE job = %s")
                     .format(SCHEMA), (index,))


@app.workflow()
def tick(index: int) -> int:
    record("log", label=str(index), pid=os.getpid())
    return index


@app.workflow()
def held(key: str) -> str:
    """Runs until the test opens its gate, so "while running" is a state a test can hold."""
    record("log", label=f"held:{key}", pid=os.getpid())
    wait_gate(key)
    return key


@app.workflow(max_attempts=3)
def always_fails(message: str) -> None:
    record("log", label="attempt", pid=os.getpid())
    raise RuntimeError(message)


@app.workflow()
def sleeps(seconds: float) -> str:
    record("log", label="sleeping", pid=os.getpid())
    time.sleep(seconds)  # simulated work inside the job
    return "woke"


@app.workflow()
async def async_sleeps(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "woke"


@app.workflow()
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0.01)
    return a + b


@app.step()
def whoami(label: str) -> int:
    record("log", label=label, pid=os.getpid())
    return os.getpid()


@app.workflow()
def fenced_steps() -> list[int]:
    """Step, then a gate, then a step: a paused first attempt resumes into a checkpoint write
    that the second attempt's claim must reject."""
    first = whoami("fenced_steps:1")
    wait_gate("fenced")
    second = whoami("fenced_steps:2")
    return [first, second]


@app.workflow()
def fenced_result() -> int:
    """A step, then a gate, then the result: a paused first attempt resumes into a late
    result write."""
    whoami("fenced_result:1")
    wait_gate("fenced")
    record("log", label="fenced_result:returning", pid=os.getpid())
    return os.getpid()


def not_registered() -> None:
    """Deliberately not a workflow."""
