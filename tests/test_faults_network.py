"""A connection blip between finishing a run and recording it (issue 10, fault 4).

The worker reaches the server through a TCP proxy the test cuts for 2.5 s, shorter than the
takeover timeout, while runs finish. Their outcomes cannot be written during the cut; they
must be written after it, and no finished run may be handed back and run again.

The worker's LISTEN connection goes straight to the server (``PGSCHED_LISTEN_DATABASE_URL``,
as behind a pooler) and polling is slow, so the first thing that meets the cut is the round
that writes the first finished outcomes, as in a busy worker.
"""

from __future__ import annotations

import time

from tests.fault_rig import WORKER_ROLE
from tests.waiting import wait_for

JOBS = 24
CONCURRENCY = 8


def test_outcomes_finished_during_a_blip_are_written_after_it(throwaway, workers,
                                                              load_app_module) -> None:
    fault = throwaway()
    module = fault.load_app(load_app_module)
    module.drain.enqueue_many([(module.plain_job, (job, 1.0), {}) for job in range(JOBS)])
    workers.start("fault_app.py", "--queues", "drain", "--concurrency", str(CONCURRENCY),
                  env=fault.worker_env(through_proxy=True, PGSCHED_HEARTBEAT_INTERVAL="1",
                                       PGSCHED_TAKEOVER_TIMEOUT="10", PGSCHED_POOL_SIZE="12",
                                       PGSCHED_POLL_INTERVAL="5",
                                       PGSCHED_LISTEN_DATABASE_URL=fault.server.url_for(
                                           WORKER_ROLE)))
    wait_for(lambda: len(fault.executions()) >= CONCURRENCY, 30,
             what="the first runs to start", logs=workers.logs)

    fault.proxy.cut()
    time.sleep(2.5)  # the fault itself: the runs started above finish during the cut
    fault.proxy.restore()

    wait_for(lambda: fault.statuses().get("SUCCESS") == JOBS, 60,
             what="every run to succeed after the blip",
             logs=lambda: f"{fault.statuses()}\n{workers.logs()}")
    twice = {job: n for job, n in fault.executions().items() if n > 1}
    assert twice == {}, (f"runs executed again after a 2.5 s blip (job: executions): {twice}"
                         f"\n{workers.logs()}")
    assert fault.statuses() == {"SUCCESS": JOBS}
