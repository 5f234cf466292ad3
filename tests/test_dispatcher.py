"""One claim round is one transaction: the pipeline's implicit one, committed at its Sync.

The round sends the batched finish and the claims with no BEGIN or COMMIT; these tests hold
it to the promise that they commit together or not at all. The one exception, also tested:
a queue the worker ran nothing of is claimed in a short transaction ahead of the round."""

from __future__ import annotations

import threading

import psycopg
import pytest

from pgsched.bench import Proxy
from pgsched.claims import declare_queues
from pgsched.clock import utcnow
from pgsched.lifecycle import Outcome, claim_statements
from pgsched.wakeups import waker_for
from pgsched.worker.dispatcher import Dispatcher
from pgsched.worker.metrics import WorkerMetrics
from tests.waiting import wait_for


def refusing(message: str, when: str) -> str:
    """SQL for a trigger ``refuse`` that fails every UPDATE of a run when ``when`` holds: a
    statement of the round that the database refuses, at a place the test chooses."""
    return f"""
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '{message}'; END $$;
CREATE TRIGGER refuse BEFORE UPDATE ON workflows FOR EACH ROW
WHEN ({when}) EXECUTE FUNCTION refuse();
"""


def test_a_failing_claim_rolls_back_the_finish_sent_with_it(make_app, sql) -> None:
    app = make_app("rounds")
    jobs = app.queue("jobs")

    @app.workflow()
    def job() -> None:
        """Never runs: the test drives the dispatcher's rounds by hand."""

    app.migrate()
    done = jobs.enqueue(job).workflow_id
    dispatcher = Dispatcher(app, "w-test", [jobs], 1, WorkerMetrics())
    dispatcher.executor.submit = lambda task: None  # claimed runs are not executed
    conn = dispatcher._connect()
    assert dispatcher._round(conn, claim_more=True) == 1
    token = dispatcher.running[done].token
    sql(refusing("poisoned claim", "NEW.id = 'poison' AND NEW.status = 'RUNNING'"))
    jobs.enqueue(job, workflow_id="poison")
    dispatcher.outcomes.append(Outcome(done, token, "SUCCESS", output="null"))
    dispatcher.ready.add("jobs")

    with pytest.raises(psycopg.errors.RaiseException, match="poisoned claim"):
        dispatcher._round(conn, claim_more=True)
    assert sql("SELECT id, status FROM workflows ORDER BY id") == [
        (done, "RUNNING"), ("poison", "ENQUEUED")]
    assert [o.workflow_id for o in dispatcher.unwritten] == [done]  # kept for the next round

    sql("DROP TRIGGER refuse ON workflows")
    assert dispatcher._round(conn, claim_more=True) == 1
    assert sql("SELECT id, status FROM workflows ORDER BY id") == [
        (done, "SUCCESS"), ("poison", "RUNNING")]
    conn.close()


def test_an_idle_queues_claim_commits_ahead_of_the_rounds_finishes(make_app, sql) -> None:
    """A queue the worker ran nothing of is claimed in a transaction of its own, ahead of the
    round's finishes (a job there starts without waiting for a busy queue's batch): when the
    finish fails, that claim has committed anyway. A queue that was busy is claimed in the
    finish's transaction, and is rolled back with it."""
    app = make_app("express")
    busy, idle = app.queue("busy"), app.queue("idle")

    @app.workflow()
    def job() -> None:
        """Never runs: the test drives the dispatcher's rounds by hand."""

    app.migrate()
    first = busy.enqueue(job).workflow_id
    dispatcher = Dispatcher(app, "w-test", [busy, idle], 3, WorkerMetrics())
    dispatcher.executor.submit = lambda task: None  # claimed runs are not executed
    conn = dispatcher._connect()
    assert dispatcher._round(conn, claim_more=True) == 1
    token = dispatcher.running[first].token
    sql(refusing("refused finish", "NEW.queue = 'busy' AND NEW.status = 'SUCCESS'"))
    second = busy.enqueue(job).workflow_id
    lone = idle.enqueue(job).workflow_id
    dispatcher.outcomes.append(Outcome(first, token, "SUCCESS", output="null"))
    dispatcher.ready |= {"busy", "idle"}

    with pytest.raises(psycopg.errors.RaiseException, match="refused finish"):
        dispatcher._round(conn, claim_more=True)
    assert dict(sql("SELECT id, status FROM workflows")) == {
        first: "RUNNING", second: "ENQUEUED", lone: "RUNNING"}
    assert lone in dispatcher.running
    assert [o.workflow_id for o in dispatcher.unwritten] == [first]  # kept for the next round

    sql("DROP TRIGGER refuse ON workflows")
    assert dispatcher._round(conn, claim_more=True) == 1
    assert dict(sql("SELECT id, status FROM workflows")) == {
        first: "SUCCESS", second: "RUNNING", lone: "RUNNING"}
    conn.close()


