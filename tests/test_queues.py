"""Queued jobs end to end: order, delay, dedup, transactional enqueue, retries, timeouts,
async jobs, bad input and wake-ups. Workers are real ``pgsched worker`` subprocesses."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import psycopg
import pytest
from freezegun import freeze_time

from pgsched.bench import Proxy
from pgsched.claims import Waiting, peek, ready_queues
from pgsched.clock import utcnow
from pgsched.errors import (
    ConfigurationError,
    DuplicateJob,
    NotRegistered,
    SerializationError,
    UnknownQueue,
)
from pgsched.lifecycle import claim
from pgsched.queues import BATCH_CHUNK, parse_wake, wake_payload
from tests.conftest import APPS, ROOT
from tests.waiting import wait_for

LOG = "CREATE TABLE log (label text, pid int, at timestamptz DEFAULT clock_timestamp())"


@pytest.fixture
def qapp(env, sql, load_app_module):
    module = load_app_module("queue_app.py")
    module.app.migrate()
    sql(LOG)
    sql("CREATE TABLE gates (name text PRIMARY KEY)")
    return module


def status_of(sql, workflow_id: str) -> str:
    rows = sql("SELECT status FROM workflows WHERE id = %s", (workflow_id,))
    return rows[0][0] if rows else "MISSING"


def wait_status(sql, workers, workflow_id: str, status: str, timeout: float = 30) -> None:
    wait_for(lambda: status_of(sql, workflow_id) == status, timeout,
             what=f"run {workflow_id} to be {status}", logs=workers.logs)


def test_priority_then_fifo_with_one_worker(qapp, sql, workers) -> None:
    plan = [(0, 0), (1, 5), (2, 0), (3, 10), (4, 5), (5, 0), (6, 10)]
    for index, priority in plan:
        qapp.ordered.enqueue(qapp.tick, index, priority=priority)
    workers.start("queue_app.py", "--queues", "ordered", "--concurrency", "1")
    wait_for(lambda: sql("SELECT count(*) FROM log")[0][0] == len(plan), 30,
             what="all ordered runs", logs=workers.logs)
    ran = [int(row[0]) for row in sql("SELECT label FROM log ORDER BY at")]
    expected = [index for index, _ in sorted(plan, key=lambda p: (-p[1], p[0]))]
    assert ran == expected == [3, 6, 1, 4, 0, 2, 5]


def test_delayed_run_is_not_claimable_before_its_time(qapp, database_url) -> None:
    """Frozen time drives the claim directly: no worker, no sleeping."""
    app = qapp.app
    queue = qapp.jobs
    names = sorted(app.registry.workflows)
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn, \
            freeze_time("2030-01-01 12:00:00") as frozen:
        handle = queue.enqueue(qapp.tick, 1, delay=timedelta(minutes=5), conn=conn)
        conn.commit()
        frozen.tick(timedelta(minutes=4, seconds=59))
        assert ready_queues(conn, app.db, ["jobs"], names, utcnow()) == set()
        assert claim(conn, app.db, queue, 10, worker_id="test", names=names, now=utcnow()) == []
        frozen.tick(timedelta(seconds=1))
        assert ready_queues(conn, app.db, ["jobs"], names, utcnow()) == {"jobs"}
        rows = claim(conn, app.db, queue, 10, worker_id="test", names=names, now=utcnow())
        conn.commit()
    assert [row["id"] for row in rows] == [handle.workflow_id]


def test_peek_reports_the_next_due_time_beside_a_ready_run(qapp, database_url) -> None:
    """The idle worker sleeps until ``next_due``: a queue holding a ready run and a delayed
    one must name the delayed one's time, or the worker that claims the ready run forgets
    it and starts it at the next poll instead (seen: a second late)."""
    app = qapp.app
    names = sorted(app.registry.workflows)
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn, \
            freeze_time("2030-01-01 12:00:00"):
        now = utcnow()
        qapp.jobs.enqueue(qapp.tick, 1, conn=conn)
        qapp.jobs.enqueue(qapp.tick, 2, delay=timedelta(seconds=90), conn=conn)
        qapp.jobs.enqueue(qapp.tick, 3, delay=timedelta(seconds=30), conn=conn)
        qapp.ordered.enqueue(qapp.tick, 4, conn=conn)
        conn.commit()
        found = peek(conn, app.db, ["jobs", "ordered", "rated"], names, now)
    assert found == {"jobs": Waiting(ready=True, next_due=now + timedelta(seconds=30)),
                     "ordered": Waiting(ready=True, next_due=None)}


def test_dedup_while_waiting_running_and_after(qapp, sql, workers) -> None:
    first = qapp.jobs.enqueue(qapp.held, "k", dedup_key="k")
    assert qapp.jobs.enqueue(qapp.held, "k", dedup_key="k") == first  # waiting
    with pytest.raises(DuplicateJob, match="dedup key 'k'"):
        qapp.jobs.enqueue(qapp.held, "k", dedup_key="k", on_duplicate="raise")
    workers.start("queue_app.py", "--queues", "jobs", "--concurrency", "2")
    wait_for(lambda: sql("SELECT count(*) FROM log WHERE label = 'held:k'")[0][0] == 1, 30,
             what="the held run to start", logs=workers.logs)
    assert status_of(sql, first.workflow_id) == "RUNNING"
    assert qapp.jobs.enqueue(qapp.held, "k", dedup_key="k") == first  # running
    with pytest.raises(DuplicateJob):
        qapp.jobs.enqueue(qapp.held, "k", dedup_key="k", on_duplicate="raise")
    assert sql("SELECT count(*) FROM workflows")[0][0] == 1
    sql("INSERT INTO gates VALUES ('k')")
    wait_status(sql, workers, first.workflow_id, "SUCCESS")
    again = qapp.jobs.enqueue(qapp.held, "k", dedup_key="k")  # finished: the key is free
    assert again != first
    wait_status(sql, workers, again.workflow_id, "SUCCESS")
    assert sql("SELECT count(*) FROM workflows")[0][0] == 2


def test_transactional_enqueue(qapp, sql, workers, database_url) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TEMP TABLE mine (x int)")
        qapp.jobs.enqueue(qapp.tick, 1, conn=conn)
        qapp.jobs.enqueue_many([(qapp.tick, (2,), {}), (qapp.tick, (3,), {})], conn=conn)
        conn.rollback()
    assert sql("SELECT count(*) FROM workflows")[0][0] == 0
    with psycopg.connect(database_url) as conn:
        handle = qapp.jobs.enqueue(qapp.tick, 4, conn=conn)
        assert sql("SELECT count(*) FROM workflows")[0][0] == 0  # not before the commit
        conn.commit()
    workers.start("queue_app.py", "--queues", "jobs")
    wait_status(sql, workers, handle.workflow_id, "SUCCESS")
    assert handle.result(timeout=5) == 4
    assert [row[0] for row in sql("SELECT label FROM log")] == ["4"]


def test_retries_back_off_then_dead_letter(qapp, sql, workers) -> None:
    handle = qapp.jobs.enqueue(qapp.always_fails, "boom")
    workers.start("queue_app.py", "--queues", "jobs")
    wait_status(sql, workers, handle.workflow_id, "DEAD", timeout=60)
    attempts = [row[0] for row in sql("SELECT at FROM log WHERE label = 'attempt' ORDER BY at")]
    assert len(attempts) == 3
    # backoff_seconds: attempt n waits between 2^(n-1)/2 and 2^(n-1) seconds.
    assert (attempts[1] - attempts[0]).total_seconds() >= 0.5
    assert (attempts[2] - attempts[1]).total_seconds() >= 1.0
    error, tries = sql("SELECT error, attempts FROM workflows WHERE id = %s",
                       (handle.workflow_id,))[0]
    assert tries == 3
    assert error["type"] == "RuntimeError" and error["message"] == "boom"


def test_timeouts_cancel_sync_and_async_jobs(qapp, sql, workers) -> None:
    sync = qapp.jobs.enqueue(qapp.sleeps, 30, timeout=0.5)
    asynchronous = qapp.jobs.enqueue(qapp.async_sleeps, 30, timeout=0.5)
    workers.start("queue_app.py", "--queues", "jobs", "--concurrency", "2")
    for handle in (sync, asynchronous):
        wait_status(sql, workers, handle.workflow_id, "CANCELLED", timeout=15)
        error = sql("SELECT error FROM workflows WHERE id = %s", (handle.workflow_id,))[0][0]
        assert error["type"] == "JobTimeout", error
    # The worker goes on serving: the stuck thread was replaced.
    after = qapp.jobs.enqueue(qapp.tick, 9)
    wait_status(sql, workers, after.workflow_id, "SUCCESS")


def test_async_jobs_run(qapp, sql, workers) -> None:
    handles = [qapp.jobs.enqueue(qapp.async_add, i, 10) for i in range(5)]
    workers.start("queue_app.py", "--queues", "jobs", "--concurrency", "3")
    assert [h.result(timeout=30) for h in handles] == [10, 11, 12, 13, 14]


def test_enqueue_many_writes_each_item_with_its_own_workflow(qapp, sql) -> None:
    """A batch mixes workflows: each row gets its function's name and attempts, the
    call's shared options, a fresh time-ordered id, and the handles come back in order."""
    handles = qapp.jobs.enqueue_many(
        [(qapp.tick, (1,), {}), (qapp.always_fails, ("x",), {}), (qapp.tick, (2,), {})],
        priority=7, delay=timedelta(hours=1), timeout=30,
    )
    rows = sql("SELECT id, name, max_attempts, priority, timeout_s, inputs, status, "
               "not_before - created_at FROM workflows ORDER BY seq")
    assert [row[0] for row in rows] == [h.workflow_id for h in handles]
    assert len({row[0] for row in rows}) == 3
    assert {(row[0][:13], row[0][14]) for row in rows} == {(rows[0][0][:13], "7")}  # one ms, v7
    assert [(row[1].rsplit(".", 1)[-1], row[2]) for row in rows] == [
        ("tick", 5), ("always_fails", 3), ("tick", 5)]
    assert {(row[3], row[4], row[6], row[7]) for row in rows} == {
        (7, 30.0, "ENQUEUED", timedelta(hours=1))}
    assert [row[5]["args"] for row in rows] == [[1], ["x"], [2]]
    assert qapp.jobs.enqueue_many([]) == []


