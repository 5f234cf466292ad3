"""The worker's /healthz, /readyz and /metrics: served by real worker processes against the
real database, and by a HealthServer in this process where a loop must be made stale or the
database unreachable."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import psycopg
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import pgsched
from pgsched.db.migrations import latest_version
from pgsched.errors import ConfigurationError, WorkflowFailed
from pgsched.scheduler import PassResult
from pgsched.worker import Worker
from pgsched.worker.health import HealthServer, loop_limits
from pgsched.worker.loops import CronLoop, Heartbeat, LoopThread, Takeover
from pgsched.worker.metrics import WorkerMetrics
from pgsched.worker.pruner import Pruner
from tests.waiting import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str, str]:
    """Status, content type and body of one GET, whatever the status."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def get_json(port: int, path: str) -> tuple[int, dict[str, Any]]:
    status, content_type, body = get(port, path)
    assert content_type == "application/json"
    return status, json.loads(body)


def answers(port: int) -> bool:
    try:
        get(port, "/healthz")
    except (ConnectionError, urllib.error.URLError):
        return False
    return True


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None when it is absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


@pytest.fixture
def health_app(load_app_module, sql) -> ModuleType:
    module = load_app_module("health_app.py")
    module.app.migrate()
    sql("CREATE TABLE releases (at timestamptz DEFAULT clock_timestamp())")
    return module


@pytest.fixture
def served(health_app, workers) -> int:
    """The health port of a running worker, once it answers."""
    port = free_port()
    workers.start("health_app.py", "--health-port", str(port))
    wait_for(lambda: answers(port), 60, what=f"the health server on port {port}",
             logs=workers.logs)
    wait_for(lambda: get_json(port, "/readyz")[0] == 200, 30, what="the worker to be ready",
             logs=workers.logs)
    return port


