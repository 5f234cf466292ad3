"""Fenced claims: a worker paused (SIGSTOP) past its takeover, then resumed, cannot overwrite
the checkpoints or the result of the attempt that took its runs over."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.waiting import wait_for


def test_a_resumed_worker_cannot_overwrite_the_new_attempt(env, sql, workers,
                                                          load_app_module) -> None:
    module = load_app_module("queue_app.py")
    module.app.migrate()
    sql("CREATE TABLE log (label text, pid int, at timestamptz DEFAULT clock_timestamp())")
    sql("CREATE TABLE gates (name text PRIMARY KEY)")
    steps_run = module.jobs.enqueue(module.fenced_steps)
    result_run = module.jobs.enqueue(module.fenced_result)
    first = workers.start("queue_app.py", "--queues", "jobs", "--concurrency", "2")
    wait_for(lambda: sql("SELECT count(*) FROM steps")[0][0] == 2, 30,
             what="both runs to checkpoint step 1 and park at the gate", logs=workers.logs)
    old_tokens = dict(sql("SELECT id, attempt_token FROM workflows"))

    first.send_signal(signal.SIGSTOP)
    try:
        second = workers.start("queue_app.py", "--queues", "jobs", "--concurrency", "2")
        # Taken over from a worker that stopped heartbeating, both runs are suspects: the
        # second worker runs them one at a time, alone.
        wait_for(lambda: sql("SELECT count(*) FROM workflows WHERE executor LIKE %s "
                             "AND isolated", (f"%:{second.pid}:%",))[0][0] == 1, 30,
                 what="the second worker to take one run over, alone", logs=workers.logs)
        sql("INSERT INTO gates VALUES ('fenced')")
        wait_for(lambda: sql("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")[0][0] == 2,
                 30, what="the second attempts to finish", logs=workers.logs)
    finally:
        first.send_signal(signal.SIGCONT)

    log = Path(first.log_path)  # type: ignore[attr-defined]
    wait_for(lambda: sql("SELECT count(*) FROM log WHERE pid = %s AND label IN "
                         "('fenced_steps:2', 'fenced_result:returning')", (first.pid,))[0][0] == 2,
             30, what="the resumed worker to reach its late writes", logs=workers.logs)
    wait_for(lambda: f"{result_run.workflow_id} fenced_result SUCCESS" in log.read_text()
             and "not recorded, this attempt no longer owns the run" in log.read_text()
             and f"{steps_run.workflow_id} fenced_steps stopped: this attempt no longer owns "
             "the run" in log.read_text(), 30, what="the resumed worker's writes to be refused",
             logs=workers.logs)

    assert steps_run.result(timeout=5) == [first.pid, second.pid]
    assert result_run.result(timeout=5) == second.pid
    steps = sql("SELECT workflow_id, step_number, output FROM steps ORDER BY 1, 2")
    assert sorted(steps) == sorted([
        (result_run.workflow_id, 1, first.pid),
        (steps_run.workflow_id, 1, first.pid),
        (steps_run.workflow_id, 2, second.pid),
    ])
    # The paused attempt was refunded (its worker may have been killed by the other run);
    # the isolated attempt that finished is the one counted.
    for workflow_id, attempts, crashes, token in sql(
            "SELECT id, attempts, crashes, attempt_token FROM workflows"):
        assert (attempts, crashes) == (1, 1)
        assert token is None and old_tokens[workflow_id] is not None
