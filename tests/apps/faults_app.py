"""Worker app for the run-lifecycle fault tests (issue 10): jobs that misbehave in the ways
real code does, next to ordinary jobs that must not suffer for it.

Every record a job makes is committed on its own connection, so a test reads what happened
from the database even when the job then kills its thread or its process. ``TABLES`` holds
the tables the tests create after migrating.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time

import psycopg
from psycopg import sql

import pgsched
from pgsched.errors import PermanentError

app = pgsched.App("faults")
SCHEMA = sql.Identifier(os.environ["PGSCHED_SCHEMA"])

mixed = app.queue("mixed")
solo = app.queue("solo", concurrency=1)
busy = app.queue("busy", worker_concurrency=2)
wakes = [app.queue(f"wake{i}") for i in range(4)]
first = app.queue("a", concurrency=2)
second = app.queue("b", concurrency=2)
deploy = app.queue("deploy", concurrency=2)
logs = app.queue("logs")

TABLES = [
    "CREATE TABLE events (label text, key text, pid int, at timestamptz DEFAULT clock_timestamp())",
    "CREATE TABLE effects (n int, pid int)",
    "CREATE TABLE intervals (job int, pid int, started float8, ended float8)",
]


def record(table: str, **values: object) -> None:
    columns = list(values)
    query = sql.SQL("INSERT INTO {}.{} ({}) VALUES ({})").format(
        SCHEMA, sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    with psycopg.connect(os.environ["PGSCHED_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(query, list(values.values()))


def event(label: str, key: str = "") -> int:
    """Record one execution and return how many executions of ``label``/``key`` exist now."""
    record("events", label=label, key=key, pid=os.getpid())
    with psycopg.connect(os.environ["PGSCHED_DATABASE_URL"], autocommit=True) as conn:
        query = sql.SQL("SELECT count(*) FROM {}.events WHERE label = %s AND key = %s")
        row = conn.execute(query.format(SCHEMA), (label, key)).fetchone()
    assert row is not None
    return int(row[0])


# -- ordinary work ------------------------------------------------------------------------------


@app.workflow()
def ordinary(index: int) -> int:
    return index


@app.workflow()
def steady(index: int, seconds: float) -> int:
    time.sleep(seconds)  # simulated work inside the job
    return index


@app.workflow()
def busywork() -> None:
    """Background load: keeps claim rounds happening while a test measures something else."""
    time.sleep(0.02)  # simulated work: the background load


@app.workflow()
def stamp() -> float:
    """Returns the moment its body started, on this host's clock."""
    return time.time()


@app.workflow()
def interval(index: int, seconds: float) -> int:
    """Records the real start and end of its thread's work, even when cancelled meanwhile."""
    started = time.time()
    try:
        time.sleep(seconds)  # simulated work between the recorded start and end
    finally:
        record("intervals", job=index, pid=os.getpid(), started=started, ended=time.time())
    return index


# -- #1 outcomes PostgreSQL cannot store ------------------------------------------------------


@app.workflow()
def returns_nul() -> dict:
    return {"text": "before\x00after"}


@app.workflow()
def raises_nul() -> None:
    raise ValueError("bad byte \x00 in the message")


@app.workflow()
def returns_surrogate() -> str:
    return "lone \ud800 surrogate"


# -- #2 BaseException -----------------------------------------------------------------------------


@app.workflow()
def exits(key: str) -> None:
    event("exits", key)
    sys.exit(3)


@app.workflow()
def interrupts(key: str) -> None:
    event("interrupts", key)
    raise KeyboardInterrupt


@app.workflow()
async def cancelled(key: str) -> None:
    """Awaits a task that gets cancelled: the CancelledError reaches the job's own frame."""
    event("cancelled", key)
    task = asyncio.create_task(asyncio.sleep(30))
    await asyncio.sleep(0)
    task.cancel()
    await task


# -- #6 a job that crashes its process -----------------------------------------------------------


@app.workflow()
def pill(marker: str) -> None:
    """Crashes its worker at once, while the runs claimed with it are still running. Each
    execution appends a line to ``marker`` (a local file: a database write would take long
    enough for the neighbours to finish first)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the repository
    with open(marker, "a") as out:
        out.write(f"{os.getpid()}\n")
    os.abort()


# -- #7 a timed-out parent and its child -----------------------------------------------------------


@app.transaction()
def effect_step(conn: psycopg.Connection, n: int) -> int:
    conn.execute(sql.SQL("INSERT INTO {}.effects (n, pid) VALUES (%s, %s)").format(SCHEMA),
                 (n, os.getpid()))
    time.sleep(0.3)  # simulated work: the parent's timeout lands mid-way
    return n


@app.workflow()
def eight_effects() -> int:
    event("eight_effects:entered")
    try:
        return sum(effect_step(n) for n in range(8))
    finally:
        event("eight_effects:exited")


@app.workflow()
def parent_of_effects() -> int:
    event("parent_of_effects:entered")
    try:
        return eight_effects()
    finally:
        event("parent_of_effects:exited")


# -- #9 a child that fails once ----------------------------------------------------------------


@app.workflow()
def flaky_child(key: str) -> str:
    if event("flaky_child", key) == 1:
        raise RuntimeError("the first execution fails (a retryable error)")
    return f"ok:{key}"


@app.workflow(max_attempts=3)
def parent_of_flaky(key: str) -> str:
    return flaky_child(key) + "!"


# -- #12 a deploy ---------------------------------------------------------------------------------


@app.workflow()
def deploy_span(index: int, seconds: float) -> int:
    started = time.time()
    try:
        time.sleep(seconds)  # simulated work between the recorded start and end
    finally:
        record("intervals", job=index, pid=os.getpid(), started=started, ended=time.time())
    return index


# -- logs -----------------------------------------------------------------------------------------


@app.workflow()
def greet(name: str) -> str:
    return f"hello {name}"


@app.workflow()
def charge_card(card: str) -> None:
    raise ValueError(f"card declined {card}")


@app.workflow()
def refund(reason: str) -> None:
    raise PermanentError(f"refused for good: {reason}")