def test_probes_answer_and_metrics_follow_the_work(health_app, served, workers, sql):
    port = served
    status, live = get_json(port, "/healthz")
    assert status == 200 and live["status"] == "ok"
    assert {"heartbeat", "takeover", "dispatch"} <= set(live["loops"])
    assert "stale" not in live
    status, ready = wait_for(lambda: (r := get_json(port, "/readyz"))[0] == 200 and r, 10,
                             what="the first readiness check")
    assert ready["status"] == "ready" and ready["schema_version"] == latest_version()
    assert ready["checked_seconds_ago"] < 10
    status, content_type, text = get(port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    for family in ("pgsched_runs_started_total counter", "pgsched_runs_finished_total counter",
                   "pgsched_run_duration_seconds histogram", "pgsched_claim_seconds histogram",
                   "pgsched_cron_ticks_total counter", "pgsched_takeovers_total counter",
                   "pgsched_heartbeat_age_seconds gauge"):
        assert f"# TYPE {family}" in text
    assert sample(text, "pgsched_runs_started_total", queue="work", workflow="add") is None
    assert sample(text, "pgsched_worker_concurrency") == 8

    adds = [health_app.work.enqueue(health_app.add, i, 1) for i in range(3)]
    failing = health_app.work.enqueue(health_app.explode, max_attempts=1)
    health_app.work.enqueue(health_app.add, 0, 0, delay=3600)
    holds = [health_app.held.enqueue(health_app.hold) for _ in range(3)]
    enqueued = time.monotonic()
    assert [h.result(timeout=30) for h in adds] == [1, 2, 3]
    with pytest.raises(WorkflowFailed):
        failing.result(timeout=30)

    # One hold runs in the queue's single slot; two wait behind it. The queue gauges are
    # read from the database at most every 5 s, so wait for a scrape that sees them.
    def scrape_sees_backlog() -> str | None:
        text = get(port, "/metrics")[2]
        backlog = (sample(text, "pgsched_queue_waiting", queue="held"),
                   sample(text, "pgsched_queue_delayed", queue="work"),
                   sample(text, "pgsched_worker_running"))
        return text if backlog == (2, 1, 1) else None

    text = wait_for(scrape_sees_backlog, 30, what="the queue gauges to show the backlog",
                    logs=workers.logs)
    oldest = sample(text, "pgsched_queue_oldest_waiting_seconds", queue="held")
    assert oldest is not None and 0 < oldest < time.monotonic() - enqueued + 1
    assert sample(text, "pgsched_queue_waiting", queue="work") == 0
    assert sample(text, "pgsched_runs_started_total", queue="work", workflow="add") == 3
    assert sample(text, "pgsched_runs_finished_total", queue="work", workflow="add",
                  status="SUCCESS") == 3
    assert sample(text, "pgsched_run_duration_seconds_count", queue="work", workflow="add") == 3
    assert sample(text, "pgsched_runs_failed_total", queue="work", workflow="explode") == 1
    assert sample(text, "pgsched_runs_failed_total", queue="work", workflow="add") is None
    assert sample(text, "pgsched_claim_seconds_count") > 0
    assert 0 <= sample(text, "pgsched_heartbeat_age_seconds") < 2

    sql("INSERT INTO releases DEFAULT VALUES")
    assert [h.result(timeout=30) for h in holds] == ["released"] * 3

    def drained() -> bool:
        text = get(port, "/metrics")[2]
        return (sample(text, "pgsched_queue_waiting", queue="held") == 0
                and sample(text, "pgsched_runs_finished_total", queue="held", workflow="hold",
                           status="SUCCESS") == 3)

    wait_for(drained, 30, what="the held queue to drain in the metrics", logs=workers.logs)


def test_readyz_fails_while_the_schema_is_not_at_this_version(served, sql):
    port = served
    wait_for(lambda: get_json(port, "/readyz")[0] == 200, 10, what="the first readiness check")
    newer = latest_version() + 1
    sql("INSERT INTO schema_migrations (version, name) VALUES (%s, 'from_the_future')", (newer,))

    # Readiness is checked once per interval, not per request.
    status, ready = wait_for(lambda: (r := get_json(port, "/readyz"))[0] == 503 and r, 10,
                             what="the readiness loop to see the newer schema")
    assert ready["status"] == "schema mismatch"
    assert (ready["schema_version"], ready["expected_version"]) == (newer, latest_version())
    assert "pgsched migrate" in ready["reason"]
    assert get_json(port, "/healthz")[0] == 200  # liveness is not about the schema

    sql("DELETE FROM schema_migrations WHERE version = %s", (newer,))
    wait_for(lambda: get_json(port, "/readyz")[0] == 200, 10, what="readiness to come back")


def test_unknown_paths_are_404(served):
    status, body = get_json(served, "/admin")
    assert status == 404 and "/healthz" in body["reason"]
    assert get_json(served, "/healthz?verbose=1")[0] == 200


def test_healthz_fails_while_the_heartbeat_is_stuck_and_recovers(served, database_url, schema):
    """A lock on the workers table stalls the heartbeat for real while the database stays
    reachable: liveness must fail and name the loop, then pass once the heartbeat resumes."""
    port = served
    assert get_json(port, "/healthz")[0] == 200
    with psycopg.connect(database_url) as blocker:
        blocker.execute(f'LOCK TABLE "{schema}".workers IN ACCESS EXCLUSIVE MODE')
        status, live = wait_for(lambda: (r := get_json(port, "/healthz"))[0] == 503 and r, 30,
                                what="/healthz to report the stuck heartbeat")
        assert live["status"] == "stale" and "heartbeat" in live["stale"]
        # Reported to the millisecond: a loop just past its limit may read as equal to it.
        assert live["loops"]["heartbeat"]["seconds_since_success"] >= \
            live["loops"]["heartbeat"]["limit_seconds"]
        assert "dispatch" not in live["stale"]  # the dispatcher never touches that table
        assert get_json(port, "/readyz")[0] == 200
        blocker.rollback()
    wait_for(lambda: get_json(port, "/healthz")[0] == 200, 30,
             what="/healthz to recover after the lock is released")


@pytest.fixture
def offline_worker() -> Iterator[Worker]:
    """A Worker whose database refuses connections: nothing listens on its port."""
    url = f"postgresql://pgsched:hunter2@127.0.0.1:{free_port()}/nowhere"
    app = pgsched.App("offline", database_url=url, heartbeat_interval=0.2, takeover_timeout=1)
    worker = Worker(app, configure_logs=False)
    yield worker
    worker.halt.set()
    app.close()


def test_stale_loops_do_not_fail_liveness_while_the_database_is_down(offline_worker):
    """Restarting cannot bring the database back, so a heartbeat that fails only because the
    database is unreachable keeps /healthz at 200 and /readyz says why; a loop thread that is
    gone fails /healthz whatever the database does."""
    worker = offline_worker
    heartbeat = LoopThread(Heartbeat(worker.app, worker.id, lambda conn: None, 0.2, worker.lease),
                           worker.halt)
    heartbeat.start()
    worker.loops.append(heartbeat)
    server = HealthServer(worker, 0, host="127.0.0.1").start()
    readiness = LoopThread(server.readiness, worker.halt)
    readiness.start()
    worker.loops.append(readiness)
    try:
        status, live = wait_for(lambda: (r := get_json(server.port, "/healthz"))[1]["status"]
                                == "waiting for database" and r, 10,
                                what="the heartbeat to go stale")
        assert status == 200 and live["stale"] == ["heartbeat"]
        assert "hunter2" not in live["database"] and "connect" in live["database"]
        assert live["loops"]["heartbeat"]["failures"] >= 1
        status, ready = get_json(server.port, "/readyz")
        assert status == 503 and ready["status"] == "database unavailable"
        metrics = get(server.port, "/metrics")[2]
        assert sample(metrics, "pgsched_metrics_refresh_errors_total") >= 1
        assert sample(metrics, "pgsched_heartbeat_age_seconds") > 1
        for body in (json.dumps(live), json.dumps(ready), metrics):
            assert "hunter2" not in body

        worker.halt.set()
        heartbeat.join(5)
        status, live = get_json(server.port, "/healthz")
        assert status == 503 and live["status"] == "stale"
        assert live["loops"]["heartbeat"]["alive"] is False
        assert "readiness" in live["stale"]  # its thread is gone too
    finally:
        server.stop()


def test_a_stopping_worker_is_alive_but_not_ready(offline_worker):
    server = HealthServer(offline_worker, 0, host="127.0.0.1").start()
    try:
        offline_worker.stopping.set()
        assert get_json(server.port, "/healthz") == (200, {"status": "stopping"})
        assert get_json(server.port, "/readyz")[1]["status"] == "stopping"
    finally:
        server.stop()


def test_a_taken_port_fails_startup_with_a_clear_error(offline_worker):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match="--health-port"):
            HealthServer(offline_worker, port, host="127.0.0.1")


