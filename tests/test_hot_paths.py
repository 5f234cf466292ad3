"""The statements every worker runs all day stay index probes as the table grows.

200,000 finished cron runs, 100,000 delayed runs and 10,000 parked (waiting) runs sit in
``workflows`` (the shape that made the overlap check, the claim and the peek read the whole
backlog). Each statement is run with EXPLAIN ANALYZE, under the plan a fresh statement gets
and under the generic plan a prepared statement may switch to: no plan reads the whole
table, and each touches a few dozen buffers, a number that does not grow with the table (a
walk over the delayed entries alone is hundreds). Timings at this size and at 10x are in
the README's Benchmark section.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgsched
from tests.test_operations import NOW

#: Buffers one statement may touch: index descents, the rows it reads, and for a claim the
#: index entries of the 8 rows it updates. Walking the delayed entries alone is ~100,000.
MAX_BUFFERS = 400
#: The planner's estimate, a tenth of jit_above_cost (100,000): at 10x this size a statement
#: whose estimate grows with the table would cross it and spend ~40 ms compiling with JIT.
MAX_COST = 10_000


@pytest.fixture
def app(make_app: Callable[..., pgsched.App]) -> pgsched.App:
    app = make_app("hot-paths")
    app.migrate()
    return app


def _buffers(conn: psycopg.Connection, query: str, params: dict[str, Any]
             ) -> tuple[str, int, float]:
    """The plan of one execution (rolled back), the shared buffers it touched and the
    planner's total cost estimate."""
    with conn.transaction(force_rollback=True):
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query,
                            params).fetchone()
    plan = rows[0][0]
    top = plan["Plan"]
    touched = top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
    with conn.transaction(force_rollback=True):
        text = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN (ANALYZE, COSTS OFF) " + query, params).fetchall())
    return text, touched, top["Total Cost"]


def _fill(conn: psycopg.Connection) -> None:
    inputs = json.dumps({"args": [], "kwargs": {}})
    conn.execute(
        "INSERT INTO workflows (id, name, status, queue, inputs, attempts, max_attempts, "
        "not_before, scheduled_at, schedule_name, created_at, started_at, finished_at, "
        "updated_at) "
        "SELECT 'cron:tick:' || g, 'tick', 'SUCCESS', 'default', %s, 1, 5, t, t, 'tick', t, t, "
        "t + interval '1 second', t FROM generate_series(1, 200000) g, "
        "LATERAL (SELECT %s::timestamptz - interval '3 days' + g * interval '1 second' AS t) x",
        (inputs, NOW),
    )
    conn.execute(
        "INSERT INTO workflows (id, name, status, queue, inputs, max_attempts, not_before, "
        "created_at, updated_at) SELECT 'later-' || g, 'job', 'ENQUEUED', 'default', %s, 5, "
        "%s::timestamptz + interval '1 day' + g * interval '1 second', now(), now() "
        "FROM generate_series(1, 100000) g",
        (inputs, NOW),
    )
    # Enqueued after the delayed ones: the old dequeue index (by seq) walked all of those
    # entries before it reached these.
    conn.execute(
        "INSERT INTO workflows (id, name, status, queue, inputs, max_attempts, not_before, "
        "created_at, updated_at) SELECT 'ready-' || g, 'job', 'ENQUEUED', 'default', %s, 5, "
        "%s, now(), now() FROM generate_series(1, 20) g",
        (inputs, NOW - timedelta(seconds=1)),
    )
    # 10,000 runs parked in pgsched.sleep / pgsched.recv, half with a wake time a week on.
    conn.execute(
        "INSERT INTO workflows (id, name, status, queue, inputs, max_attempts, not_before, "
        "created_at, updated_at, wake_at, wait_run, wait_topic) "
        "SELECT 'parked-' || g, 'job', 'WAITING', 'default', %s, 5, %s, now(), now(), "
        "CASE WHEN g %% 2 = 0 THEN %s::timestamptz + interval '7 days' + g * interval '1 second' "
        "END, 'parked-' || g, 'approval' FROM generate_series(1, 10000) g",
        (inputs, NOW, NOW),
    )
    conn.execute(
        "INSERT INTO schedules (name, expression, timezone, queue, catch_up, overlap, "
        "created_at, updated_at) VALUES ('tick', '* * * * * *', 'UTC', 'default', 'latest', "
        "'skip', %s, %s)", (NOW, NOW),
    )
    conn.execute("VACUUM ANALYZE workflows")


