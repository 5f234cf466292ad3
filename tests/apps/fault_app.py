"""Worker app for the fault tests: jobs whose every effect is countable in the database.

- ``effects``: rows written by a transaction step, in the step's own transaction. More than
  one row for a job means a transaction step committed twice (it must never happen).
- ``executions``: one row per execution of a plain step or a step-less job, committed on a
  connection of its own (``FAULT_RECORD_URL``, straight to the server, not through the test's
  proxy), so a re-execution is visible even if the worker never records its outcome.

A recording retries while the server restarts; each execution carries a random id inserted
with ``ON CONFLICT DO NOTHING``, so a retried insert whose first COMMIT did land is not
counted twice.
"""

from __future__ import annotations

import os
import resource
import time
import uuid

import psycopg
from psycopg import sql

import pgsched

app = pgsched.App("faults")
SCHEMA = sql.Identifier(os.environ["PGSCHED_SCHEMA"])
RECORD_URL = os.environ.get("FAULT_RECORD_URL") or os.environ["PGSCHED_DATABASE_URL"]

drain = app.queue("drain")

TABLES = (
    "CREATE TABLE effects (job int NOT NULL, pid int NOT NULL)",
    "CREATE TABLE executions (id uuid PRIMARY KEY, job int NOT NULL, pid int NOT NULL, "
    "at timestamptz NOT NULL DEFAULT clock_timestamp())",
    "CREATE TABLE starts (label text PRIMARY KEY, at timestamptz NOT NULL)",
    "CREATE TABLE gates (name text PRIMARY KEY)",
)


def _record(query: sql.Composable, params: tuple) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(RECORD_URL, autocommit=True, connect_timeout=3) as conn:
                conn.execute(query, params)
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # retry interval of the deadline-bounded reconnect


def record_execution(job: int) -> None:
    _record(sql.SQL("INSERT INTO {}.executions (id, job, pid) VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING").format(SCHEMA), (uuid.uuid4(), job, os.getpid()))


def executions_of(job: int) -> int:
    with psycopg.connect(RECORD_URL, autocommit=True, connect_timeout=3) as conn:
        query = sql.SQL("SELECT count(*) FROM {}.executions WHERE job = %s").format(SCHEMA)
        return conn.execute(query, (job,)).fetchone()[0]


def gate_open(name: str) -> bool:
    with psycopg.connect(RECORD_URL, autocommit=True, connect_timeout=3) as conn:
        query = sql.SQL("SELECT 1 FROM {}.gates WHERE name = %s").format(SCHEMA)
        return conn.execute(query, (name,)).fetchone() is not None


@app.transaction()
def apply_effect(conn: psycopg.Connection, job: int) -> int:
    conn.execute(sql.SQL("INSERT INTO {}.effects (job, pid) VALUES (%s, %s)").format(SCHEMA),
                 (job, os.getpid()))
    return job


@app.step()
def plain_work(job: int, seconds: float, fail_first: bool) -> int:
    record_execution(job)
    time.sleep(seconds)  # simulated work inside the step
    if fail_first and executions_of(job) == 1:
        raise RuntimeError(f"job {job} fails its first attempt on purpose")
    return job


@app.workflow()
def drain_job(job: int, seconds: float = 0.0, fail_first: bool = False) -> int:
    """A transaction step, then a plain step: the shape of the issue's restart drain.

    With ``fail_first`` the first attempt fails after its transaction step, so the next
    attempt resumes from a checkpoint, as the runs of a busy system often do."""
    apply_effect(job)
    return plain_work(job, seconds, fail_first)


@app.workflow()
def plain_job(job: int, seconds: float) -> int:
    """No steps: its outcome exists only in the worker's memory until the worker writes it."""
    record_execution(job)
    time.sleep(seconds)  # simulated work inside the job
    return job


@app.workflow()
def stamp(label: str) -> str:
    """Records when it started, on the database clock, to measure enqueue-to-start latency."""
    _record(sql.SQL("INSERT INTO {}.starts (label, at) VALUES (%s, clock_timestamp())")
            .format(SCHEMA), (label,))
    return label


@app.transaction()
def hold_connection(conn: psycopg.Connection, job: int, gate: str) -> int:
    """Keeps a pooled connection checked out (this step's transaction) until the gate opens."""
    conn.execute("SELECT 1")
    while not gate_open(gate):
        time.sleep(0.05)  # a transaction held open on a gate: poll interval
    return job


@app.workflow()
def hold(job: int, gate: str) -> int:
    return hold_connection(job, gate)


@app.workflow()
def poison() -> None:
    """Crashes the whole worker process, as a segfault in native code would (without leaving
    a core file behind)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.abort()


@app.step()
def wait_for_gate(job: int, gate: str) -> int:
    """Waits through a database outage too: the step itself never fails."""
    while True:
        try:
            if gate_open(gate):
                return job
        except psycopg.OperationalError:
            pass
        time.sleep(0.05)  # a step blocked on a gate: poll interval


@app.workflow()
def gated_effect(job: int) -> int:
    """A plain step held by gate ``before``, a transaction step, a plain step held by gate
    ``after``: a test decides what the database has seen at each point."""
    wait_for_gate(job, "before")
    apply_effect(job)
    wait_for_gate(job, "after")
    return job