def test_enqueue_many_is_all_or_nothing_across_chunks(qapp, sql, database_url) -> None:
    """The batch goes out in chunks down one pipeline; a bad item in a later chunk, after
    earlier chunks reached the server, still leaves nothing behind, and inside the caller's
    transaction it leaves the caller's own writes usable."""
    good = [(qapp.tick, (i,), {}) for i in range(2 * BATCH_CHUNK + 500)]  # the third chunk
    with pytest.raises(SerializationError, match=r"argument\[0\] is a object"):
        qapp.jobs.enqueue_many([*good, (qapp.tick, (object(),), {})])
    assert sql("SELECT count(*) FROM workflows") == [(0,)]
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TEMP TABLE mine (x int)")
        conn.execute("INSERT INTO mine VALUES (1)")
        with pytest.raises(NotRegistered):
            qapp.jobs.enqueue_many([*good, (qapp.not_registered, (), {})], conn=conn)
        assert conn.execute("SELECT count(*) FROM mine").fetchone() == (1,)
        handles = qapp.jobs.enqueue_many(good, conn=conn)
        conn.commit()
    assert sql("SELECT count(*) FROM workflows") == [(len(good),)] == [(len(handles),)]


def test_a_batch_of_one_chunk_is_one_statement(make_app, database_url, sql) -> None:
    """Counted on the wire: a batch that fits one chunk is a single statement (one round
    trip); only larger batches open a transaction around their chunks."""
    proxy = Proxy(database_url)
    try:
        app = make_app("counted", database_url=proxy.url(database_url))
        queue = app.queue("jobs")

        @app.workflow()
        def job(index: int) -> None:
            """Never runs."""

        app.migrate()
        with app.db.connection():
            pass  # opening the pool measures the clock offset once: not the batch's cost
        before = proxy.counts.snapshot()
        queue.enqueue_many([(job, (i,), {}) for i in range(BATCH_CHUNK)])
        assert proxy.counts.snapshot() - before == 1
        before = proxy.counts.snapshot()
        queue.enqueue_many([(job, (i,), {}) for i in range(BATCH_CHUNK + 1)])
        assert proxy.counts.snapshot() - before == 4  # BEGIN, two chunks, COMMIT
    finally:
        proxy.close()
    assert sql("SELECT count(*) FROM workflows") == [(2 * BATCH_CHUNK + 1,)]


