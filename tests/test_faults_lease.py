"""A worker that loses its lease (issue 10, fault 5): paused with SIGSTOP, or cut off from the
network, for longer than the takeover timeout.

Another worker takes its runs over meanwhile; those runs may run again (at least once).
What must not happen is the resumed worker's own confusion: claiming before it has
re-registered, or its takeover loop re-queueing runs it holds, so that old and new attempts
run side by side. The tests therefore allow a second execution only of the runs that were in
flight when the fault began, and require every other run to execute exactly once.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import timedelta

import psycopg

from tests.waiting import wait_for, worker_backends

JOBS = 120
SECONDS = 0.5  # each job's length: long enough to be in flight when a takeover happens

LEASE = {
    "PGSCHED_HEARTBEAT_INTERVAL": "0.5",
    "PGSCHED_TAKEOVER_TIMEOUT": "2",
    "PGSCHED_POLL_INTERVAL": "0.5",
    "PGSCHED_POOL_SIZE": "8",
}


def start_pair(fault, workers, load_app_module, *, faulty_env: dict[str, str]):  # type: ignore[no-untyped-def]
    """The worker the test breaks (concurrency 4) and a healthy one (concurrency 2), draining
    one queue of jobs that record each execution."""
    module = fault.load_app(load_app_module)
    module.drain.enqueue_many([(module.plain_job, (job, SECONDS), {}) for job in range(JOBS)])
    faulty = workers.start("fault_app.py", "--queues", "drain", "--concurrency", "4",
                           env=faulty_env)
    healthy = workers.start("fault_app.py", "--queues", "drain", "--concurrency", "2",
                            env=fault.worker_env(**LEASE))
    wait_for(lambda: len(fault.sql("SELECT DISTINCT pid FROM executions")) == 2
             and len(fault.executions()) >= 12, 30,
             what="both workers to be running jobs", logs=workers.logs)
    return faulty, healthy


def in_flight_when_frozen(fault, pid: int, logs: Callable[[], str]) -> set[int]:  # type: ignore[no-untyped-def]
    """The jobs the frozen worker holds. It can send nothing now, but a statement it sent just
    before the fault still finishes on the server: once none of its backends is 'active', its
    last statements have landed, and one look is its state at the moment of the fault (runs
    it finished but had not recorded are still RUNNING under it, and count as in flight).

    The look counts only if it came before the takeover, which deletes the worker's row:
    a row still there after the look proves it."""
    worker = registered_id(fault, pid)
    assert worker is not None, f"worker {pid} has no row in workers at the fault\n{logs()}"
    wait_for(lambda: not active_backends(fault, pid), 1.0,
             what=f"the statements worker {worker} sent before the fault to finish",
             logs=lambda: f"still active: {active_backends(fault, pid)}\n{logs()}")
    in_flight = fault.running_on(pid)
    assert registered_id(fault, pid) == worker, (
        f"worker {worker} was taken over before the test read its runs: the in-flight set "
        f"{sorted(in_flight)} may be incomplete\n{logs()}")
    return in_flight


def registered_id(fault, pid: int) -> str | None:  # type: ignore[no-untyped-def]
    """The id the worker with this pid registered under (its connections' application_name),
    or None once its row is gone."""
    rows = fault.sql("SELECT id FROM workers WHERE pid = %s", (pid,))
    return rows[0][0] if rows else None


def active_backends(fault, pid: int) -> list[str]:  # type: ignore[no-untyped-def]
    """The statements the worker's server backends are still running."""
    return [query[:120] for state, query in worker_backends(fault.sql, pid)
            if state == "active"]


def declared_dead(fault, pid: int) -> bool:  # type: ignore[no-untyped-def]
    """The fleet has given up on this worker: its runs were taken over and it holds no
    fresh lease (its row is gone, or its heartbeat older than the takeover timeout)."""
    return not fault.running_on(pid) and not fault.sql(
        "SELECT 1 FROM workers WHERE pid = %s "
        "AND heartbeat_at > clock_timestamp() - interval '2 seconds'", (pid,))


def assert_only_in_flight_ran_twice(fault, in_flight: set[int], logs: str) -> None:  # type: ignore[no-untyped-def]
    wait_for(lambda: fault.statuses().get("SUCCESS") == JOBS, 90,
             what="every run to succeed", logs=lambda: f"{fault.statuses()}\n{logs}")
    counts = fault.executions()
    twice = {job: n for job, n in counts.items() if n > 1 and job not in in_flight}
    detail = fault.sql("SELECT job, array_agg(pid ORDER BY at) FROM executions "
                       "WHERE job = ANY(%s) GROUP BY job", (list(twice),))
    assert twice == {}, (
        f"runs not in flight at the fault executed more than once: {twice} "
        f"(pids in order: {detail}); in flight at the fault: {sorted(in_flight)}\n{logs}")
    assert set(counts) == set(range(JOBS))


def test_a_worker_paused_past_its_lease_does_not_run_work_twice(throwaway, workers,
                                                                 load_app_module) -> None:
    """While the resumed worker cannot re-register (the test holds a lock that makes writes
    to ``workers`` wait, for less than the takeover timeout), it must claim nothing: its lease
    lapsed during the pause and it cannot prove a fresh one."""
    fault = throwaway()
    paused, _ = start_pair(fault, workers, load_app_module, faulty_env=fault.worker_env(**LEASE))

    paused.send_signal(signal.SIGSTOP)
    try:
        in_flight = in_flight_when_frozen(fault, paused.pid, workers.logs)
        wait_for(lambda: declared_dead(fault, paused.pid), 30,
                 what="the healthy worker to take the paused worker's runs over",
                 logs=workers.logs)
        time.sleep(3)  # the fault: paused for about three takeover timeouts in all
        with psycopg.connect(fault.server.url) as locker:
            locker.execute(f'LOCK TABLE "{fault.schema}".workers IN SHARE MODE')
            paused.send_signal(signal.SIGCONT)
            claimed_unregistered = wait_for_value(lambda: fault.running_on(paused.pid), 1.0)
            locker.rollback()
    finally:
        paused.send_signal(signal.SIGCONT)

    assert not claimed_unregistered, (
        f"the resumed worker claimed jobs {sorted(claimed_unregistered)} before it had "
        f"re-registered\n{workers.logs()}")
    assert_only_in_flight_ran_twice(fault, in_flight, workers.logs())
    assert paused.poll() is None, "the resumed worker exited"


def wait_for_value(probe: Callable[[], set[int]], seconds: float) -> set[int]:
    """Watch ``probe`` for ``seconds``: the first non-empty answer, or an empty set."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)  # poll interval of a watch that must see nothing for the whole stretch
    return set()


def test_a_worker_cut_off_past_its_lease_does_not_run_work_twice(throwaway, workers,
                                                                  load_app_module) -> None:
    fault = throwaway()
    cut_off, _ = start_pair(fault, workers, load_app_module,
                            faulty_env=fault.worker_env(through_proxy=True, **LEASE))

    fault.proxy.cut()
    in_flight = in_flight_when_frozen(fault, cut_off.pid, workers.logs)
    wait_for(lambda: declared_dead(fault, cut_off.pid), 30,
             what="the cut-off worker to be declared dead", logs=workers.logs)
    time.sleep(9)  # the fault: a cut of about six takeover timeouts in all
    fault.proxy.restore()
    (restored_at,) = fault.sql("SELECT clock_timestamp()")[0]

    # Read in the probe itself: the row keeps only the latest heartbeat.
    (first_beat,) = wait_for(
        lambda: fault.sql("SELECT heartbeat_at FROM workers WHERE pid = %s AND heartbeat_at > %s",
                          (cut_off.pid, restored_at)), 30,
        what="the cut-off worker to heartbeat again", logs=workers.logs)[0]
    print(f"\n[network cut] first heartbeat {first_beat - restored_at} after the network "
          f"returned")
    assert first_beat - restored_at < timedelta(seconds=1.5), (
        f"the worker's first heartbeat came {first_beat - restored_at} after the network "
        f"returned (heartbeat interval 0.5 s)\n{workers.logs()}")
    assert_only_in_flight_ran_twice(fault, in_flight, workers.logs())
    assert cut_off.poll() is None, "the cut-off worker exited"
