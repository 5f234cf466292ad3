"""Operating on runs from Python: list, get, cancel, resume, retry, fork, queue stats, prune.

State for the unit-level tests is written with SQL (a run is just a row); the behaviour that
needs running code (cancel on another worker, fork with new code, retry of a dead letter)
uses real worker subprocesses.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

import pgsched
from pgsched import lifecycle, operations
from pgsched.clock import utcnow
from pgsched.errors import (
    ConfigurationError,
    InvalidOperation,
    WorkflowFailed,
    WorkflowNotFound,
)
from pgsched.worker.pruner import Pruner
from tests.waiting import wait_for

NOW = datetime.now(timezone.utc)
SQL = Callable[..., list[tuple]]


def insert_run(sql: SQL, run_id: str, status: str = "ENQUEUED", *, name: str = "wf",
               queue: str = "default", created: datetime | None = None,
               finished: datetime | None = None, parent_id: str | None = None,
               executor: str | None = None, not_before: datetime | None = None,
               attempts: int = 0, max_attempts: int = 3, dedup_key: str | None = None,
               error: dict | None = None) -> None:
    created = created or NOW
    if finished is None and status in operations.FINISHED:
        finished = created + timedelta(seconds=2)
    sql(
        "INSERT INTO workflows (id, name, status, queue, inputs, attempts, max_attempts, "
        "not_before, created_at, started_at, finished_at, updated_at, parent_id, executor, "
        "attempt_token, dedup_key, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
        "%s, %s, %s, %s, %s, %s)",
        (run_id, name, status, queue, json.dumps({"args": [run_id], "kwargs": {}}), attempts,
         max_attempts, not_before or created, created,
         created if status != "ENQUEUED" else None, finished, created, parent_id,
         executor, "6f1c7c52-0d7c-4b55-9a43-0d3f4e5b6a70" if status == "RUNNING" else None,
         dedup_key, json.dumps(error) if error else None),
    )


def insert_steps(sql: SQL, run_id: str, count: int, kind: str = "step") -> None:
    for n in range(1, count + 1):
        sql(
            "INSERT INTO steps (workflow_id, step_number, name, kind, output, started_at, "
            "finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (run_id, n, f"step_{n}", kind, json.dumps(f"out-{n}"), NOW,
             NOW + timedelta(seconds=n / 10)),
        )


@pytest.fixture
def app(make_app: Callable[..., pgsched.App]) -> pgsched.App:
    app = make_app("ops-test")
    app.migrate()
    return app


@pytest.fixture
def db(app: pgsched.App) -> pgsched.db.Database:
    return app.db


# -- list and get ---------------------------------------------------------------------------


def test_list_filters_and_orders_newest_first(db, sql: SQL) -> None:
    insert_run(sql, "a-1", "SUCCESS", name="billing", queue="q1", created=NOW - timedelta(hours=3))
    insert_run(sql, "a-2", "ERROR", name="billing", queue="q2", created=NOW - timedelta(hours=2))
    insert_run(sql, "b-1", "ENQUEUED", name="report", queue="q1", created=NOW - timedelta(hours=1))
    insert_run(sql, "b-2", "RUNNING", name="report", queue="q2", created=NOW, executor="w")

    ids = lambda **f: [r["id"] for r in operations.list_workflows(db, **f)]  # noqa: E731
    assert ids() == ["b-2", "b-1", "a-2", "a-1"]
    assert ids(status="ERROR") == ["a-2"]
    assert ids(status=["success", "RUNNING"]) == ["b-2", "a-1"]
    assert ids(name="billing") == ["a-2", "a-1"]
    assert ids(queue="q1") == ["b-1", "a-1"]
    assert ids(since=NOW - timedelta(minutes=90)) == ["b-2", "b-1"]
    assert ids(until=NOW - timedelta(minutes=90)) == ["a-2", "a-1"]
    assert ids(since=NOW - timedelta(hours=4), until=NOW - timedelta(minutes=150)) == ["a-1"]
    assert ids(id_prefix="b-") == ["b-2", "b-1"]
    assert ids(limit=2) == ["b-2", "b-1"]
    assert ids(limit=2, offset=2) == ["a-2", "a-1"]
    assert ids(name="billing", queue="q2", status="ERROR") == ["a-2"]
    row = operations.list_workflows(db, status="ERROR")[0]
    assert row["attempts"] == 0 and row["max_attempts"] == 3 and row["queue"] == "q2"


def test_list_rejects_bad_arguments(db) -> None:
    with pytest.raises(ConfigurationError, match="unknown status FINISHED"):
        operations.list_workflows(db, status="FINISHED")
    with pytest.raises(ConfigurationError, match="limit"):
        operations.list_workflows(db, limit=0)


def test_get_workflow_has_steps_with_timings_and_children(db, sql: SQL) -> None:
    insert_run(sql, "p", "SUCCESS")
    insert_steps(sql, "p", 3)
    insert_run(sql, "p/3", "SUCCESS", parent_id="p")
    run = operations.get_workflow(db, "p")
    assert run["status"] == "SUCCESS" and run["inputs"] == {"args": ["p"], "kwargs": {}}
    assert run["duration_s"] == pytest.approx(2.0)
    assert [s["step_number"] for s in run["steps"]] == [1, 2, 3]
    assert [s["duration_s"] for s in run["steps"]] == pytest.approx([0.1, 0.2, 0.3])
    assert run["steps"][0]["output"] == "out-1"
    assert [c["id"] for c in run["children"]] == ["p/3"]
    with pytest.raises(WorkflowNotFound, match="no run with id 'nope'.*workflows list"):
        operations.get_workflow(db, "nope")


# -- cancel ---------------------------------------------------------------------------------


def test_cancel_cancels_children_and_keeps_the_slot_until_the_code_stops(db, sql: SQL) -> None:
    sql("INSERT INTO queues (name, concurrency, updated_at) VALUES ('q', 1, now())")
    sql("INSERT INTO queue_slots (queue, slot, holder) VALUES ('q', 0, 'run')")
    insert_run(sql, "run", "RUNNING", queue="q", executor="w1")
    insert_run(sql, "run/2", "RUNNING", queue="q", executor="w1", parent_id="run")
    insert_run(sql, "run/2/1", "RUNNING", queue="q", executor="w1", parent_id="run/2")
    insert_run(sql, "run/1", "SUCCESS", queue="q", parent_id="run")

    operations.cancel(db, "run")

    rows = dict(sql("SELECT id, status FROM workflows"))
    assert rows == {"run": "CANCELLED", "run/2": "CANCELLED", "run/2/1": "CANCELLED",
                    "run/1": "SUCCESS"}
    assert sql("SELECT count(*) FROM workflows WHERE attempt_token IS NOT NULL") == [(0,)]
    # Worker w1's thread may still execute the run: the slot stays held, so the queue's
    # concurrency counts that code, until the thread returns or (here) w1 is found gone.
    assert sql("SELECT holder FROM queue_slots") == [("run",)]
    with db.connection(autocommit=True) as conn:
        lifecycle.takeover(conn, db, worker_id="w-live", timeout_s=30, now=utcnow())
    assert sql("SELECT holder FROM queue_slots") == [(None,)]
    assert sql("SELECT count(*) FROM workflows WHERE executor IS NOT NULL") == [(0,)]
    assert sql("SELECT finished_at IS NOT NULL FROM workflows WHERE id = 'run'") == [(True,)]
    operations.cancel(db, "run")  # already cancelled: a no-op, not an error


def test_cancel_errors(db, sql: SQL) -> None:
    insert_run(sql, "done", "SUCCESS")
    insert_run(sql, "parent", "RUNNING", executor="w")
    insert_run(sql, "parent/1", "RUNNING", executor="w", parent_id="parent")
    with pytest.raises(WorkflowNotFound):
        operations.cancel(db, "missing")
    with pytest.raises(InvalidOperation, match="already finished as SUCCESS"):
        operations.cancel(db, "done")
    with pytest.raises(InvalidOperation, match="child workflow of parent.*cancel parent"):
        operations.cancel(db, "parent/1")
    assert dict(sql("SELECT id, status FROM workflows"))["parent/1"] == "RUNNING"


# -- resume and retry -----------------------------------------------------------------------


def test_resume_requeues_a_cancelled_run_keeping_its_checkpoints(db, sql: SQL) -> None:
    insert_run(sql, "c", "CANCELLED", attempts=2, error={"type": "JobTimeout", "message": "x"})
    insert_steps(sql, "c", 2)
    insert_run(sql, "c/3", "CANCELLED", parent_id="c")
    handle = operations.resume(db, "c")
    assert handle.workflow_id == "c" and handle.status() == "ENQUEUED"
    row = sql("SELECT attempts, finished_at, not_before <= now(), error->>'type' FROM workflows "
              "WHERE id = 'c'")
    assert row == [(0, None, True, "JobTimeout")]
    assert sql("SELECT count(*) FROM steps WHERE workflow_id = 'c'") == [(2,)]
    # The child waits for its parent (never claimed on its own).
    assert sql("SELECT status, isfinite(not_before) FROM workflows WHERE id = 'c/3'") == [
        ("WAITING", True)
    ]


def test_resume_and_retry_do_not_overlap(db, sql: SQL) -> None:
    insert_run(sql, "ok", "SUCCESS")
    insert_run(sql, "failed", "ERROR")
    insert_run(sql, "stopped", "CANCELLED")
    insert_run(sql, "busy", "RUNNING", executor="w")
    with pytest.raises(InvalidOperation, match="succeeded.*fork"):
        operations.resume(db, "ok")
    with pytest.raises(InvalidOperation, match="succeeded"):
        operations.retry(db, "ok")
    with pytest.raises(InvalidOperation, match="failed \\(ERROR\\).*retry"):
        operations.resume(db, "failed")
    with pytest.raises(InvalidOperation, match="cancelled, not failed.*resume"):
        operations.retry(db, "stopped")
    with pytest.raises(InvalidOperation, match="RUNNING, not stopped"):
        operations.resume(db, "busy")
    with pytest.raises(WorkflowNotFound):
        operations.retry(db, "missing")
    assert dict(sql("SELECT id, status FROM workflows")) == {
        "ok": "SUCCESS", "failed": "ERROR", "stopped": "CANCELLED", "busy": "RUNNING"}


def test_retry_requeues_dead_and_failed_runs(db, sql: SQL) -> None:
    insert_run(sql, "dead", "DEAD", attempts=3)
    insert_run(sql, "err", "ERROR", attempts=1)
    assert operations.retry(db, "dead").status() == "ENQUEUED"
    assert operations.retry(db, "err").status() == "ENQUEUED"
    assert sql("SELECT sum(attempts) FROM workflows") == [(0,)]


def test_resume_refuses_when_the_dedup_key_is_taken(db, sql: SQL) -> None:
    insert_run(sql, "old", "CANCELLED", dedup_key="k")
    insert_run(sql, "new", "ENQUEUED", dedup_key="k")
    with pytest.raises(InvalidOperation, match="dedup key 'k'"):
        operations.resume(db, "old")
    assert dict(sql("SELECT id, status FROM workflows")) == {"old": "CANCELLED", "new": "ENQUEUED"}


# -- fork -----------------------------------------------------------------------------------


def test_fork_copies_inputs_and_the_checkpoints_before_the_step(db, sql: SQL) -> None:
    insert_run(sql, "src", "SUCCESS", queue="q1", name="five")
    insert_steps(sql, "src", 5)
    handle = operations.fork(db, "src", from_step=3)
    assert handle.workflow_id.startswith("src-fork-")
    fork = operations.get_workflow(db, handle.workflow_id)
    assert fork["status"] == "ENQUEUED" and fork["forked_from"] == "src"
    assert fork["name"] == "five" and fork["queue"] == "q1"
    assert fork["inputs"] == {"args": ["src"], "kwargs": {}} and fork["attempts"] == 0
    assert [(s["step_number"], s["output"]) for s in fork["steps"]] == [(1, "out-1"), (2, "out-2")]
    again = operations.fork(db, handle.workflow_id, from_step=1)
    assert again.workflow_id.startswith("src-fork-") and again != handle
    assert operations.get_workflow(db, again.workflow_id)["steps"] == []
    assert operations.get_workflow(db, "src")["status"] == "SUCCESS"


def test_fork_step_bounds_and_queue(db, sql: SQL) -> None:
    insert_run(sql, "src", "ERROR")
    insert_steps(sql, "src", 2)
    for bad in (0, 4, -1):
        with pytest.raises(InvalidOperation, match="recorded 2 step\\(s\\).*between 1 and 3"):
            operations.fork(db, "src", from_step=bad)
    keep_all = operations.fork(db, "src", from_step=3)
    assert len(operations.get_workflow(db, keep_all.workflow_id)["steps"]) == 2
    with pytest.raises(InvalidOperation, match="no worker has declared queue 'nowhere'"):
        operations.fork(db, "src", from_step=1, queue="nowhere")
    sql("INSERT INTO queues (name, updated_at) VALUES ('other', now())")
    moved = operations.fork(db, "src", from_step=1, queue="other")
    assert operations.get_workflow(db, moved.workflow_id)["queue"] == "other"
    with pytest.raises(WorkflowNotFound):
        operations.fork(db, "missing", from_step=1)
    assert sql("SELECT count(*) FROM workflows") == [(3,)]


# -- queue stats ----------------------------------------------------------------------------


def test_queue_stats(db, sql: SQL) -> None:
    now = datetime.now(timezone.utc)  # finish times are relative to the stats' "last minute"
    sql("INSERT INTO queues (name, concurrency, worker_concurrency, updated_at) "
        "VALUES ('q', 2, 1, now()), ('idle', NULL, NULL, now())")
    sql("INSERT INTO queue_slots (queue, slot, holder) VALUES ('q', 0, 'r1'), ('q', 1, NULL)")
    sql("INSERT INTO workers (id, hostname, pid, app, queues, workflows, concurrency) "
        "VALUES ('w', 'h', 1, 'a', ARRAY['q'], ARRAY['wf'], 4)")
    insert_run(sql, "w1", not_before=now - timedelta(seconds=120), queue="q")
    insert_run(sql, "w2", not_before=now - timedelta(seconds=5), queue="q")
    insert_run(sql, "later", not_before=now + timedelta(hours=1), queue="q")
    insert_run(sql, "r1", "RUNNING", queue="q", executor="w")
    insert_run(sql, "r1/1", "RUNNING", queue="q", executor="w", parent_id="r1")
    insert_run(sql, "f1", "SUCCESS", queue="q", finished=now - timedelta(seconds=10))
    insert_run(sql, "f2", "DEAD", queue="q", finished=now - timedelta(seconds=20))
    insert_run(sql, "f3", "SUCCESS", queue="q", finished=now - timedelta(minutes=5))
    insert_run(sql, "x", queue="undeclared")

    stats = {row["queue"]: row for row in operations.queue_stats(db)}
    assert set(stats) == {"q", "idle", "undeclared"}
    q = stats["q"]
    assert (q["waiting"], q["scheduled"], q["running"]) == (2, 1, 1)
    assert (q["concurrency"], q["worker_concurrency"], q["slots_held"]) == (2, 1, 1)
    assert 120 <= q["oldest_waiting_s"] < 180
    assert (q["finished_last_minute"], q["failed_last_minute"], q["workers"]) == (2, 1, 1)
    idle = stats["idle"]
    assert (idle["waiting"], idle["running"], idle["oldest_waiting_s"], idle["workers"]) == (
        0, 0, None, 0)
    assert stats["undeclared"]["waiting"] == 1 and stats["undeclared"]["concurrency"] is None


# -- prune ----------------------------------------------------------------------------------


def _prune_fixture(sql: SQL) -> None:
    old = NOW - timedelta(days=40)
    for status in operations.FINISHED:
        insert_run(sql, f"old-{status}", status, created=old)
        insert_steps(sql, f"old-{status}", 2)
    insert_run(sql, "old-running", "RUNNING", created=old, executor="w")
    insert_run(sql, "old-waiting", "ENQUEUED", created=old)
    insert_run(sql, "old-retrying", "ENQUEUED", created=old, attempts=2,
               error={"type": "X", "message": "retry later"})
    insert_run(sql, "old-running/1", "SUCCESS", created=old, parent_id="old-running")
    insert_run(sql, "recent", "SUCCESS", created=NOW - timedelta(days=1))


def test_prune_deletes_only_old_finished_runs(db, sql: SQL) -> None:
    _prune_fixture(sql)
    assert operations.prune(db, timedelta(days=30), batch_size=2) == 4
    assert sorted(r[0] for r in sql("SELECT id FROM workflows")) == [
        "old-retrying", "old-running", "old-running/1", "old-waiting", "recent"]
    assert sql("SELECT count(*) FROM steps") == [(0,)]
    with pytest.raises(ConfigurationError):
        operations.prune(db, timedelta(0))


def test_pruner_skips_while_another_session_prunes(app: pgsched.App, database_url: str,
                                                   schema: str, sql: SQL) -> None:
    _prune_fixture(sql)
    pruner = Pruner(app, older_than_seconds=30 * 86400)
    with psycopg.connect(database_url) as other, other.transaction():
        other.execute(app.db.sql("ops_prune_lock"), {"schema": schema})
        delay = pruner.run_once()
        assert sql("SELECT count(*) FROM workflows") == [(9,)]
    assert 2000 < delay < 5000
    pruner.run_once()
    assert sql("SELECT count(*) FROM workflows") == [(5,)]


# -- with real workers ----------------------------------------------------------------------


@pytest.fixture
def ops_tables(app: pgsched.App, sql: SQL) -> None:
    sql("CREATE TABLE ops_log (key text, step int, what text, at timestamptz "
        "DEFAULT clock_timestamp())")
    sql("CREATE TABLE ops_gate (key text, step int)")
    sql("CREATE TABLE ops_fail (key text)")


def _log(sql: SQL, key: str) -> list[tuple[int, str]]:
    return [(r[0], r[1]) for r in sql(
        "SELECT step, what FROM ops_log WHERE key = %s ORDER BY at", (key,))]


def test_cancel_stops_a_run_on_another_worker_at_its_next_step_boundary(
    ops_tables: None, load_app_module, workers, sql: SQL
) -> None:
    ops_app = load_app_module("ops_app.py")
    worker = workers.start("ops_app.py", "--concurrency", "1")
    handle = ops_app.ops.enqueue(ops_app.five_steps, "k", True, workflow_id="gated")
    sql("INSERT INTO ops_gate VALUES ('k', 1)")
    wait_for(lambda: (2, "start") in _log(sql, "k"), 30, what="step 2 to start",
             logs=workers.logs)
    assert sql("SELECT holder FROM queue_slots WHERE queue = 'ops'") == [("gated",)]

    ops_app.app.cancel("gated")

    assert handle.status() == "CANCELLED"
    # The code still runs: it keeps its slot until it stops at the next step boundary.
    assert sql("SELECT holder FROM queue_slots WHERE queue = 'ops'") == [("gated",)]
    sql("INSERT INTO ops_gate SELECT 'k', n FROM generate_series(2, 5) n")
    wait_for(lambda: (0, "exit") in _log(sql, "k"), 30, what="the workflow body to exit",
             logs=workers.logs)
    wait_for(lambda: sql("SELECT holder FROM queue_slots WHERE queue = 'ops'") == [(None,)],
             30, what="the slot to be released once the code stopped", logs=workers.logs)
    # Step 2's code finished, but its checkpoint was refused: the run stopped there.
    assert _log(sql, "k") == [(1, "start"), (1, "v1"), (2, "start"), (2, "v1"), (0, "exit")]
    assert sql("SELECT step_number FROM steps WHERE workflow_id = 'gated'") == [(1,)]
    # The worker moves on (its one thread is free again) and the run stays cancelled.
    ops_app.ops.enqueue(ops_app.marker, "m", workflow_id="marker").result(timeout=30)
    assert sql("SELECT status, output FROM workflows WHERE id = 'gated'") == [("CANCELLED", None)]
    assert worker.poll() is None


def test_a_cancelled_run_stays_cancelled_when_its_code_returns(
    ops_tables: None, load_app_module, workers, sql: SQL
) -> None:
    ops_app = load_app_module("ops_app.py")
    workers.start("ops_app.py", "--concurrency", "1")
    ops_app.ops.enqueue(ops_app.hold_then_return, "h", workflow_id="hold")
    wait_for(lambda: sql("SELECT count(*) FROM steps WHERE workflow_id = 'hold'") == [(1,)], 30,
             what="step 1 checkpoint", logs=workers.logs)
    ops_app.app.cancel("hold")
    sql("INSERT INTO ops_gate VALUES ('h', 99)")
    wait_for(lambda: (0, "returning") in _log(sql, "h"), 30, what="the body to return",
             logs=workers.logs)
    # With one thread, the marker runs only after the worker wrote (and was refused) the
    # cancelled run's result.
    ops_app.ops.enqueue(ops_app.marker, "m", workflow_id="marker").result(timeout=30)
    assert sql("SELECT status, output, executor FROM workflows WHERE id = 'hold'") == [
        ("CANCELLED", None, None)]

    # Resume continues from the checkpoint: step 1 is not run again.
    ops_app.app.resume("hold")
    assert ops_app.app.handle("hold").result(timeout=30) == "finished"
    assert _log(sql, "h").count((1, "v1")) == 1


def test_retry_of_a_dead_lettered_run_continues_from_its_checkpoint(
    ops_tables: None, load_app_module, workers, sql: SQL
) -> None:
    ops_app = load_app_module("ops_app.py")
    workers.start("ops_app.py")
    sql("INSERT INTO ops_fail VALUES ('f')")
    handle = ops_app.ops.enqueue(ops_app.flaky, "f", workflow_id="flaky")
    with pytest.raises(WorkflowFailed, match="DEAD"):
        handle.result(timeout=30)
    sql("DELETE FROM ops_fail")

    assert ops_app.app.retry("flaky").result(timeout=30) == "v1-1+v1-2"
    assert _log(sql, "f") == [(1, "start"), (1, "v1"), (2, "start"), (2, "v1")]
    assert sql("SELECT attempts, error FROM workflows WHERE id = 'flaky'") == [(1, None)]


def test_fork_from_step_3_reruns_only_steps_3_to_5_with_new_code(
    ops_tables: None, load_app_module, workers, sql: SQL
) -> None:
    ops_app = load_app_module("ops_app.py")
    v1 = workers.start("ops_app.py")
    original = ops_app.ops.enqueue(ops_app.five_steps, "fk", workflow_id="orig")
    assert original.result(timeout=30) == ["v1-1", "v1-2", "v1-3", "v1-4", "v1-5"]
    v1.send_signal(signal.SIGTERM)
    assert v1.wait(30) == 0

    fork = ops_app.app.fork("orig", from_step=3)
    workers.start("ops_app_v2.py")
    assert fork.result(timeout=30) == ["v1-1", "v1-2", "fixed-3", "v2-4", "v2-5"]
    assert [r for r in _log(sql, "fk") if r[1] == "v2"] == [(3, "v2"), (4, "v2"), (5, "v2")]
    assert sql("SELECT forked_from FROM workflows WHERE id = %s", (fork.workflow_id,)) == [
        ("orig",)]
    assert sql("SELECT step_number, output FROM steps WHERE workflow_id = %s ORDER BY 1",
               (fork.workflow_id,)) == [(1, "v1-1"), (2, "v1-2"), (3, "fixed-3"), (4, "v2-4"),
                                        (5, "v2-5")]
    assert original.result() == ["v1-1", "v1-2", "v1-3", "v1-4", "v1-5"]


def test_operations_are_safe_from_threads(db, sql: SQL) -> None:
    """Two operators cancelling and resuming at once never leave a half-applied state."""
    insert_run(sql, "t", "ENQUEUED")
    errors: list[BaseException] = []

    def flip() -> None:
        for _ in range(20):
            try:
                operations.cancel(db, "t")
                operations.resume(db, "t")
            except InvalidOperation:
                pass
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=flip) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    status, finished = sql("SELECT status, finished_at IS NOT NULL FROM workflows")[0]
    assert (status, finished) in {("ENQUEUED", False), ("CANCELLED", True)}
