"""Every list the dashboard shows stays an index probe at 300,000 finished runs.

The runs list (with each filter, and a later page), a run's detail, the queue statistics and
their hour of history, the schedules and the workers: each statement runs with EXPLAIN
ANALYZE, under a fresh plan and under the generic plan a prepared statement may switch to,
and must not read the whole table, filter out more than a handful of rows, or touch more
than a few hundred buffers (see tests/test_hot_paths.py for the thresholds).

Not covered, because no index serves them without slowing every enqueue and every status
change: a queue filter alone or an id-prefix search reads runs newest first until a page
matches (the whole history when nothing does), and a failed-runs list narrowed further by
queue or workflow reads every failure of that status (the planner counts the status twice
and misjudges the ordered walk).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

import pgsched
from pgsched.dashboard import data
from tests.test_hot_paths import MAX_BUFFERS, MAX_COST, _buffers
from tests.test_operations import NOW

ROWS = 300_000
#: Rows a list may read and drop: a page of a workflow that has 1 run in 20 reads about
#: 20 x PAGE_SIZE of the newest runs, however large the table.
MAX_FILTERED = 1500


@pytest.fixture
def app(make_app: Callable[..., pgsched.App]) -> pgsched.App:
    app = make_app("dashboard-queries")
    app.migrate()
    return app


def _fill(conn: psycopg.Connection) -> None:
    """300,000 finished runs over the last 3.5 days (one a second, the newest in the last hour)
    on 5 queues and 21 workflows (one of them rare), 1 in 47 failed; the newest 2,000 with 2
    steps each; a few running and waiting runs; one worker."""
    inputs = json.dumps({"args": [], "kwargs": {}})
    conn.execute(
        "INSERT INTO workflows (id, name, status, queue, inputs, attempts, max_attempts, "
        "not_before, created_at, started_at, finished_at, updated_at) "
        "SELECT 'run-' || g, CASE WHEN g %% 1000 = 7 THEN 'nightly' ELSE 'wf_' || (g %% 20) "
        "END, CASE WHEN g %% 47 = 0 THEN 'ERROR' "
        "ELSE 'SUCCESS' END, 'q' || (g %% 5), %s, 1, 5, t, t, t, t + interval '1 second', t "
        "FROM generate_series(1, %s) g, "
        "LATERAL (SELECT %s::timestamptz - %s * interval '1 second' + g * interval '1 second' "
        "AS t) x",
        (inputs, ROWS, NOW, ROWS),
    )
    conn.execute(
        "INSERT INTO steps (workflow_id, step_number, name, kind, output, started_at, "
        "finished_at) SELECT 'run-' || g, n, 'step', 'step', '1', %s, %s "
        "FROM generate_series(%s, %s) g, generate_series(1, 2) n",
        (NOW, NOW, ROWS - 2000, ROWS),
    )
    conn.execute(
        "INSERT INTO workflows (id, name, status, queue, inputs, max_attempts, not_before, "
        "created_at, started_at, updated_at, executor, attempt_token) "
        "SELECT 'live-' || g, 'wf_1', CASE WHEN g %% 2 = 0 THEN 'RUNNING' ELSE 'ENQUEUED' END, "
        "'q1', %s, 5, %s, %s, %s, %s, CASE WHEN g %% 2 = 0 THEN 'w1' END, "
        "CASE WHEN g %% 2 = 0 THEN gen_random_uuid() END FROM generate_series(1, 20) g",
        (inputs, NOW, NOW, NOW, NOW),
    )
    conn.execute(
        "INSERT INTO workers (id, hostname, pid, app, version, queues, workflows, concurrency, "
        "started_at, heartbeat_at) VALUES ('w1', 'h', 1, 'a', '0.1.0', ARRAY['q1'], "
        "ARRAY['wf_1'], 8, now(), now())"
    )
    for table in ("workflows", "steps", "workers", "queues", "queue_slots", "schedules"):
        conn.execute(f"VACUUM ANALYZE {table}")


@pytest.mark.parametrize("plan_mode", ["auto", "force_generic_plan"])
def test_dashboard_queries_are_index_probes_at_300k_finished_runs(
    app: pgsched.App, database_url: str, schema: str, plan_mode: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        _fill(conn)
        conn.execute(sql.SQL("SET plan_cache_mode = {}").format(sql.Literal(plan_mode)))
        base = {"statuses": None, "name": None, "queue": None, "since": None, "until": None,
                "id_prefix": None, "limit": data.PAGE_SIZE + 1, "offset": 0}
        by_status = {"name": None, "queue": None, "id_prefix": None,
                     "limit": data.PAGE_SIZE + 1, "offset": 0}
        run = {"id": f"run-{ROWS - 7}"}
        probes = {
            "runs": (app.db.sql("ops_list"), base),
            "runs page 3": (app.db.sql("ops_list"), {**base, "offset": 2 * data.PAGE_SIZE}),
            # A rare workflow (one run in 1,000) walks its own index; a common one walks the
            # newest runs, about PAGE_SIZE / its share of them (checked below).
            "runs of a rare workflow": (app.db.sql("ops_list"), {**base, "name": "nightly"}),
            "runs of a common workflow": (app.db.sql("ops_list"), {**base, "name": "wf_7"}),
            "failed runs": (app.db.sql("dash_runs_stopped"), {**by_status, "status": "ERROR"}),
            "dead runs": (app.db.sql("dash_runs_stopped"), {**by_status, "status": "DEAD"}),
            "running runs": (app.db.sql("dash_runs_active"),
                             {**by_status, "status": "RUNNING"}),
            "waiting runs": (app.db.sql("dash_runs_active"),
                             {**by_status, "status": "ENQUEUED"}),
            "run": (app.db.sql("ops_get"), run),
            "run steps": (app.db.sql("ops_steps"), run),
            "run children": (app.db.sql("ops_children"), run),
            "queues": (app.db.sql("ops_queue_stats"), {"now": NOW, "live_s": 30.0}),
            "queue history": (app.db.sql("dash_queue_history"), {"now": NOW}),
            "schedules": (app.db.sql("ops_schedules"), {}),
            "workers": (app.db.sql("cli_workers"), {"live_s": 30.0, "all": True}),
        }
        found = {label: _buffers(conn, query, params) for label, (query, params) in probes.items()}
    problems = []
    for label, (plan, touched, cost) in found.items():
        removed = sum(int(n) for n in re.findall(r"Rows Removed by Filter: (\d+)", plan))
        if ("Seq Scan on workflows" in plan or removed > MAX_FILTERED or touched > MAX_BUFFERS
                or cost > MAX_COST):
            problems.append(f"{label}: {touched} buffers, {removed} rows filtered out, "
                            f"cost {cost:.0f}:\n{plan}")
    assert not problems, "\n\n".join(problems)
