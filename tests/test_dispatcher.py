"""One claim round is one transaction: the pipeline's implicit one, committed at its Sync.

The round sends the batched finish and the claims with no BEGIN or COMMIT; these tests hold
it to the promise that they commit together or not at all."""

from __future__ import annotations

import psycopg
import pytest

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
