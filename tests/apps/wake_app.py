"""Worker app for the wake-up tests: a job that does nothing, so that how long a run waited
to start (``started_at - created_at``) measures the wake-up path alone, and a producer entry
point that enqueues from a separate process and exits at once."""

from __future__ import annotations

import random
import sys
import time

import pgsched
from pgsched.wakeups import waker_for

app = pgsched.App("wakes")
jobs = app.queue("jobs")


@app.workflow(name="wake.noop")
def noop(index: int) -> None:
    """Nothing: its start time is the measurement."""


def produce(count: int, pause: float, burst: int) -> None:
    """Enqueue ``count`` runs one at a time, in bursts of ``burst`` back-to-back enqueues
    with up to ``pause`` seconds between bursts, then exit without closing anything: the
    waker must flush at interpreter exit. The process's one-time start-up (its pool and its
    waker connect) comes first: it is not a wake-up, and on a busy machine it takes long."""
    with app.db.connection() as conn:
        conn.execute("SELECT 1")
    waker_for(app.db)
    for index in range(count):
        jobs.enqueue(noop, index)
        if pause and (index + 1) % burst == 0:
            time.sleep(random.uniform(0, pause))  # the load: a random pause between bursts


if __name__ == "__main__":
    produce(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]))
