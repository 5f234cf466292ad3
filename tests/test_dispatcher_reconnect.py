"""A claim whose COMMIT succeeded as the connection broke must not strand its run."""

from __future__ import annotations

import json

from tests.waiting import wait_for


def test_runs_owned_but_unknown_after_a_reconnect_are_handed_back(load_app_module, workers, sql):
    core = load_app_module("core_app.py")
    core.app.migrate()
    sql("CREATE TABLE calls (name text, detail text, pid int, "
        "at timestamptz DEFAULT clock_timestamp())")
    workers.start("core_app.py")
    workers.wait_registered(sql, 1)
    (worker_id,) = sql("SELECT id FROM workers")[0]
    # The worker registers before its dispatcher connects: cut the connections only once the
    # dispatcher has polled on its own, or there is nothing for it to reconnect from.
    wait_for(lambda: sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                         "AND query LIKE '%%queries/peek.sql%%'", (worker_id,))[0][0] > 0,
             30, what="the dispatcher's first poll", logs=workers.logs)
    # What a lost COMMIT leaves behind: the row says this live worker runs it; the worker
    # never saw the claim's result.
    sql("INSERT INTO workflows (id, name, status, queue, inputs, attempts, max_attempts, "
        "not_before, executor, attempt_token, created_at, started_at, updated_at) VALUES "
        "('stranded', 'once', 'RUNNING', 'default', %s, 1, 3, now(), %s, gen_random_uuid(), "
        "now(), now(), now())", (json.dumps({"args": ["stranded"], "kwargs": {}}), worker_id))

    sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend'")

    wait_for(lambda: sql("SELECT status FROM workflows WHERE id = 'stranded'") == [("SUCCESS",)],
             30, what="the stranded run to be handed back and run", logs=workers.logs)
    assert sql("SELECT count(*) FROM calls WHERE name = 'once'") == [(1,)]
    assert sql("SELECT id FROM workers") == [(worker_id,)]
