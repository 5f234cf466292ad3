"""Durable waits, messages and events (pgsched.sleep / recv / set_event, App.send /
get_event): a waiting run holds no worker, is woken by its time or its message, and replays
to where it waited."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

import pgsched
from pgsched import lifecycle, testing
from pgsched.claims import declare_queues
from pgsched.errors import (
    MessageUndeliverable,
    NotInWorkflow,
    SerializationError,
    WorkflowFailed,
    WorkflowNotFound,
)
from pgsched.lifecycle import Outcome
from tests.waiting import wait_for

START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def app(make_app):
    app = make_app("waits")
    app.ensure_schema()
    return app


def row(sql, run_id: str) -> dict:
    status, executor, wake_at, attempts = sql(
        "SELECT status, executor, wake_at, attempts FROM workflows WHERE id = %s", (run_id,))[0]
    return {"status": status, "executor": executor, "wake_at": wake_at, "attempts": attempts}


def test_sleep_parks_the_run_and_frozen_time_wakes_it(app, sql):
    calls = []

    @app.step()
    def before() -> str:
        calls.append("before")
        return "b"

    @app.workflow()
    def napper() -> str:
        first = before()
        pgsched.sleep(timedelta(hours=1))
        calls.append("after")
        return first + "!"

    with freeze_time(START) as frozen:
        handle = app.start(napper)
        report = testing.run_until_idle(app)
        assert [r["status"] for r in report] == ["WAITING"]
        parked = row(sql, handle.workflow_id)
        # Parked: no executor, the attempt given back, and the wake time an hour on.
        assert parked == {"status": "WAITING", "executor": None,
                          "wake_at": START + timedelta(hours=1), "attempts": 0}
        assert testing.advance(frozen, app, timedelta(minutes=59)) == []
        report = testing.advance(frozen, app, timedelta(minutes=1))
        assert [r["status"] for r in report] == ["SUCCESS"]
        assert handle.result() == "b!"
    # The step before the sleep ran once; the code after it, once, after the wake.
    assert calls == ["before", "after"]
    assert sql("SELECT wake_at, wait_topic FROM workflows")[0] == (None, None)


def test_a_sleep_keeps_its_deadline_across_replays(app, sql):
    """Woken early (here: by an operator's resume after a cancel), a sleep parks again until
    its original end; it does not start an hour over."""

    @app.workflow()
    def napper() -> str:
        pgsched.sleep(3600)
        return "done"

    with freeze_time(START) as frozen:
        handle = app.start(napper)
        testing.run_until_idle(app)
        frozen.move_to(START + timedelta(minutes=30))
        app.cancel(handle.workflow_id)
        app.resume(handle.workflow_id)
        testing.run_until_idle(app)
        assert row(sql, handle.workflow_id)["wake_at"] == START + timedelta(hours=1)
        testing.advance(frozen, app, START + timedelta(hours=1))
        assert handle.result() == "done"


def test_recv_returns_messages_once_in_send_order_and_none_on_timeout(app, sql):
    @app.workflow()
    def listener() -> list:
        got = [pgsched.recv("t"), pgsched.recv("t")]
        got.append(pgsched.recv("t", timeout=timedelta(days=1)))
        return got

    with freeze_time(START) as frozen:
        handle = app.start(listener)
        testing.run_until_idle(app)
        assert row(sql, handle.workflow_id)["status"] == "WAITING"
        app.send(handle.workflow_id, {"n": 1}, topic="t")
        app.send(handle.workflow_id, {"n": 2}, topic="t")
        app.send(handle.workflow_id, "other topic", topic="u")
        # A message woke it; it took both, then waits for a third with a one-day timeout.
        report = testing.run_until_idle(app)
        assert [r["status"] for r in report] == ["WAITING"]
        assert row(sql, handle.workflow_id)["wake_at"] == START + timedelta(days=1)
        testing.advance(frozen, app, timedelta(days=1))
        assert handle.result() == [{"n": 1}, {"n": 2}, None]
    assert sql("SELECT topic, consumed_step IS NOT NULL FROM run_messages ORDER BY seq") == [
        ("t", True), ("t", True), ("u", False)]


def test_a_message_sent_before_the_recv_is_waiting_is_kept_for_it(app):
    @app.workflow()
    def late_listener() -> str:
        return pgsched.recv()

    handle = app.start(late_listener)
    app.send(handle.workflow_id, "early")  # still ENQUEUED: stored for its recv
    testing.run_until_idle(app)
    assert handle.result() == "early"


def test_a_message_that_arrives_while_the_run_parks_wakes_it(app, sql):
    """The race between a recv that found nothing and the finish that parks the run: the
    message is sent while the run is still RUNNING (no one to wake), then the park is
    written. The park must see it and re-queue the run at once."""

    @app.workflow()
    def waiter() -> str:
        return pgsched.recv("go")

    handle = app.start(waiter)
    queue = app.get_queue("default")
    with testing.in_process_worker(app, ["default"]) as worker_id:
        with app.db.connection() as conn:
            declare_queues(conn, app.db, [queue], pgsched.clock.utcnow())
            claimed = lifecycle.claim(conn, app.db, queue, 1, worker_id=worker_id,
                                      names=sorted(app.registry.workflows),
                                      now=pgsched.clock.utcnow())
        app.send(handle.workflow_id, "now", topic="go")
        with app.db.connection() as conn:
            lifecycle.finish(
                conn, app.db,
                [Outcome(handle.workflow_id, str(claimed[0]["attempt_token"]), "WAITING",
                         wait_run=handle.workflow_id, wait_topic="go")],
                worker_id=worker_id, now=pgsched.clock.utcnow())
    assert row(sql, handle.workflow_id)["status"] == "ENQUEUED"
    testing.run_until_idle(app)
    assert handle.result() == "now"


def test_send_inside_a_workflow_is_a_step_sent_once_when_the_sender_retries(app, sql):
    tries = []

    @app.workflow()
    def receiver() -> str:
        return pgsched.recv("hello")

    @app.workflow(max_attempts=3)
    def sender(target: str) -> str:
        app.send(target, "hi", topic="hello")
        tries.append(1)
        if len(tries) < 2:
            raise RuntimeError("fails after sending")
        return "sent"

    with freeze_time(START) as frozen:
        target = app.start(receiver)
        source = app.start(sender, target.workflow_id)
        testing.advance(frozen, app, timedelta(minutes=5))
        assert source.result() == "sent" and target.result() == "hi"
    assert len(tries) == 2
    assert sql("SELECT count(*) FROM run_messages")[0][0] == 1


def test_idempotency_key_delivers_a_repeated_send_once(app, sql):
    @app.workflow()
    def one() -> str:
        return pgsched.recv()

    handle = app.start(one)
    for _ in range(3):
        app.send(handle.workflow_id, "x", idempotency_key="request-7")
    assert sql("SELECT count(*) FROM run_messages")[0][0] == 1


def test_messages_to_unknown_or_finished_runs_and_waits_outside_a_workflow_are_errors(app, sql):
    @app.workflow()
    def done() -> int:
        return 1

    handle = app.start(done)
    testing.run_until_idle(app)
    with pytest.raises(WorkflowNotFound, match="no run with id 'nope'"):
        app.send("nope", "x")
    with pytest.raises(MessageUndeliverable, match="is SUCCESS"):
        app.send(handle.workflow_id, "x")
    with pytest.raises(SerializationError):
        app.send(handle.workflow_id, object())
    assert sql("SELECT count(*) FROM run_messages")[0][0] == 0
    for call in (lambda: pgsched.recv("t"), lambda: pgsched.sleep(1),
                 lambda: pgsched.set_event("k", 1)):
        with pytest.raises(NotInWorkflow, match="only inside a running"):
            call()
    with pytest.raises(WorkflowNotFound):
        app.get_event("nope", "stage", timeout=0)


def test_events_last_value_wins_and_get_event_waits_for_one(app):
    gate = threading.Event()

    @app.workflow()
    def publisher() -> None:
        pgsched.set_event("stage", "one")
        pgsched.set_event("stage", {"two": 2})

    handle = app.start(publisher)
    assert app.get_event(handle.workflow_id, "stage", timeout=0) is None
    got: list = []

    def reader() -> None:
        gate.set()
        got.append(app.get_event(handle.workflow_id, "stage", timeout=30))

    thread = threading.Thread(target=reader)
    thread.start()
    gate.wait(10)
    testing.run_until_idle(app)
    thread.join(30)
    assert got and got[0] in ("one", {"two": 2})  # woken by the first set, or the last
    assert app.get_event(handle.workflow_id, "stage", timeout=0) == {"two": 2}


def test_a_waiting_run_holds_no_queue_slot(app, sql):
    """Decided: a parked run does not count against its queue's concurrency; it takes a
    slot again when it wakes, like any queued run."""
    limited = app.queue("limited", concurrency=1)

    @app.workflow()
    def waits_for_go() -> str:
        return pgsched.recv("go")

    @app.workflow()
    def plain() -> str:
        return "ran"

    waiting = limited.enqueue(waits_for_go)
    testing.run_until_idle(app)
    other = limited.enqueue(plain)
    testing.run_until_idle(app)
    assert other.result() == "ran"
    assert sql("SELECT count(*) FROM queue_slots WHERE holder IS NOT NULL")[0][0] == 0
    app.send(waiting.workflow_id, "yes", topic="go")
    testing.run_until_idle(app)
    assert waiting.result() == "yes"


def test_a_child_that_waits_parks_its_parent_and_both_resume(app, sql):
    @app.workflow()
    def child(n: int) -> int:
        pgsched.sleep(60)
        return n * 2

    @app.workflow()
    def parent() -> int:
        return child(21) + 0

    with freeze_time(START) as frozen:
        handle = app.start(parent)
        testing.run_until_idle(app)
        statuses = dict(sql("SELECT id, status FROM workflows"))
        assert statuses == {handle.workflow_id: "WAITING", f"{handle.workflow_id}/1": "WAITING"}
        testing.advance(frozen, app, timedelta(minutes=1))
        assert handle.result() == 42
    assert dict(sql("SELECT id, status FROM workflows")) == {
        handle.workflow_id: "SUCCESS", f"{handle.workflow_id}/1": "SUCCESS"}


def test_a_message_to_a_waiting_child_wakes_the_tree(app):
    @app.workflow()
    def child() -> str:
        return pgsched.recv("c")

    @app.workflow()
    def parent() -> str:
        return "parent got " + child()

    handle = app.start(parent)
    testing.run_until_idle(app)
    app.send(f"{handle.workflow_id}/1", "hello", topic="c")
    testing.run_until_idle(app)
    assert handle.result() == "parent got hello"


def test_cancelling_a_waiting_run_cancels_it(app, sql):
    @app.workflow()
    def forever() -> str:
        return pgsched.recv()

    handle = app.start(forever)
    testing.run_until_idle(app)
    app.cancel(handle.workflow_id)
    assert handle.status() == "CANCELLED"
    with pytest.raises(MessageUndeliverable):
        app.send(handle.workflow_id, "too late")


# -- with real worker processes ------------------------------------------------------------


@pytest.fixture
def waits_app(load_app_module, sql):
    module = load_app_module("waits_app.py")
    module.app.ensure_schema()
    sql("CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)")
    return module


def test_sleeping_runs_hold_no_thread(waits_app, workers, sql):
    """A worker of concurrency 1 runs 50 other jobs while 100 runs sleep, then wakes a
    sleeper whose time came."""
    app = waits_app.app
    sleepers = [waits_app.jobs.enqueue(waits_app.nap, 3600) for _ in range(100)]
    workers.start("waits_app.py", "--concurrency", "1")
    wait_for(lambda: sql("SELECT count(*) FROM workflows WHERE status = 'WAITING'")[0][0] == 100,
             60, what="100 runs parked", logs=workers.logs)
    quick = [waits_app.jobs.enqueue(waits_app.quick, n) for n in range(50)]
    assert [h.result(timeout=60) for h in quick] == list(range(50))
    assert {h.status() for h in sleepers} == {"WAITING"}
    # Waiting costs the worker nothing: it holds no run.
    assert sql("SELECT count(*) FROM workflows WHERE executor IS NOT NULL")[0][0] == 0
    short = waits_app.jobs.enqueue(waits_app.nap, 0.5)
    assert short.result(timeout=30) == "rested"  # woken by the worker's alarm loop on time
    assert app.get_event(short.workflow_id, "stage", timeout=0) == "napping"


def test_a_short_sleep_ends_on_time_while_the_idle_alarm_sleeps_long(waits_app, workers, sql):
    """With a 20 s poll interval an idle worker's alarm probes every 200 s (every 20 s before
    the hint): a 0.5 s sleep still ends on time, because the worker that parked the run
    rings its own alarm then."""
    workers.start("waits_app.py", env={"PGSCHED_POLL_INTERVAL": "20"})
    wait_for(lambda: sql("SELECT count(*) FROM pg_stat_activity WHERE query = %s",
                         (f'LISTEN "{waits_app.app.db.channel}"',))[0][0] > 0,
             30, what="the worker's LISTEN connection", logs=workers.logs)
    started = time.monotonic()
    nap = waits_app.jobs.enqueue(waits_app.nap, 0.5)
    assert nap.result(timeout=60) == "rested"
    assert time.monotonic() - started < 5.0, workers.logs()


def test_a_waiting_run_survives_sigkill_and_a_message_sent_while_no_worker_lives(
        waits_app, workers, sql):
    app = waits_app.app
    handle = app.start(waits_app.approval, 7)
    worker = workers.start("waits_app.py")
    # get_event waits (LISTEN) until the workflow publishes its stage.
    assert app.get_event(handle.workflow_id, "stage", timeout=30) == "awaiting approval"
    wait_for(lambda: handle.status() == "WAITING", 30, what="the run to park",
             logs=workers.logs)
    # The worker's log says what became of the run: parked, for what, until when.
    wait_for(lambda: "WAITING" in workers.logs(), 10, what="the park's log line")
    assert "parked for a message on 'approval' until " in workers.logs()
    worker.kill()
    worker.wait(10)
    app.send(handle.workflow_id, {"approved": True}, topic="approval")
    assert handle.status() == "ENQUEUED"  # woken by the message itself, no worker needed
    workers.start("waits_app.py")
    assert handle.result(timeout=30) == {"claim": 7, "decision": {"approved": True}}
    assert app.get_event(handle.workflow_id, "stage", timeout=0) == "decided"


def test_messages_from_8_concurrent_senders_arrive_once_each_in_order_per_sender(
        waits_app, workers, sql):
    app = waits_app.app
    senders, each = 8, 25
    handle = app.start(waits_app.collector, senders * each)
    workers.start("waits_app.py", "--concurrency", "2")
    start = threading.Barrier(senders)

    def send_all(sender: int) -> None:
        start.wait(30)
        for n in range(each):
            app.send(handle.workflow_id, [sender, n], topic="items")

    threads = [threading.Thread(target=send_all, args=(s,)) for s in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    got = handle.result(timeout=120)
    assert sorted(map(tuple, got)) == [(s, n) for s in range(senders) for n in range(each)]
    for sender in range(senders):
        assert [n for s, n in got if s == sender] == list(range(each))
    # Each message noted exactly once by a transaction step, however often the run replayed.
    assert sql("SELECT count(*), count(DISTINCT text) FROM notes")[0] == (200, 200)


# -- code versions -------------------------------------------------------------------------


def test_the_default_version_is_a_hash_of_the_workflow_and_step_sources(make_app):
    def build(body: str) -> str:
        app = make_app("versions")
        namespace: dict = {"app": app}
        exec(compile(f"@app.workflow()\ndef flow():\n    return {body}\n", f"<{body}>", "exec"),
             namespace)
        return app.version

    assert make_app("pinned", version="2026.11.30").version == "2026.11.30"
    first = make_app("a")
    second = make_app("b")
    for app in (first, second):
        app.workflow(name="w")(test_a_waiting_run_holds_no_queue_slot)
    assert first.version == second.version and len(first.version) == 12
    second.step(name="s")(test_cancelling_a_waiting_run_cancels_it)
    assert first.version != second.version


def test_woken_runs_resume_on_a_worker_of_their_version_while_one_lives(
        waits_app, workers, sql, env):
    from click.testing import CliRunner

    from pgsched.cli.common import cli

    app = waits_app.app
    old = workers.start("waits_app.py", env={"WAITS_APP_VERSION": "v1"})
    runs = [app.start(waits_app.whoami) for _ in range(10)]
    wait_for(lambda: {h.status() for h in runs} == {"WAITING"}, 60, what="runs to park",
             logs=workers.logs)
    assert sql("SELECT DISTINCT app_version FROM workflows") == [("v1",)]
    new = workers.start("waits_app.py", env={"WAITS_APP_VERSION": "v2"})
    workers.wait_registered(sql, 2)
    shown = CliRunner().invoke(cli, ["workflows", "versions", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert [(r["version"], r["waiting"], r["workers"]) for r in json.loads(shown.output)] == [
        ("v1", 10, 1), ("v2", 0, 1)]
    for handle in runs[:5]:
        app.send(handle.workflow_id, "go", topic="go")
    # The v2 worker is idle and hears the same wake-ups, yet all five resume on v1.
    assert {h.result(timeout=60) for h in runs[:5]} == {old.pid}
    old.kill()
    old.wait(10)
    for handle in runs[5:]:
        app.send(handle.workflow_id, "go", topic="go")
    # With no v1 worker alive (its lease lapses), v2 takes them rather than leave them.
    assert {h.result(timeout=60) for h in runs[5:]} == {new.pid}


def test_the_dashboard_shows_what_a_parked_run_waits_for(app):
    from pgsched.dashboard import create_app
    from tests.test_dashboard import _Client, serving

    @app.workflow()
    def reviewer() -> str:
        pgsched.set_event("stage", "in review")
        return pgsched.recv("verdict", timeout=timedelta(days=3))

    handle = app.start(reviewer, workflow_id="review-1")
    testing.run_until_idle(app)
    app.send(handle.workflow_id, {"note": "unrelated"}, topic="comments")
    with serving(create_app(app.db)) as base:
        page = _Client(base).get("/runs/review-1")
    assert "a message on <code>verdict</code>, until" in page
    assert "in review" in page and "unrelated" in page and "unread" in page


def test_an_async_workflow_waits_and_resumes_like_a_plain_one(app):
    @app.step()
    async def fetch(n: int) -> int:
        return n + 1

    @app.workflow()
    async def patient() -> list:
        first = await fetch(1)
        message = pgsched.recv("go")
        pgsched.sleep(60)
        return [first, message, await fetch(2)]

    with freeze_time(START) as frozen:
        handle = app.start(patient)
        assert [r["status"] for r in testing.run_until_idle(app)] == ["WAITING"]
        app.send(handle.workflow_id, "now", topic="go")
        assert [r["status"] for r in testing.run_until_idle(app)] == ["WAITING"]
        testing.advance(frozen, app, timedelta(minutes=1))
        assert handle.result() == [2, "now", 3]


def test_a_wait_inside_a_step_is_refused(app):
    """A step's code re-runs on every retry of the step, so a wait there could not keep its
    place in the run's history: it is refused like a transaction inside a step."""

    @app.step()
    def dozing() -> None:
        pgsched.sleep(1)

    @app.workflow()
    def flow() -> None:
        dozing()

    handle = app.start(flow)
    testing.run_until_idle(app)
    with pytest.raises(WorkflowFailed, match="StepPlacementError"):
        handle.result()