@pytest.mark.parametrize("plan_mode", ["auto", "force_generic_plan"])
def test_worker_hot_paths_are_index_probes_on_a_large_table(
    app: pgsched.App, database_url: str, schema: str, plan_mode: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        _fill(conn)
        conn.execute(sql.SQL("SET plan_cache_mode = {}").format(sql.Literal(plan_mode)))
        claim = {"queue": "default", "limit": 8, "names": ["job"], "worker": "w1", "now": NOW,
                 "suspect": False, "version": "v2", "live_versions": ["v1", "v2"]}
        limited = {**claim, "limited": False, "rate_limit": None, "window_start": None,
                   "prune_before": None}
        peek = {"queues": ["default"], "names": ["job", "tick"], "now": NOW}
        probes = {
            "schedule_lock": (app.db.sql("schedule_lock"), {"name": "tick"}),
            "claim_unlimited": (app.db.sql("claim_unlimited"), claim),
            "claim_unlimited suspects": (app.db.sql("claim_unlimited"),
                                         {**claim, "suspect": True}),
            "claim": (app.db.sql("claim"), limited),
            "claim suspects": (app.db.sql("claim"), {**limited, "suspect": True}),
            "peek": (app.db.sql("peek"), peek),
            # Every takeover pass, on every worker: it must find the few runs that have an
            # executor without reading the finished ones.
            "takeover": (app.db.sql("takeover"), {"worker": "w1", "timeout_s": 30, "now": NOW,
                                                   "channel": "pgsched_test"}),
            # Every waker pass, on every worker, however many runs wait.
            "wake_due": (app.db.sql("wake_due"), {"now": NOW, "limit": 1000,
                                                  "channel": "pgsched_test"}),
        }
        # A drain leaves an entry in the executor index for every row version its worker
        # claimed, until vacuum: the finish finds the runs whose threads returned by id
        # alone, never by reading all of those.
        conn.execute("UPDATE workflows SET executor = 'w1' WHERE id IN "
                     "(SELECT 'cron:tick:' || g FROM generate_series(1, 5000) g)")
        conn.execute("UPDATE workflows SET executor = NULL WHERE executor = 'w1'")
        returned = [f"cron:tick:{g}" for g in range(190_001, 190_009)]
        probes["finish"] = (app.db.sql("finish"), {
            "ids": [], "tokens": [], "statuses": [], "outputs": [], "errors": [],
            "not_befores": [], "releases": [], "checkpoints": [], "wake_ats": [],
            "wait_runs": [], "wait_topics": [], "returned": returned, "worker": "w1",
            "now": NOW, "channel": "pgsched_test"})
        found = {label: _buffers(conn, query, params) for label, (query, params) in probes.items()}
        assert "workflows_executor" not in found["finish"][0], found["finish"][0]
        claimed = conn.execute(app.db.sql("claim_unlimited"), claim).fetchall()
        assert sorted(row[0] for row in claimed) == sorted(f"ready-{g}" for g in range(1, 9))
        peeked = conn.execute(app.db.sql("peek"), peek).fetchall()
    problems = []
    for label, (plan, touched, cost) in found.items():
        removed = sum(int(n) for n in re.findall(r"Rows Removed by Filter: (\d+)", plan))
        if ("Seq Scan on workflows" in plan or removed >= 100 or touched > MAX_BUFFERS
                or cost > MAX_COST):
            problems.append(f"{label}: {touched} buffers, {removed} rows filtered out, "
                            f"cost {cost:.0f}:\n{plan}")
    assert not problems, "\n\n".join(problems)
    assert [(r[0], r[1], r[2]) for r in peeked] == [("default", True, False)]
    assert peeked[0][3] == NOW + timedelta(days=1, seconds=1)
