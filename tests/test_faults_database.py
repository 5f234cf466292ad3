"""Database restarts during a drain (issue 10, fault 3): every run ends SUCCESS, none ERROR,
and no transaction step commits twice.

Three real workers drain jobs of a transaction step (one ``effects`` row per commit) and a
plain step (one ``executions`` row per execution) from a throwaway server, which the test
restarts with ``pg_ctl restart -m fast`` twice and ``-m immediate`` once, each when the drain
reaches a given share of its runs, so every restart lands mid-drain however fast the machine.
"""

from __future__ import annotations

import time

import pytest

from tests.fault_rig import TERMINAL, Figures, figures
from tests.waiting import wait_for

#: Generous leases, so that what these tests see is the handling of transient database
#: errors, not takeovers of workers whose heartbeat a restart delayed.
DRAIN_SETTINGS = {
    "PGSCHED_HEARTBEAT_INTERVAL": "1",
    "PGSCHED_TAKEOVER_TIMEOUT": "10",
    "PGSCHED_POOL_SIZE": "8",
}


def drain_through_restarts(fault, workers, load_app_module, *, jobs: int,  # type: ignore[no-untyped-def]
                           seconds: float, timeout: float, flaky_every: int = 0) -> Figures:
    """``flaky_every``: every n-th job fails its first attempt after its transaction step, so
    runs resuming from a checkpoint are claimed throughout the drain."""
    module = fault.load_app(load_app_module)
    module.drain.enqueue_many([
        (module.drain_job, (job, seconds, bool(flaky_every) and job % flaky_every == 0), {})
        for job in range(jobs)
    ])
    for _ in range(3):
        workers.start("fault_app.py", "--queues", "drain", "--concurrency", "4",
                      env=fault.worker_env(**DRAIN_SETTINGS))
    started = time.monotonic()

    def finished() -> int:
        return fault.sql("SELECT count(*) FROM workflows WHERE status = ANY(%s)",
                         (list(TERMINAL),))[0][0]

    for share, mode in ((0.15, "fast"), (0.45, "fast"), (0.75, "immediate")):
        wait_for(lambda share=share: finished() >= share * jobs, timeout,
                 what=f"{share:.0%} of the drain before a {mode} restart", logs=workers.logs)
        fault.server.restart(mode)
    wait_for(lambda: finished() == jobs, timeout, what="every run to finish",
             interval=0.25, logs=lambda: f"{fault.statuses()}\n{workers.logs()}")
    result = figures(fault, jobs, time.monotonic() - started)
    print(f"\n[restart drain] {result.line()}")
    return result


def assert_drain_ended_well(result: Figures, logs: str) -> None:
    assert result.statuses == {"SUCCESS": result.runs}, (
        f"runs that did not end SUCCESS after the restarts: {result.line()}\n"
        + "\n".join(map(str, result.failures)) + f"\n{logs[-4000:]}")
    assert result.duplicate_effects == 0, result.line()
    assert result.runs_without_effect == 0, result.line()


def test_a_drain_survives_database_restarts(throwaway, workers, load_app_module) -> None:
    fault = throwaway()
    result = drain_through_restarts(fault, workers, load_app_module, jobs=400, seconds=0.02,
                                    timeout=90, flaky_every=3)
    assert_drain_ended_well(result, workers.logs())


@pytest.mark.torture
def test_a_5000_job_drain_survives_database_restarts(throwaway, workers,
                                                     load_app_module) -> None:
    fault = throwaway()
    result = drain_through_restarts(fault, workers, load_app_module, jobs=5000, seconds=0.0,
                                    timeout=240)
    assert_drain_ended_well(result, workers.logs())
