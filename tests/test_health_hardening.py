"""Health under pressure, with real worker processes: probes that cannot load the database,
liveness that sees a dead LISTEN thread and capacity held by abandoned runs, recovery right
after a network cut, and the address the server binds."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pgsched
from pgsched.worker import Worker
from pgsched.worker.health import HealthServer
from pgsched.worker.loops import LoopThread
from tests.tcpproxy import tcp_proxy
from tests.test_health import answers, free_port, get_json
from tests.waiting import wait_for


@pytest.fixture
def health_app(load_app_module, sql):
    module = load_app_module("health_app.py")
    module.app.migrate()
    sql("CREATE TABLE releases (at timestamptz DEFAULT clock_timestamp())")
    return module


@pytest.fixture
def own_role(database_url: str) -> Iterator[str]:
    """A login role of this test's own, so its worker's connections can be told apart in
    pg_stat_activity from everything else on a shared server. A test names it before
    ``workers``: fixtures end in reverse order, so its workers are killed before the role's
    backends are ended (a live worker would reconnect as fast as they end)."""
    role = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    yield role
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE usename = %s", (role,))
        wait_for(lambda: conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
                                      (role,)).fetchone()[0] == 0, 10, what="backends to end")
        conn.execute(f'DROP ROLE "{role}"')


def start_served(workers, *args: str, env: dict[str, str] | None = None) -> int:
    port = free_port()
    workers.start("health_app.py", "--health-port", str(port), *args, env=env)
    wait_for(lambda: answers(port), 60, what="the health server", logs=workers.logs)
    wait_for(lambda: get_json(port, "/readyz")[0] == 200, 30, what="readiness",
             logs=workers.logs)
    return port


def test_concurrent_readyz_opens_no_database_connection(health_app, own_role, workers,
                                                        database_url):
    """60 concurrent /readyz used to open about 30 connections; now each answer comes from
    memory. Every backend the worker's role starts during the burst is caught by sampling
    pg_stat_activity continuously."""
    url = make_conninfo(database_url, user=own_role)
    port = start_served(workers, env={"PGSCHED_DATABASE_URL": url})
    started = time.time()
    seen: set[int] = set()
    done = threading.Event()

    def sample() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not done.is_set():
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE usename = %s "
                    "AND backend_start > to_timestamp(%s)", (own_role, started)).fetchall()
                seen.update(pid for (pid,) in rows)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(60) as pool:
            answers_ = list(pool.map(lambda _: get_json(port, "/readyz"), range(60)))
    finally:
        done.set()
        sampler.join(10)
    assert [status for status, _ in answers_] == [200] * 60
    assert seen == set(), f"{len(seen)} connection(s) opened by /readyz requests"


def test_a_dead_listen_thread_fails_liveness(health_app, workers):
    port = start_served(workers)
    assert get_json(port, "/healthz")[0] == 200
    assert health_app.work.enqueue(health_app.kill_listener).result(timeout=30) == "dead"
    status, live = wait_for(lambda: (r := get_json(port, "/healthz"))[0] == 503 and r, 10,
                            what="/healthz to notice the dead listener", logs=workers.logs)
    assert "listen" in live["stale"] and live["loops"]["listen"]["alive"] is False


def test_abandoned_runs_holding_every_slot_fail_liveness(health_app, workers):
    """A worker whose whole capacity is held by runs that were timed out but never returned
    can do no work; a restart frees it."""
    port = start_served(workers, "--concurrency", "1")
    health_app.work.enqueue(health_app.ignore_timeout, timeout=0.5)
    status, live = wait_for(lambda: (r := get_json(port, "/healthz"))[0] == 503 and r, 30,
                            what="/healthz to fail on the abandoned slot", logs=workers.logs)
    assert "capacity" in live["stale"] and live["abandoned_runs"] == 1


def test_capacity_rule_counts_abandoned_runs(env):
    """The rule itself, on a worker object whose dispatcher holds made-up runs."""
    worker = Worker(pgsched.App("capacity"), concurrency=2, configure_logs=False)
    worker.dispatcher = SimpleNamespace(  # type: ignore[assignment]
        last_round=time.monotonic(), running={
            "a": SimpleNamespace(started=0.0, deadline=None, abandoned=True),
            "b": SimpleNamespace(started=0.0, deadline=None, abandoned=False)})
    server = HealthServer(worker, 0, host="127.0.0.1")
    assert server.checks.liveness()[0] == 200
    worker.dispatcher.running["b"].abandoned = True
    status, live = server.checks.liveness()
    assert status == 503 and live["stale"] == ["capacity"] and "restarting" in live["reason"]
    worker.app.close()


@pytest.mark.parametrize("listen", ["false", "true"])
def test_healthz_is_healthy_again_right_after_a_network_cut(health_app, workers, database_url,
                                                            listen):
    """Loops sleep off an error backoff of up to 30 s; judging them by it right after the
    network came back failed /healthz for seconds after a 24 s cut. The worker must answer
    200 throughout: waiting for the database while it is away, then healthy again."""
    params = conninfo_to_dict(database_url)
    with tcp_proxy(params.get("host") or "127.0.0.1", int(params.get("port") or 5432)) as proxy:
        url = make_conninfo(database_url, host="127.0.0.1", port=str(proxy.port))
        port = start_served(workers, env={"PGSCHED_DATABASE_URL": url, "PGSCHED_LISTEN": listen})
        proxy.cut()
        wait_for(lambda: get_json(port, "/healthz")[1].get("status") == "waiting for database",
                 20, what="/healthz to see the database gone",
                 logs=lambda: f"{get_json(port, '/healthz')}\n{workers.logs()}")
        # Longer than every liveness limit of the test settings (takeover: 3.6 s).
        statuses = watch(port, 8)
        proxy.restore()
        wait_for(lambda: get_json(port, "/readyz")[0] == 200, 20,
                 what="readiness after the cut", logs=workers.logs)
        statuses += watch(port, 10)
        assert set(statuses) == {200}, statuses
        status, live = get_json(port, "/healthz")
        assert status == 200 and live["status"] in ("ok", "recovering"), live


def watch(port: int, seconds: float) -> list[int]:
    """Every /healthz status over a stretch of time: what must never happen is watched for
    the whole stretch, not waited for."""
    statuses = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        statuses.append(get_json(port, "/healthz")[0])
        time.sleep(0.2)  # poll interval of the watch over the whole stretch
    return statuses


def test_the_health_server_binds_loopback_unless_told(health_app, workers, env):
    """Unauthenticated probes answer only on 127.0.0.1 by default; a pod sets 0.0.0.0."""
    assert pgsched.App("x").settings.health_host == "127.0.0.1"
    port = start_served(workers)
    wait_for(lambda: f"http://127.0.0.1:{port}" in workers.logs(), 10, what="the bind log")
    everywhere = free_port()
    workers.start("health_app.py", "--health-port", str(everywhere), "--health-host", "0.0.0.0")
    wait_for(lambda: f"http://0.0.0.0:{everywhere}" in workers.logs(), 60,
             what="the worker to bind every address", logs=workers.logs)
    assert answers(everywhere)


def test_readyz_is_not_ready_until_the_readiness_loop_has_run(env):
    worker = Worker(pgsched.App("early"), configure_logs=False)
    worker.app.migrate()
    server = HealthServer(worker, 0, host="127.0.0.1")
    assert server.checks.readiness_answer()[1]["status"] == "starting"
    thread = LoopThread(server.readiness, worker.halt)
    thread.start()
    try:
        wait_for(lambda: server.checks.readiness_answer()[0] == 200, 10, what="ready")
    finally:
        worker.halt.set()
        thread.join(5)
        worker.app.close()
