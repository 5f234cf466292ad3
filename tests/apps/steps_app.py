"""Worker app for composing steps and for async workflows (issue 14): steps inside steps,
transactions and children where they cannot be exactly once, ``asyncio.gather`` of steps and
children, steps in threads, and async steps and children.

Every execution a step makes is recorded on its own connection (``event``), so a test counts
executions from the database even across retries. A workflow that must be resumed from its
checkpoints fails its first attempt on purpose *after* its steps (``fail_first``), so its
second attempt replays them.
"""

from __future__ import annotations

import asyncio
import os

import psycopg
from psycopg import sql

import pgsched

app = pgsched.App("steps")
SCHEMA = sql.Identifier(os.environ["PGSCHED_SCHEMA"])

TABLES = [
    "CREATE TABLE events (label text, key text, at timestamptz DEFAULT clock_timestamp())",
    "CREATE TABLE effects (label text)",
]


def event(label: str, key: str = "") -> int:
    """Record one execution; return how many executions of ``label``/``key`` exist now."""
    with psycopg.connect(os.environ["PGSCHED_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(sql.SQL("INSERT INTO {}.events (label, key) VALUES (%s, %s)").format(SCHEMA),
                     (label, key))
        query = sql.SQL("SELECT count(*) FROM {}.events WHERE label = %s AND key = %s")
        row = conn.execute(query.format(SCHEMA), (label, key)).fetchone()
    assert row is not None
    return int(row[0])


def fail_first(label: str) -> None:
    """Fail this run's first attempt (a retryable error): the next attempt replays."""
    if event(label) == 1:
        raise RuntimeError(f"{label}: the first attempt fails on purpose")


# -- steps inside steps -----------------------------------------------------------------------


@app.step()
def inner(x: int) -> int:
    event("inner", str(x))
    return x + 1


@app.step(retries=1, backoff=0.01)
def outer(x: int) -> int:
    """Calls a step twice, then fails its first try: the inner calls are part of it."""
    total = inner(x) + inner(x + 10)
    if event("outer", str(x)) == 1:
        raise ValueError("outer step's first try fails after its inner steps ran")
    return total


@app.step()
def after(x: int) -> int:
    event("after", str(x))
    return x * 100


@app.workflow(max_attempts=2)
def composed(x: int) -> list[int]:
    first = outer(x)
    second = after(x)
    fail_first(f"composed:{x}")
    return [first, second]


@app.transaction()
def write_effect(conn: psycopg.Connection, label: str) -> str:
    conn.execute(sql.SQL("INSERT INTO {}.effects (label) VALUES (%s)").format(SCHEMA), (label,))
    return label


@app.step(retries=1, backoff=0.01)
def step_calling_transaction(label: str) -> str:
    written = write_effect(label)
    if event("step_calling_transaction", label) == 1:
        raise ValueError("the outer step fails after its transaction committed")
    return written


@app.workflow(max_attempts=1)
def transaction_in_step(label: str) -> str:
    return step_calling_transaction(label)


@app.transaction()
def transaction_calling_transaction(conn: psycopg.Connection, label: str) -> str:
    return write_effect(label)


@app.workflow(max_attempts=1)
def transaction_in_transaction(label: str) -> str:
    return transaction_calling_transaction(label)


@app.transaction()
def transaction_calling_step(conn: psycopg.Connection, label: str) -> str:
    """A step inside a transaction is a plain call, part of the transaction's attempt."""
    conn.execute(sql.SQL("INSERT INTO {}.effects (label) VALUES (%s)").format(SCHEMA), (label,))
    return str(inner(len(label)))


@app.workflow(max_attempts=1)
def step_in_transaction(label: str) -> str:
    return transaction_calling_step(label)


@app.workflow()
def little_child(x: int) -> int:
    return x + 1


@app.step()
def step_calling_child(x: int) -> int:
    return little_child(x)


@app.workflow(max_attempts=1)
def child_in_step(x: int) -> int:
    return step_calling_child(x)


# -- async steps and gather ------------------------------------------------------------------


@app.step()
async def fruit(name: str, delay: float) -> str:
    """Returns its own name after ``delay``: a swapped replay shows as swapped names."""
    await asyncio.sleep(delay)
    event("fruit", name)
    return name.upper()


@app.workflow(max_attempts=2)
async def basket() -> dict[str, str]:
    # The apple is called first and finishes last.
    apple, pear = await asyncio.gather(fruit("apple", 0.5), fruit("pear", 0.0))
    fail_first("basket")
    return {"apple": apple, "pear": pear}


@app.step(retries=2, backoff=0.01)
async def flaky_async(key: str) -> int:
    count = event("flaky_async", key)
    await asyncio.sleep(0)
    if count < 3:
        raise ValueError(f"async step try {count} fails")
    return count


@app.workflow(max_attempts=1)
async def retried_async_step(key: str) -> int:
    return await flaky_async(key)


@app.workflow(max_attempts=1)
def sync_calls_async_step(name: str) -> str:
    """An async step called from a plain workflow runs to its result."""
    return fruit(name, 0.0)


@app.step()
def count(name: str) -> str:
    event("count", name)
    return name.upper()


@app.workflow(max_attempts=1)
async def steps_in_threads() -> list[str]:
    return list(await asyncio.gather(asyncio.to_thread(count, "apple"),
                                     asyncio.to_thread(count, "pear")))


@app.workflow(max_attempts=1)
async def step_in_executor() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, count, "plum")