def test_claim_statements_counts_what_a_round_sends(make_app, database_url, sql) -> None:
    """The dispatcher skips the pipeline for a round of one statement, trusting
    ``claim_statements``; a rate-limited claim must never be sent alone, or its advisory
    lock would end with its own statement. Statements are counted on the wire."""
    proxy = Proxy(database_url)
    try:
        app = make_app("counted", database_url=proxy.url(database_url))
        plain, rated = app.queue("plain"), app.queue("rated", rate_limit=(100, 1))

        @app.workflow()
        def job() -> None:
            """Never runs: the test drives the dispatcher's rounds by hand."""

        app.migrate()
        with app.db.connection() as conn:
            declare_queues(conn, app.db, [plain, rated], utcnow())
        dispatcher = Dispatcher(app, "w-test", [plain, rated], 4, WorkerMetrics())
        dispatcher.executor.submit = lambda task: None
        conn = dispatcher._connect()
        for queue in (plain, rated):
            queue.enqueue(job)
            # Its NOTIFY may still be on its way from the waker's thread: not the round's.
            assert waker_for(app.db).flush(5)
            dispatcher.ready = {queue.name}
            before = proxy.counts.snapshot()
            assert dispatcher._round(conn, claim_more=True) == 1
            assert proxy.counts.snapshot() - before == claim_statements(queue)
        assert (claim_statements(plain), claim_statements(rated)) == (1, 2)
        conn.close()
    finally:
        proxy.close()


def test_an_idle_poll_is_two_statements_and_reads_limits_and_live_versions(
        make_app, database_url, sql) -> None:
    """An idle worker polls every ten poll intervals: the queues' limits and the live
    workers' versions in one statement, then the peek. Counted on the wire."""
    proxy = Proxy(database_url)
    try:
        app = make_app("polled", database_url=proxy.url(database_url))
        limited, plain = app.queue("limited", concurrency=3), app.queue("plain")
        app.migrate()
        with app.db.connection() as conn:
            declare_queues(conn, app.db, [limited, plain], utcnow())
        sql("UPDATE queues SET concurrency = 2 WHERE name = 'limited'")  # another release's
        sql("INSERT INTO workers (id, hostname, pid, app, queues, workflows, concurrency, "
            "app_version) VALUES ('w-old', 'h', 1, 'polled', '{limited}', '{}', 1, 'v1'), "
            "('w-gone', 'h', 2, 'polled', '{limited}', '{}', 1, 'v0')")
        sql("UPDATE workers SET heartbeat_at = now() - interval '1 hour' WHERE id = 'w-gone'")
        dispatcher = Dispatcher(app, "w-test", [limited, plain], 4, WorkerMetrics())
        conn = dispatcher._connect()
        before = proxy.counts.snapshot()
        dispatcher._poll(conn, 0.0)
        assert proxy.counts.snapshot() - before == 2
        assert dispatcher.live_versions == ["v1"]
        assert [(q.name, q.concurrency) for q in dispatcher.queues] == [
            ("limited", 2), ("plain", None)]
        conn.close()
    finally:
        proxy.close()


