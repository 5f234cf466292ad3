"""Worker app for the core tests: a 5-step workflow whose steps record each execution."""

from __future__ import annotations

import os
import time

import psycopg
from psycopg import sql

import pgsched

app = pgsched.App("core")
SCHEMA = sql.Identifier(os.environ["PGSCHED_SCHEMA"])


def record_call(name: str, detail: str = "") -> None:
    """Committed on its own connection, so an execution is visible even if the worker dies."""
    with psycopg.connect(os.environ["PGSCHED_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {}.calls (name, detail, pid) VALUES (%s, %s, %s)").format(SCHEMA),
            (name, detail, os.getpid()),
        )


def block_here(flag: str) -> None:
    """Park this step forever on workers started with the flag (they get killed or stopped)."""
    if os.environ.get(flag) == "1":
        record_call("blocked", flag)
        while True:
            time.sleep(0.05)  # parked until the test kills or stops the worker


@app.step()
def step_one(order_id: int) -> int:
    record_call("step_one")
    return order_id * 10


@app.transaction()
def step_two(conn: psycopg.Connection, value: int) -> int:
    record_call("step_two")
    conn.execute(sql.SQL("INSERT INTO {}.effects (step, value) VALUES (2, %s)").format(SCHEMA),
                 (value,))
    return value + 1


@app.step()
def step_three(value: int) -> int:
    record_call("step_three")
    block_here("CORE_BLOCK_STEP3")
    return value + 1


@app.transaction()
def step_four(conn: psycopg.Connection, value: int) -> int:
    record_call("step_four")
    conn.execute(sql.SQL("INSERT INTO {}.effects (step, value) VALUES (4, %s)").format(SCHEMA),
                 (value,))
    return value + 1


@app.step()
def step_five(value: int) -> str:
    record_call("step_five")
    return f"done:{value}:{os.getpid()}"


@app.workflow()
def five_steps(order_id: int) -> str:
    value = step_one(order_id)
    value = step_two(value)
    value = step_three(value)
    value = step_four(value)
    return step_five(value)


@app.workflow()
def once(label: str) -> str:
    record_call("once", label)
    return f"ran:{label}"


@app.workflow(max_attempts=2)
def always_fails() -> None:
    record_call("always_fails")
    raise RuntimeError("the payment provider said no")


@app.step()
def child_step(x: int) -> int:
    record_call("child_step")
    return x * 2


@app.workflow()
def child(x: int) -> int:
    return child_step(x) + 1


@app.workflow()
def parent(x: int) -> list[int]:
    return [child(x), child(x + 1)]


@app.step()
def slow_child_step(x: int) -> int:
    record_call("slow_child_step")
    block_here("CORE_BLOCK_CHILD")
    return x + 100


@app.workflow()
def slow_child(x: int) -> int:
    first = child_step(x)
    return slow_child_step(first)


@app.workflow(max_attempts=3)
def parent_of_slow_child(x: int) -> int:
    return slow_child(x) + 1
