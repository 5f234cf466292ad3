"""The operator views judge a worker dead by PGSCHED_TAKEOVER_TIMEOUT, not a fixed 30 s."""

from __future__ import annotations

import pgsched
from pgsched.db.fleet_settings import publish
from tests.test_operations import insert_run


def _worker(sql, worker_id: str, heartbeat_age_s: float) -> None:
    sql("INSERT INTO workers (id, hostname, pid, app, queues, workflows, concurrency, "
        "heartbeat_at) VALUES (%s, 'h', 1, 'a', '{default}', '{wf}', 1, "
        "now() - make_interval(secs => %s))", (worker_id, heartbeat_age_s))


def test_views_follow_the_published_takeover_timeout(make_app, sql):
    app = make_app()
    app.migrate()
    _worker(sql, "quiet-10s", 10)
    insert_run(sql, "held", "RUNNING", executor="quiet-10s")
    insert_run(sql, "waiting", "ENQUEUED")
    # Before any worker published a value, the views keep the old 30 s.
    assert sql("SELECT id FROM stuck_runs") == []
    assert sql("SELECT id FROM waiting_for_worker") == []

    publish(app.db, pgsched.App("t", takeover_timeout=5).settings)
    assert sql("SELECT id, reason FROM stuck_runs") == [("held", "heartbeat older than 5s")]
    assert sql("SELECT id FROM waiting_for_worker") == [("waiting",)]

    publish(app.db, pgsched.App("t", takeover_timeout=60).settings)
    assert sql("SELECT id FROM stuck_runs") == []
    assert sql("SELECT id FROM waiting_for_worker") == []


def test_a_starting_worker_publishes_its_takeover_timeout(load_app_module, workers, sql):
    load_app_module("health_app.py").app.migrate()
    workers.start("health_app.py")
    workers.wait_registered(sql, 1)
    assert sql("SELECT value FROM fleet_settings WHERE name = 'takeover_timeout_s'") == [
        ("2.0",)]
