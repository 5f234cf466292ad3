"""A five-step workflow for the operations tests.

Every step execution is written to ``ops_log`` on its own connection (so it is visible even
when the step's checkpoint is later refused), a step can be held at a gate row in
``ops_gate``, and ``flaky`` fails while its key is in ``ops_fail``. The test creates the
three tables.
"""

from __future__ import annotations

import time

from psycopg import sql

import pgsched

VERSION = "v1"

app = pgsched.App("ops")
ops = app.queue("ops", concurrency=1)


def record(key: str, step: int, what: str) -> None:
    with app.db.connection() as conn:
        conn.execute(
            sql.SQL("INSERT INTO {}.ops_log (key, step, what) VALUES (%s, %s, %s)").format(
                sql.Identifier(app.db.schema)
            ),
            (key, step, what),
        )


def wait_gate(key: str, step: int, timeout: float = 60.0) -> None:
    """Hold the step until the test opens its gate (an observable row, not a sleep)."""
    waited = 0.0
    query = sql.SQL("SELECT 1 FROM {}.ops_gate WHERE key = %s AND step = %s").format(
        sql.Identifier(app.db.schema)
    )
    while waited < timeout:
        with app.db.connection() as conn:
            if conn.execute(query, (key, step)).fetchone():
                return
        time.sleep(0.02)  # a step blocked on a gate: poll interval
        waited += 0.02
    raise TimeoutError(f"gate {key}/{step} never opened")


def is_failing(key: str) -> bool:
    with app.db.connection() as conn:
        return conn.execute(
            sql.SQL("SELECT 1 FROM {}.ops_fail WHERE key = %s").format(
                sql.Identifier(app.db.schema)
            ),
            (key,),
        ).fetchone() is not None


def _step(key: str, n: int, gated: bool) -> str:
    record(key, n, "start")
    if gated:
        wait_gate(key, n)
    record(key, n, VERSION)
    return f"{VERSION}-{n}"


@app.step()
def step_one(key: str, gated: bool) -> str:
    return _step(key, 1, gated)


@app.step()
def step_two(key: str, gated: bool) -> str:
    return _step(key, 2, gated)


@app.step()
def step_three(key: str, gated: bool) -> str:
    return _step(key, 3, gated)


@app.step()
def step_four(key: str, gated: bool) -> str:
    return _step(key, 4, gated)


@app.step()
def step_five(key: str, gated: bool) -> str:
    return _step(key, 5, gated)


@app.workflow()
def five_steps(key: str, gated: bool = False) -> list[str]:
    """With ``gated`` each step waits for its gate, so a test can act between steps."""
    try:
        return [step(key, gated) for step in (step_one, step_two, step_three, step_four,
                                              step_five)]
    finally:
        record(key, 0, "exit")


@app.workflow()
def hold_then_return(key: str) -> str:
    """One step, then waits in the body (not in a step) and returns."""
    step_one(key, False)
    wait_gate(key, 99)
    record(key, 0, "returning")
    return "finished"


@app.workflow()
def marker(key: str) -> str:
    record(key, 0, "marker")
    return key


@app.workflow(max_attempts=1)
def flaky(key: str) -> str:
    first = step_one(key, False)
    if is_failing(key):
        raise RuntimeError(f"{key} is set to fail")
    return first + "+" + step_two(key, False)
