"""The next deploy of ``ops_app``: step three is fixed, every step records ``v2``.

Same workflow, step and queue names, so a fork of a v1 run replays the v1 checkpoints of the
steps before the fork point and runs the rest here.
"""

from __future__ import annotations

from ops_app import record

import pgsched

VERSION = "v2"

app = pgsched.App("ops")
ops = app.queue("ops", concurrency=1)


def _step(key: str, n: int, result: str | None = None) -> str:
    record(key, n, VERSION)
    return result or f"{VERSION}-{n}"


@app.step()
def step_one(key: str, gated: bool) -> str:
    return _step(key, 1)


@app.step()
def step_two(key: str, gated: bool) -> str:
    return _step(key, 2)


@app.step()
def step_three(key: str, gated: bool) -> str:
    return _step(key, 3, "fixed-3")


@app.step()
def step_four(key: str, gated: bool) -> str:
    return _step(key, 4)


@app.step()
def step_five(key: str, gated: bool) -> str:
    return _step(key, 5)


@app.workflow()
def five_steps(key: str, gated: bool = False) -> list[str]:
    return [step(key, gated) for step in (step_one, step_two, step_three, step_four, step_five)]
