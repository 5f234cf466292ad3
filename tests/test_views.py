"""The operator views in the schema, and the indexes behind the list and stats queries."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

import pgsched
from tests.test_operations import NOW, insert_run

SQL = Callable[..., list[tuple]]


@pytest.fixture
def app(make_app: Callable[..., pgsched.App]) -> pgsched.App:
    app = make_app("views-test")
    app.migrate()
    return app


def _worker(sql: SQL, worker_id: str, *, queues: list[str], workflows: list[str],
            heartbeat_age_s: float = 0) -> None:
    sql("INSERT INTO workers (id, hostname, pid, app, queues, workflows, concurrency, "
        "heartbeat_at) VALUES (%s, 'h', 1, 'a', %s, %s, 1, now() - make_interval(secs => %s))",
        (worker_id, queues, workflows, heartbeat_age_s))


def test_runs_by_status(app: pgsched.App, sql: SQL) -> None:
    insert_run(sql, "a", "SUCCESS", queue="q1")
    insert_run(sql, "b", "SUCCESS", queue="q1")
    insert_run(sql, "c", "ENQUEUED", queue="q1")
    insert_run(sql, "d", "ENQUEUED", queue="q2")
    assert sorted(sql("SELECT queue, status, runs FROM runs_by_status")) == [
        ("q1", "ENQUEUED", 1), ("q1", "SUCCESS", 2), ("q2", "ENQUEUED", 1)]


def test_stuck_runs(app: pgsched.App, sql: SQL) -> None:
    _worker(sql, "alive", queues=["default"], workflows=["wf"])
    _worker(sql, "silent", queues=["default"], workflows=["wf"], heartbeat_age_s=60)
    insert_run(sql, "fine", "RUNNING", executor="alive")
    insert_run(sql, "lapsed", "RUNNING", executor="silent")
    insert_run(sql, "orphan", "RUNNING", executor="gone")
    insert_run(sql, "waiting", "ENQUEUED")
    assert sorted(sql("SELECT id, reason FROM stuck_runs")) == [
        ("lapsed", "heartbeat older than 30s"), ("orphan", "worker row missing")]


def test_slowest_steps(app: pgsched.App, sql: SQL) -> None:
    insert_run(sql, "r", "SUCCESS")
    for number, (name, seconds, attempts) in enumerate(
        [("fast", 0.1, 1), ("slow", 5.0, 1), ("slow", 1.0, 3), ("old", 99, 1)], start=1
    ):
        finished = NOW - (timedelta(days=2) if name == "old" else timedelta(0))
        sql("INSERT INTO steps (workflow_id, step_number, name, kind, started_at, finished_at, "
            "attempts) VALUES ('r', %s, %s, 'step', %s, %s, %s)",
            (number, name, finished - timedelta(seconds=seconds), finished, attempts))
    rows = sql("SELECT name, executions, round(max_s::numeric, 1)::float8, retries "
               "FROM slowest_steps")
    assert rows == [("slow", 2, 5.0, 2), ("fast", 1, 0.1, 0)]


def test_recent_failures(app: pgsched.App, sql: SQL) -> None:
    error = {"type": "KeyError", "message": "'sku'"}
    insert_run(sql, "e", "ERROR", error=error, created=NOW - timedelta(minutes=10))
    insert_run(sql, "d", "DEAD", created=NOW - timedelta(minutes=5))
    insert_run(sql, "old", "ERROR", created=NOW - timedelta(hours=3))
    insert_run(sql, "ok", "SUCCESS")
    insert_run(sql, "retrying", "ENQUEUED", error=error)
    assert sql("SELECT id, status, error_type FROM recent_failures") == [
        ("d", "DEAD", None), ("e", "ERROR", "KeyError")]


def test_waiting_for_worker(app: pgsched.App, sql: SQL) -> None:
    _worker(sql, "w", queues=["default"], workflows=["known"])
    _worker(sql, "dead", queues=["default", "other"], workflows=["retired", "known"],
            heartbeat_age_s=120)
    insert_run(sql, "served", name="known")
    insert_run(sql, "no-code", name="retired")
    insert_run(sql, "wrong-queue", name="known", queue="other")
    insert_run(sql, "child", name="retired", parent_id="served")
    insert_run(sql, "done", "SUCCESS", name="retired")
    assert sorted(sql("SELECT id, reason FROM waiting_for_worker")) == [
        ("no-code", "no live worker has this workflow's code"),
        ("wrong-queue", "no live worker with this workflow serves the queue")]


def _plan(conn: psycopg.Connection, query: str, params: dict) -> str:
    rows = conn.execute("EXPLAIN (COSTS OFF) " + query, params).fetchall()
    return "\n".join(row[0] for row in rows)


def test_list_and_stats_queries_use_indexes_on_a_large_table(
    app: pgsched.App, database_url: str, schema: str
) -> None:
    """200,000 finished runs across 20 workflows and 5 queues plus 1,000 waiting ones: no
    query plan reads the whole workflows table. (The report has EXPLAIN ANALYZE at 1M.)"""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(
            "INSERT INTO workflows (id, name, status, queue, inputs, attempts, max_attempts, "
            "not_before, created_at, started_at, finished_at, updated_at) "
            "SELECT 'run-' || g, 'wf_' || (g %% 20), "
            "(ARRAY['SUCCESS','SUCCESS','ERROR','DEAD','CANCELLED'])[1 + g %% 5], "
            "'q' || (g %% 5), %s, 1, 5, t, t, t, t + interval '1 second', t "
            "FROM generate_series(1, 200000) g, "
            "LATERAL (SELECT now() - interval '40 days' + g * interval '15 seconds' AS t) x",
            (json.dumps({"args": [], "kwargs": {}}),),
        )
        conn.execute(
            "INSERT INTO workflows (id, name, status, queue, inputs, max_attempts, not_before, "
            "created_at, updated_at) SELECT 'wait-' || g, 'rare', 'ENQUEUED', 'q' || (g % 5), "
            "'{}', 5, now(), now(), now() FROM generate_series(1, 1000) g"
        )
        conn.execute("ANALYZE workflows")
        base = {"statuses": None, "name": None, "queue": None, "since": None, "until": None,
                "id_prefix": None, "limit": 50, "offset": 0}
        plans = {
            "list": _plan(conn, app.db.sql("ops_list"), base),
            "by status": _plan(conn, app.db.sql("ops_list"), {**base, "statuses": ["DEAD"]}),
            "by name": _plan(conn, app.db.sql("ops_list"), {**base, "name": "rare"}),
            "by queue": _plan(conn, app.db.sql("ops_list"), {**base, "queue": "q3"}),
            "stats": _plan(conn, app.db.sql("ops_queue_stats"), {"now": NOW, "live_s": 30.0}),
            "prune": _plan(conn, app.db.sql("ops_prune_batch"),
                           {"cutoff": NOW - timedelta(days=30), "batch_size": 1000}),
        }
    for label, plan in plans.items():
        assert "Seq Scan on workflows" not in plan, f"{label} reads the whole table:\n{plan}"
    assert "workflows_name_created" in plans["by name"]
    assert "workflows_active" in plans["stats"] and "workflows_finished" in plans["stats"]