@app.step()
async def step_using_a_thread(name: str) -> str:
    """The way to run blocking code from an async step: a thread inside the step."""
    return await asyncio.to_thread(count, name)


@app.workflow(max_attempts=1)
async def thread_inside_step() -> str:
    return await step_using_a_thread("fig")


# -- async children ----------------------------------------------------------------------------


@app.workflow()
async def async_child(x: int, delay: float) -> int:
    await asyncio.sleep(delay)
    return await fruit_count(x)


@app.step()
async def fruit_count(x: int) -> int:
    event("fruit_count", str(x))
    return x * 2


@app.workflow(max_attempts=2)
async def async_parent(x: int) -> list[int]:
    first = await async_child(x, 0.0)
    # Started together; the first one called finishes last.
    second, third = await asyncio.gather(async_child(x + 1, 0.4), async_child(x + 2, 0.0))
    fail_first(f"async_parent:{x}")
    return [first, second, third]


async def pick(name: str, delay: float) -> str:
    """A helper coroutine (not a step) that calls a step after a racing await."""
    await asyncio.sleep(delay)
    return count(name)


@app.workflow(max_attempts=1)
async def helpers_in_gather() -> list[str]:
    return list(await asyncio.gather(pick("apple", 0.2), pick("pear", 0.0)))


@app.workflow()
def plain_child(name: str) -> str:
    """A plain child on its async parent's loop thread, calling an async step and child."""
    return fruit(name, 0.0) + ":" + str(async_child(len(name), 0.0))


@app.workflow(max_attempts=1)
async def async_parent_of_plain_child(name: str) -> str:
    return plain_child(name)


@app.step(retries=3, backoff=0.01)
def exits_inside(key: str) -> None:
    event("exits_inside", key)
    raise SystemExit(3)


@app.step(retries=3, backoff=0.01)
def calls_exiting_step(key: str) -> None:
    exits_inside(key)


@app.workflow(max_attempts=2)
def base_exception_in_nested_step(key: str) -> None:
    calls_exiting_step(key)


@app.step()
async def slow_fruit(name: str) -> str:
    event("slow_fruit:start", name)
    await asyncio.sleep(0.3)
    event("slow_fruit:end", name)
    return name


@app.workflow(max_attempts=1)
async def five_at_once() -> list[str]:
    return list(await asyncio.gather(*(slow_fruit(f"f{i}") for i in range(5))))
