"""Every list the dashboard shows stays an index probe at 300,000 finished runs.

The runs list (with each filter, and a later page), a run's detail, the queue statistics and
their hour of history, the schedules and the workers: each statement runs with EXPLAIN
ANALYZE, under a fresh plan and under the generic plan a prepared statement may switch to,
and must not read the whole table, filter out more than a handful of rows, or touch more
than a few hundred buffers (see tests/test_hot_paths.py for the thresholds).

A queue filter alone and an id-prefix search have no index (one would slow every enqueue
and every status change): they are bounded searches, at most ``data.SCAN_ROWS`` runs a page,
checked here at 1,000,000 finished runs, and paged by a cursor that neither skips nor repeats
a run. Not covered: a failed-runs list narrowed further by queue or workflow reads every
failure of that status (the planner counts the status twice and misjudges the ordered walk).
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


def _fill(conn: psycopg.Connection, rows: int = ROWS) -> None:
    """``rows`` finished runs (300,000: 3.5 days), one a second, the newest in the last hour,
    on 5 queues and a rare one (1 run in 1,000), and 21 workflows (one of them rare), 1 in 47
    failed; the newest 2,000 with 2 steps each; a few running and waiting runs; one worker."""
    inputs = json.dumps({"args": [], "kwargs": {}})
    conn.execute(
        "INSERT INTO workflows (id, name, status, queue, inputs, attempts, max_attempts, "
        "not_before, created_at, started_at, finished_at, updated_at) "
        "SELECT 'run-' || g, CASE WHEN g %% 1000 = 7 THEN 'nightly' ELSE 'wf_' || (g %% 20) "
        "END, CASE WHEN g %% 47 = 0 THEN 'ERROR' "
        "ELSE 'SUCCESS' END, CASE WHEN g %% 1000 = 3 THEN 'rare' ELSE 'q' || (g %% 5) END, "
        "%s, 1, 5, t, t, t, t + interval '1 second', t "
        "FROM generate_series(1, %s) g, "
        "LATERAL (SELECT %s::timestamptz - %s * interval '1 second' + g * interval '1 second' "
        "AS t) x",
        (inputs, rows, NOW, rows),
    )
    conn.execute(
        "INSERT INTO steps (workflow_id, step_number, name, kind, output, started_at, "
        "finished_at) SELECT 'run-' || g, n, 'step', 'step', '1', %s, %s "
        "FROM generate_series(%s, %s) g, generate_series(1, 2) n",
        (NOW, NOW, rows - 2000, rows),
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
    problems = _problems(found)
    assert not problems, "\n\n".join(problems)


def _problems(found: dict[str, tuple[str, int, float]]) -> list[str]:
    problems = []
    for label, (plan, touched, cost) in found.items():
        removed = sum(int(n) for n in re.findall(r"Rows Removed by Filter: (\d+)", plan))
        if ("Seq Scan on workflows" in plan or removed > MAX_FILTERED or touched > MAX_BUFFERS
                or cost > MAX_COST):
            problems.append(f"{label}: {touched} buffers, {removed} rows filtered out, "
                            f"cost {cost:.0f}:\n{plan}")
    return problems


@pytest.mark.timeout(600)
def test_queue_and_id_prefix_searches_are_bounded_at_a_million_finished_runs(
    app: pgsched.App, database_url: str, schema: str
) -> None:
    """Whatever matches (a common queue, a rare one, none; an id prefix of old runs, of
    none, a whole old id), a page reads at most ``SCAN_ROWS`` runs through an index."""
    rows = 1_000_000
    assert data.SCAN_ROWS <= MAX_FILTERED
    statement = app.db.sql("dash_runs_search")
    base = {"status": None, "queue": None, "id_prefix": None, "scan": data.SCAN_ROWS,
            "limit": data.PAGE_SIZE, "before_at": None, "before_id": None}
    middle = data._cursor(f"{NOW.isoformat()}|run-{rows // 2}")
    probes = {
        "a common queue": {**base, "queue": "q2"},
        "a rare queue": {**base, "queue": "rare"},
        "a queue with no runs": {**base, "queue": "nope"},
        "successful runs of a queue": {**base, "queue": "q3", "status": "SUCCESS"},
        "an id prefix of nothing": {**base, "id_prefix": "zzz"},
        "an id prefix of old runs": {**base, "id_prefix": "run-1234"},
        "the whole id of an old run": {**base, "id_prefix": "run-17"},
        "a later page": {**base, "queue": "rare", "before_at": middle[0],
                         "before_id": middle[1]},
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        _fill(conn, rows)
        problems = []
        for plan_mode in ("auto", "force_generic_plan"):
            conn.execute(sql.SQL("SET plan_cache_mode = {}").format(sql.Literal(plan_mode)))
            problems += _problems({f"{label} ({plan_mode})": _buffers(conn, statement, params)
                                   for label, params in probes.items()})
        assert not problems, "\n\n".join(problems)
        found = conn.execute(statement, probes["the whole id of an old run"]).fetchall()
    assert [row[0] for row in found if row[2] == "run-17"] == ["exact"]


def test_search_pages_neither_skip_nor_repeat_a_run(app: pgsched.App, database_url: str,
                                                    schema: str, monkeypatch) -> None:
    """Following ``next`` from the first page lists exactly the matching runs, newest first,
    also when many were created in the same microsecond and pages stop mid-tie."""
    monkeypatch.setattr(data, "SCAN_ROWS", 7)
    monkeypatch.setattr(data, "PAGE_SIZE", 3)
    inputs = json.dumps({"args": [], "kwargs": {}})
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(
            "INSERT INTO workflows (id, name, status, queue, inputs, max_attempts, not_before, "
            "created_at, updated_at) SELECT 'r' || lpad(g::text, 3, '0'), 'wf', 'SUCCESS', "
            "CASE WHEN g %% 4 = 0 THEN 'a' ELSE 'b' END, %s, 1, t, t, t FROM "
            "generate_series(1, 60) g, LATERAL (SELECT %s::timestamptz "
            "+ (g / 10) * interval '1 second' AS t) x", (inputs, NOW))
        everything = conn.execute("SELECT id, queue FROM workflows "
                                  "ORDER BY created_at DESC, id DESC").fetchall()

    def walk(**filters: str | None) -> list[str]:
        seen: list[str] = []
        before = None
        for _ in range(100):
            page = data.runs_page(app.db, status=None, name=None, page=1, before=before,
                                  **{"queue": None, "id_prefix": None, **filters})
            assert page.search and len(page.rows) <= data.PAGE_SIZE + 1
            seen += [row["id"] for row in page.rows]
            if page.next is None:
                return seen
            before = str(page.next["before"])
        raise AssertionError("the pages never ended")

    assert walk(queue="a") == [i for i, queue in everything if queue == "a"]
    assert walk(queue="nope") == []
    assert walk(id_prefix="r05") == [i for i, _ in everything if i.startswith("r05")]
    # The whole id of an old run comes first on the first page, and only once.
    assert walk(id_prefix="r001") == ["r001"]
    first = data.runs_page(app.db, status=None, name=None, page=1, queue="b", id_prefix="r002")
    assert [row["id"] for row in first.rows] == ["r002"]
    # The page links to the older runs through the cursor, and back to the newest.
    from starlette.testclient import TestClient

    from pgsched.dashboard import create_app

    with TestClient(create_app(app.db)) as client:
        newest = client.get("/runs", params={"queue": "a"})
        assert newest.status_code == 200 and "searched the runs created since" in newest.text
        older = re.search(r'href="([^"]*before=[^"]*)" id="next-page"', newest.text)
        assert older, newest.text
        second = client.get(older[1].replace("&amp;", "&"))
        assert second.status_code == 200 and "newest" in second.text
    first_ids = re.findall(r'data-run="([^"]+)"', newest.text)
    second_ids = re.findall(r'data-run="([^"]+)"', second.text)
    assert first_ids and second_ids
    assert first_ids + second_ids == walk(queue="a")[:len(first_ids) + len(second_ids)]