def test_bad_input_is_rejected_and_writes_nothing(qapp, sql, make_app) -> None:
    app = qapp.app
    with pytest.raises(UnknownQueue, match="'nope' is not defined"):
        app.get_queue("nope")
    with pytest.raises(UnknownQueue, match="nope"):
        app.start(qapp.tick, 1, queue="nope")
    other = make_app("limits")
    for kwargs in ({"concurrency": 0}, {"concurrency": -1}, {"worker_concurrency": 0},
                   {"rate_limit": (0, 1)}, {"rate_limit": (5, 0)}, {"rate_limit": (5, -1)}):
        with pytest.raises(ConfigurationError, match="positive"):
            other.queue("bad", **kwargs)
    for kwargs in ({"max_attempts": -1}, {"timeout": -1}, {"timeout": 0}, {"delay": -5}):
        with pytest.raises(ConfigurationError):
            qapp.jobs.enqueue(qapp.tick, 1, **kwargs)
    with pytest.raises(SerializationError, match="object"):
        qapp.jobs.enqueue(qapp.tick, object())
    with pytest.raises(SerializationError):
        qapp.jobs.enqueue_many([(qapp.tick, (1,), {}), (qapp.tick, ({1, 2},), {})])
    with pytest.raises(NotRegistered):
        qapp.jobs.enqueue(qapp.not_registered)
    assert sql("SELECT count(*) FROM workflows")[0][0] == 0
    assert sql("SELECT count(*) FROM queues WHERE name = 'bad'")[0][0] == 0