def test_cron_passes_and_takeovers_are_counted_by_result():
    """What the cron and takeover loops hand to the metrics after each round."""
    metrics = WorkerMetrics()
    metrics.record_pass({"hourly": PassResult(fired=["hourly@1", "hourly@2"], collapsed=1),
                         "nightly": PassResult(skipped=1)})
    metrics.record_pass({"hourly": PassResult(collapsed=2)})
    metrics.record_takeovers([{"id": "a", "status": "ENQUEUED"}, {"id": "b", "status": "DEAD"},
                              {"id": "c", "status": "ENQUEUED"}])
    text = generate_latest(metrics.registry).decode()
    assert sample(text, "pgsched_cron_ticks_total", schedule="hourly", result="inserted") == 2
    assert sample(text, "pgsched_cron_ticks_total", schedule="hourly", result="collapsed") == 3
    assert sample(text, "pgsched_cron_ticks_total", schedule="nightly", result="skipped") == 1
    assert sample(text, "pgsched_cron_ticks_total", schedule="nightly", result="inserted") is None
    assert sample(text, "pgsched_takeovers_total", outcome="requeued") == 2
    assert sample(text, "pgsched_takeovers_total", outcome="dead") == 1


def test_every_loop_a_worker_runs_has_its_own_liveness_limit(offline_worker):
    """A loop falling back to the generic limit would be judged by the wrong clock: an hourly
    pruner against a minute would restart healthy pods every hour."""
    limits = loop_limits(offline_worker.app.settings)
    assert {Heartbeat.name, Takeover.name, CronLoop.name, Pruner.name, "dispatch"} <= set(limits)
    assert limits[Pruner.name] > 3600 and limits[CronLoop.name] > 60
