"""The core paths through a real PgBouncer in transaction mode (Debian's package, 1.18 here).

Every connection pgsched opens goes through the pooler: migrations, enqueue, start and
result, transactional enqueue, the worker's claim loop, heartbeats, cron and the CLI. The
test's own checks (``sql``) and the jobs' records go straight to the server. PgBouncer 1.18
has no support for protocol-level prepared statements, so anything pgsched prepares on a
server connection shows up as ``prepared statement "_pg3_0" already exists`` (or does not
exist) on the next client that is lent that connection: ``PGSCHED_POOLER=transaction``
turns preparing off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from types import ModuleType

import psycopg
import pytest

from tests import pgbouncer as bouncers
from tests.conftest import ROOT, Workers
from tests.waiting import wait_for

pytestmark = pytest.mark.skipif(not bouncers.installed(), reason="pgbouncer is not installed")


@pytest.fixture(scope="module")
def bouncer(database_url: str) -> Iterator[bouncers.PgBouncer]:
    with bouncers.pgbouncer(database_url) as running:
        yield running


@pytest.fixture
def route() -> str:
    """How pgsched reaches the database: through PgBouncer unless a test says "direct"."""
    return "pgbouncer"


@pytest.fixture
def env(database_url: str, schema: str, bouncer: bouncers.PgBouncer, route: str,
        monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The suite's environment with pgsched's URL on the pooler and the pooler setting on;
    LISTEN goes to the server directly (a test may drop it to poll only)."""
    values = {
        "PGSCHED_SCHEMA": schema,
        "PGSCHED_POOL_SIZE": "4",
        "PGSCHED_HEARTBEAT_INTERVAL": "0.5",
        "PGSCHED_TAKEOVER_TIMEOUT": "2",
        "PGSCHED_POLL_INTERVAL": "0.5",
        "PGSCHED_SHUTDOWN_GRACE": "10",
        "FAULT_RECORD_URL": database_url,
    }
    if route == "pgbouncer":
        values |= {"PGSCHED_DATABASE_URL": bouncer.url, "PGSCHED_POOLER": "transaction",
                   "PGSCHED_LISTEN_DATABASE_URL": database_url}
    else:
        values |= {"PGSCHED_DATABASE_URL": database_url}
    for key in ("PGSCHED_POOLER", "PGSCHED_LISTEN_DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **values, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def faults(load_app_module: Callable[[str], ModuleType], sql) -> ModuleType:
    module = load_app_module("fault_app.py")
    module.app.migrate()  # through the pooler: its advisory lock is transaction-scoped
    for statement in module.TABLES:
        sql(statement)
    return module


def test_enqueue_start_result_transactional_enqueue_and_cli(faults, workers: Workers, sql,
                                                             env, bouncer) -> None:
    app = faults.app
    # Repeated statements on pooled connections: psycopg would prepare them on the 5th run.
    handles = [app.start(faults.drain_job, job) for job in range(12)]
    with psycopg.connect(bouncer.url) as conn:  # the user's own transaction, via the pooler
        for job in range(100, 106):
            faults.drain.enqueue(faults.drain_job, job, conn=conn)
        conn.rollback()
    with psycopg.connect(bouncer.url) as conn:
        for job in range(200, 206):
            handles.append(faults.drain.enqueue(faults.drain_job, job, conn=conn))
    workers.start("fault_app.py", "--concurrency", "8")
    assert [h.result(timeout=60) for h in handles] == [*range(12), *range(200, 206)]
    assert sql("SELECT count(*) FROM workflows") == [(18,)]  # the rolled-back six: none
    assert sql("SELECT count(*), count(DISTINCT job) FROM effects") == [(18, 18)]

    listed = subprocess.run(
        [sys.executable, "-m", "pgsched", "workflows", "list", "--json", "--limit", "100"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 18
    assert "prepared statement" not in workers.logs()


@pytest.mark.parametrize("route", ["pgbouncer", "direct"])
def test_a_worker_with_concurrency_8_drains_500_runs(faults, workers: Workers, sql,
                                                      route: str) -> None:
    """The drain rate and the start-to-result latency, through the pooler and direct."""
    app = faults.app
    worker = workers.start("fault_app.py", "--concurrency", "8")
    workers.wait_registered(sql, 1)
    latencies = []
    for job in range(20):
        began = time.monotonic()
        app.start(faults.drain_job, 10_000 + job).result(timeout=30)
        latencies.append(time.monotonic() - began)

    began = time.monotonic()  # the enqueues count: they go through the pooler too
    for job in range(500):
        faults.drain.enqueue(faults.drain_job, job)
    wait_for(lambda: sql("SELECT count(*) FROM workflows WHERE status IN "
                         "('SUCCESS', 'ERROR', 'DEAD')")[0][0] == 520, 120,
             what="500 runs to finish", logs=workers.logs)
    drained = time.monotonic() - began
    assert sql("SELECT status, count(*) FROM workflows GROUP BY 1") == [("SUCCESS", 520)]
    assert sql("SELECT count(*), count(DISTINCT job) FROM effects") == [(520, 520)]
    assert worker.poll() is None
    assert "prepared statement" not in workers.logs()
    latencies.sort()
    print(f"\n{route}: 500 runs enqueued and drained in {drained:.2f}s "
          f"({500 / drained:.0f} runs/s) with concurrency 8; "
          f"start-to-result median {latencies[10] * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms")


def test_cron_ticks_from_three_polling_workers(workers: Workers, sql, schema: str) -> None:
    """No LISTEN URL at all: the workers poll, and every second still runs exactly once."""
    sql(f'CREATE SCHEMA "{schema}"')
    sql("CREATE TABLE fleet_ticks (scheduled_at timestamptz NOT NULL, pid integer NOT NULL)")
    poll_only = {"PGSCHED_LISTEN_DATABASE_URL": ""}
    for _ in range(3):
        workers.start("cron_fleet.py", env=poll_only)
    wait_for(lambda: sql("SELECT count(*) FROM fleet_ticks")[0][0] >= 6, 60,
             what="six ticks", logs=workers.logs)
    rows = sql("SELECT scheduled_at, count(*) FROM fleet_ticks GROUP BY 1 HAVING count(*) > 1")
    assert rows == []
    assert "polling every" in workers.logs()
    assert "prepared statement" not in workers.logs()
