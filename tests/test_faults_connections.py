"""Connections that come back (issue 10, faults 11 and 13).

- The LISTEN thread never dies: after an immediate restart with the server down for a while,
  and after every connection slot was taken, an enqueue wakes the worker within milliseconds
  again. Polling is set to 5 s, so a worker that lost its LISTEN connection for good shows
  start latencies of seconds.
- A worker started while the database is down waits and retries instead of exiting, and
  serves once the database is up; idle pool connections are given back.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timezone

import psycopg

from tests.test_health import get_json
from tests.throwaway import free_port
from tests.waiting import wait_for

#: Polling this slow cannot hide a dead LISTEN connection.
SLOW_POLL = {
    "PGSCHED_POLL_INTERVAL": "5",
    "PGSCHED_HEARTBEAT_INTERVAL": "1",
    "PGSCHED_TAKEOVER_TIMEOUT": "10",
    "PGSCHED_POOL_SIZE": "8",
}

#: What "promptly" means here: far below the 5 s poll interval, with room for a busy machine.
PROMPT = 0.5


class Latency:
    """Enqueue-to-start latency of the ``stamp`` job, one enqueue at a time."""

    def __init__(self, fault, module, logs) -> None:  # type: ignore[no-untyped-def]
        self.fault = fault
        self.module = module
        self.logs = logs
        self.count = 0

    def sample(self) -> float:
        self.count += 1
        label = f"probe-{self.count}"
        # A connection of its own: the test's pooled ones may have died with the server.
        with psycopg.connect(self.fault.server.url, autocommit=True) as conn:
            enqueued = datetime.now(timezone.utc)
            self.module.drain.enqueue(self.module.stamp, label, conn=conn)
        (started,) = wait_for(
            lambda: self.fault.sql("SELECT at FROM starts WHERE label = %s", (label,)), 30,
            what=f"{label} to start", logs=self.logs)[0]
        return (started - enqueued).total_seconds()

    def assert_prompt_again(self, budget: float = 40) -> None:
        """Three prompt starts in a row within ``budget`` seconds: a reconnecting listener
        may take a few seconds to come back, but then every start is prompt again."""
        seen: list[float] = []
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            seen.append(round(self.sample(), 3))
            if len(seen) >= 3 and max(seen[-3:]) < PROMPT:
                return
        raise AssertionError(
            f"start latency never returned under {PROMPT}s (poll interval 5 s); seconds, in "
            f"order: {seen}\n{self.logs()}")


def serving(fault, workers, load_app_module, **settings: str):  # type: ignore[no-untyped-def]
    module = fault.load_app(load_app_module)
    workers.start("fault_app.py", "--queues", "drain", "--concurrency", "2",
                  env=fault.worker_env(**{**SLOW_POLL, **settings}))
    latency = Latency(fault, module, workers.logs)
    latency.assert_prompt_again()
    return latency


def test_listen_comes_back_after_an_immediate_restart(throwaway, workers,
                                                      load_app_module) -> None:
    fault = throwaway()
    latency = serving(fault, workers, load_app_module)

    fault.server.stop("immediate")
    time.sleep(2)  # the fault: the server stays down while the worker tries to reconnect
    fault.server.start()

    latency.assert_prompt_again()


def test_listen_comes_back_after_connection_slots_ran_out(throwaway, workers,
                                                          load_app_module) -> None:
    fault = throwaway({"max_connections": "16", "superuser_reserved_connections": "0"})
    latency = serving(fault, workers, load_app_module)

    hogs: list[psycopg.Connection] = []
    try:
        take_every_slot(fault.server.url, hogs, seconds=0.2)
        hogs[0].execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE usename = 'fault_worker'")
        # Take the slots the worker's connections held before it can reconnect, and keep
        # them while its reconnects fail.
        take_every_slot(fault.server.url, hogs, seconds=1.0)
        time.sleep(3)  # the fault: no slot for the worker for 3 s
    finally:
        for conn in hogs:
            conn.close()

    latency.assert_prompt_again()


def take_every_slot(url: str, hogs: list[psycopg.Connection], seconds: float) -> None:
    """Open connections until the server refuses more, and keep trying for ``seconds`` so
    that slots freed meanwhile are taken too."""
    deadline = time.monotonic() + seconds
    while len(hogs) < 200:
        try:
            hogs.append(psycopg.connect(url, autocommit=True, connect_timeout=3))
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)  # retry interval: slots freed before the deadline are taken too
    raise AssertionError("the server accepted 200 connections; max_connections was not set")


def test_a_worker_started_while_the_database_is_down_waits_for_it(throwaway, workers,
                                                                  load_app_module) -> None:
    """It keeps running, its /readyz says why it is not ready, and it serves once the
    database is up, with no restart by a supervisor."""
    fault = throwaway()
    fault.server.stop("fast")
    port = free_port()
    worker = workers.start("fault_app.py", "--queues", "drain", "--concurrency", "2",
                           env=fault.worker_env(**SLOW_POLL, PGSCHED_HEALTH_PORT=str(port)))
    unready: list[tuple[int, dict]] = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:  # watched, not slept: an exit fails at once
        assert worker.poll() is None, (
            f"the worker exited with status {worker.returncode} while the database was "
            f"down, instead of waiting for it\n{workers.logs()}")
        with contextlib.suppress(OSError):
            unready.append(get_json(port, "/readyz"))
        time.sleep(0.1)  # poll interval of the 4 s watch
    assert unready and all(status == 503 and body.get("reason") for status, body in unready), (
        f"/readyz while the database is down: {unready[-3:]}")

    fault.server.start()
    module = fault.load_app(load_app_module)
    wait_for(lambda: fault.sql("SELECT count(*) FROM workers")[0][0] == 1, 30,
             what="the worker to register once the database is up", logs=workers.logs)
    handle = module.drain.enqueue(module.stamp, "after-the-outage")
    assert handle.result(timeout=30) == "after-the-outage"
    wait_for(lambda: get_json(port, "/readyz")[0] == 200, 30, what="/readyz to say ready",
             logs=workers.logs)
    assert worker.poll() is None


def test_idle_pool_connections_are_given_back(throwaway, workers, load_app_module) -> None:
    fault = throwaway()
    module = fault.load_app(load_app_module)
    workers.start("fault_app.py", "--queues", "drain", "--concurrency", "6",
                  env=fault.worker_env(**{**SLOW_POLL, "PGSCHED_POOL_SIZE": "12",
                                          "PGSCHED_POOL_MAX_IDLE": "1"}))
    module.drain.enqueue_many([(module.hold, (job, "release"), {}) for job in range(6)])
    wait_for(lambda: fault.statuses().get("RUNNING") == 6, 30,
             what="six runs each holding a pooled connection", logs=workers.logs)
    busy = wait_for(lambda: (n := fault.worker_connections()) >= 8 and n, 10,
                    what="the worker to hold a connection per running transaction",
                    logs=workers.logs)

    fault.sql("INSERT INTO gates VALUES ('release')")
    wait_for(lambda: fault.statuses() == {"SUCCESS": 6}, 30, what="the runs to finish",
             logs=workers.logs)
    seen: list[int] = []

    def given_back() -> bool:
        """Keeps every count, so a failure shows how the pool shrank, or did not."""
        seen.append(fault.worker_connections())
        return seen[-1] <= busy - 4

    wait_for(given_back, 40, interval=0.5,
             what=f"the idle worker to give its connections back ({busy} while busy)",
             logs=lambda: f"its connections every 0.5 s: {seen}\n{workers.logs()}")