def test_send_async_inside_an_async_workflow_is_a_step_of_it(app, sql):
    @app.workflow()
    def inbox() -> str:
        return pgsched.recv("mail")

    @app.workflow()
    async def courier(target: str) -> str:
        await app.send_async(target, "parcel", topic="mail")
        return "delivered"

    target = app.start(inbox)
    testing.run_until_idle(app)
    sender = app.start(courier, target.workflow_id)
    testing.run_until_idle(app)
    assert sender.result() == "delivered" and target.result() == "parcel"
    assert sql("SELECT name, kind FROM steps WHERE workflow_id = %s",
               (sender.workflow_id,)) == [("send:mail", "send")]


def test_bad_durations_topics_and_keys_are_typed_errors_and_write_nothing(app, sql):
    from pgsched.errors import ConfigurationError

    calls = {
        "sleep -1": lambda: pgsched.sleep(-1),
        "sleep 1e20": lambda: pgsched.sleep(1e20),
        "sleep True": lambda: pgsched.sleep(True),
        "recv timeout": lambda: pgsched.recv("t", timeout="soon"),
        "recv topic": lambda: pgsched.recv(""),
        "event key": lambda: pgsched.set_event(None, 1),
    }
    for label, call in calls.items():
        @app.workflow(name=f"bad {label}")
        def bad(call=call) -> None:
            call()

        handle = app.start(bad)
        testing.run_until_idle(app)
        # At once, not after retries: a retry would pass the same value.
        with pytest.raises(WorkflowFailed, match="ERROR .InvalidWaitArgument"):
            handle.result(timeout=5)
    assert sql("SELECT count(*) FROM steps")[0][0] == 0
    with pytest.raises(ConfigurationError, match="topic"):
        app.send(handle.workflow_id, "x", topic="")