def test_workflow_names_sent_as_one_literal_claim_exactly_those_runs(make_app, sql) -> None:
    """The dispatcher sends its workflow names as one array literal, encoded once: names
    that need quoting in it still match exactly, in the poll and in the claim."""
    app = make_app("quoting")
    jobs = app.queue("jobs")
    odd = ['a,b', 'q"uote', "back\\slash", "{brace}", "sp ace", "NULL", "it's"]
    for name in odd:
        app.workflow(name=name)(lambda: None)
    app.migrate()
    for name in [*odd, "unregistered"]:
        sql("INSERT INTO workflows (id, name, status, queue, inputs, max_attempts, not_before, "
            "created_at, updated_at) VALUES (%s, %s, 'ENQUEUED', 'jobs', '{}', 1, now(), now(), "
            "now())",
            (f"run-{name}", name))
    dispatcher = Dispatcher(app, "w-test", [jobs], 16, WorkerMetrics())
    dispatcher.executor.submit = lambda task: None  # claimed runs are not executed
    conn = dispatcher._connect()
    assert isinstance(dispatcher.names, str)
    assert dispatcher._poll(conn, 0.0)
    assert dispatcher._round(conn, claim_more=True) == len(odd)
    assert sorted(dispatcher.running) == sorted(f"run-{name}" for name in odd)
    assert sql("SELECT status FROM workflows WHERE name = 'unregistered'") == [("ENQUEUED",)]
    conn.close()


def test_rate_limited_claims_take_their_locks_in_one_order(make_app, database_url, schema):
    """Two rate-limited queues, and a round whose rotation starts at the second: its claims
    must still lock the queues in name order. A peer worker holds the first queue's lock and
    then asks for the second's, as a peer sending in name order does; had the round taken
    the second lock first, PostgreSQL would abort one side with a deadlock."""
    app = make_app("locks")
    first = app.queue("rate-a", rate_limit=(100, 1))
    second = app.queue("rate-b", rate_limit=(100, 1))

    @app.workflow()
    def job() -> None:
        """Never runs: the test drives the dispatcher's rounds by hand."""

    app.migrate()
    with app.db.connection() as conn:
        declare_queues(conn, app.db, [first, second], utcnow())
    first.enqueue(job)
    second.enqueue(job)
    dispatcher = Dispatcher(app, "w-test", [first, second], 2, WorkerMetrics())
    dispatcher.executor.submit = lambda task: None
    dispatcher._rotation = 0  # the next plan starts at index 1: rate-b before rate-a
    assert [queue.name for queue, _, _ in dispatcher._plan()][0] == "rate-b"
    dispatcher._rotation = 0
    conn = dispatcher._connect()
    lock = app.db.sql("rate_window")
    outcome: dict[str, object] = {}
    with psycopg.connect(database_url) as peer, \
            psycopg.connect(database_url, autocommit=True) as watcher:
        peer.execute(lock, {"schema": schema, "queue": "rate-a"})
        round_thread = threading.Thread(
            target=lambda: outcome.update(claimed=_round_or_error(dispatcher, conn)))
        round_thread.start()
        wait_for(lambda: watcher.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
            (conn.info.backend_pid,)).fetchone() == ("Lock",), 10,
            what="the round to wait for the peer's lock")
        peer.execute(lock, {"schema": schema, "queue": "rate-b"})
        peer.commit()
    round_thread.join(10)
    conn.close()
    assert outcome == {"claimed": 2}


def _round_or_error(dispatcher: Dispatcher, conn: psycopg.Connection) -> int | str:
    try:
        return dispatcher._round(conn, claim_more=True)
    except psycopg.Error as exc:
        return repr(exc)