def test_worker_refuses_an_unknown_queue(env) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pgsched", "worker", str(APPS / "queue_app.py"),
         "--queues", "jobs,nope"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "queue 'nope' is not defined" in proc.stderr


def listening(sql, channel: str, application_name: str | None = None) -> int:
    return sql("SELECT count(*) FROM pg_stat_activity WHERE query = %s "
               "AND (%s::text IS NULL OR application_name = %s)",
               (f'LISTEN "{channel}"', application_name, application_name))[0][0]


def test_notify_wakes_an_idle_worker(qapp, sql, workers) -> None:
    """The fallback poll is 30 s (300 s while listening): only NOTIFY can start these."""
    workers.start("queue_app.py", "--queues", "jobs", env={"PGSCHED_POLL_INTERVAL": "30"})
    wait_for(lambda: listening(sql, qapp.app.db.channel), 30, what="the LISTEN connection",
             logs=workers.logs)
    for index in range(3):
        handle = qapp.jobs.enqueue(qapp.tick, index)
        wait_status(sql, workers, handle.workflow_id, "SUCCESS", timeout=5)


def test_delayed_runs_and_retries_start_on_time_without_polling(qapp, sql, workers) -> None:
    """The fallback poll is 30 s (300 s while listening). A delayed enqueue's NOTIFY carries
    its start time and a retry's backoff is known to the worker that wrote it, so both start
    when due, not at the next poll."""
    workers.start("queue_app.py", "--queues", "jobs", env={"PGSCHED_POLL_INTERVAL": "30"})
    wait_for(lambda: listening(sql, qapp.app.db.channel), 30, what="the LISTEN connection",
             logs=workers.logs)
    delayed = qapp.jobs.enqueue(qapp.tick, 1, delay=1.5)
    failing = qapp.jobs.enqueue(qapp.always_fails, "boom")
    wait_status(sql, workers, delayed.workflow_id, "SUCCESS", timeout=10)
    wait_status(sql, workers, failing.workflow_id, "DEAD", timeout=15)
    ((late,),) = sql("SELECT extract(epoch FROM started_at - not_before) FROM workflows "
                     "WHERE id = %s", (delayed.workflow_id,))
    assert 0 <= late < 0.5  # measured: about 1 ms
    assert len(sql("SELECT at FROM log WHERE label = 'attempt'")) == 3


def test_wake_payload_round_trips() -> None:
    now = utcnow()
    assert parse_wake(wake_payload("emails", now, now)) == ("emails", None)
    later = now + timedelta(seconds=90)
    assert parse_wake(wake_payload("a.b:c-d", later, now)) == ("a.b:c-d", later.timestamp())
    assert parse_wake("emails@not-a-time") == ("emails", None)


def test_poll_only_mode_still_runs_jobs(qapp, sql, workers) -> None:
    workers.start("queue_app.py", "--queues", "jobs",
                  env={"PGSCHED_LISTEN": "false", "PGSCHED_POLL_INTERVAL": "0.3"})
    workers.wait_registered(sql, 1)
    handle = qapp.jobs.enqueue(qapp.tick, 1)
    wait_status(sql, workers, handle.workflow_id, "SUCCESS", timeout=10)
    assert listening(sql, qapp.app.db.channel) == 0


def test_listen_database_url_is_used(qapp, sql, workers, database_url) -> None:
    separator = "&" if "?" in database_url else "?"
    url = f"{database_url}{separator}application_name=pgsched-listen-only"
    workers.start("queue_app.py", "--queues", "jobs",
                  env={"PGSCHED_LISTEN_DATABASE_URL": url, "PGSCHED_POLL_INTERVAL": "30"})
    wait_for(lambda: listening(sql, qapp.app.db.channel, "pgsched-listen-only"), 30,
             what="LISTEN on the listen URL", logs=workers.logs)
    handle = qapp.jobs.enqueue(qapp.tick, 1)
    wait_status(sql, workers, handle.workflow_id, "SUCCESS", timeout=5)
