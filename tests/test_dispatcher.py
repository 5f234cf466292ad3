"""One claim round is one transaction: the pipeline's implicit one, committed at its Sync.

The round sends the batched finish and the claims with no BEGIN or COMMIT; these tests hold
it to the promise that they commit together or not at all."""

from __future__ import annotations

import psycopg
import pytest

from pgsched.bench import Proxy
from pgsched.claims import claim_statements, declare_queues
from pgsched.clock import utcnow
from pgsched.runs import Outcome
from pgsched.worker.dispatcher import Dispatcher
from pgsched.worker.metrics import WorkerMetrics

POISON = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'poisoned claim'; END $$;
CREATE TRIGGER refuse_poison BEFORE UPDATE ON workflows FOR EACH ROW
WHEN (NEW.id = 'poison' AND NEW.status = 'RUNNING') EXECUTE FUNCTION refuse_poison();
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
    sql(POISON)
    jobs.enqueue(job, workflow_id="poison")
    dispatcher.outcomes.append(Outcome(done, token, "SUCCESS", output="null"))
    dispatcher.ready.add("jobs")

    with pytest.raises(psycopg.errors.RaiseException, match="poisoned claim"):
        dispatcher._round(conn, claim_more=True)
    assert sql("SELECT id, status FROM workflows ORDER BY id") == [
        (done, "RUNNING"), ("poison", "ENQUEUED")]
    assert [o.workflow_id for o in dispatcher.outcomes] == [done]  # kept for the next round

    sql("DROP TRIGGER refuse_poison ON workflows")
    assert dispatcher._round(conn, claim_more=True) == 1
    assert sql("SELECT id, status FROM workflows ORDER BY id") == [
        (done, "SUCCESS"), ("poison", "RUNNING")]
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
        declare_queues(app.db, [plain, rated], utcnow())
        dispatcher = Dispatcher(app, "w-test", [plain, rated], 4, WorkerMetrics())
        dispatcher.executor.submit = lambda task: None
        conn = dispatcher._connect()
        for queue in (plain, rated):
            queue.enqueue(job)
            dispatcher.ready = {queue.name}
            before = proxy.counts.snapshot()
            assert dispatcher._round(conn, claim_more=True) == 1
            assert proxy.counts.snapshot() - before == claim_statements(queue)
        assert (claim_statements(plain), claim_statements(rated)) == (1, 2)
        conn.close()
    finally:
        proxy.close()
