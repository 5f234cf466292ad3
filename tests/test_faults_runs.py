"""Faults in a run's own code and in the fleet around it must end well (issue 10).

Each test drives real worker processes (``tests/apps/faults_app.py``) on the test database
and reads what happened from the rows: a job that returns a value PostgreSQL cannot store,
raises ``BaseException``, crashes its process, outlives its timeout, or has a child that fails
once; an enqueue that lands while the worker is mid-round; workers that start together or
during a rolling deploy. Faults that need their own server or a proxy (restarts, cuts,
SIGSTOP, connection budget) live in other test files.
"""

from __future__ import annotations

import random
import signal
import statistics
import threading
import time
from collections.abc import Callable
from types import ModuleType

import psycopg
import pytest

from pgsched.errors import SerializationError
from tests.waiting import wait_for

ACTIVE = ("ENQUEUED", "RUNNING", "WAITING")


@pytest.fixture
def faults(load_app_module, sql) -> ModuleType:
    module = load_app_module("faults_app.py")
    module.app.migrate()
    for ddl in module.TABLES:
        sql(ddl)
    return module


def statuses(sql: Callable[..., list[tuple]], ids: list[str]) -> dict[str, tuple]:
    rows = sql("SELECT id, status, attempts, error ->> 'type', output FROM workflows "
               "WHERE id = ANY(%s)", (ids,))
    return {row[0]: row[1:] for row in rows}


def active_runs(sql: Callable[..., list[tuple]]) -> int:
    return sql("SELECT count(*) FROM workflows WHERE status = ANY(%s)", (list(ACTIVE),))[0][0]


def events(sql: Callable[..., list[tuple]], label: str, key: str = "") -> int:
    return sql("SELECT count(*) FROM events WHERE label = %s AND key = %s", (label, key))[0][0]


def assert_no_infinite_not_before(sql: Callable[..., list[tuple]]) -> None:
    """No status may hide in a magic value: psycopg cannot even load 'infinity' back."""
    assert sql("SELECT count(*) FROM workflows WHERE not_before = 'infinity'") == [(0,)]


# -- #1 -------------------------------------------------------------------------------------------


def test_unstorable_outcomes_end_in_error_and_every_other_run_succeeds(faults, workers, sql):
    """A result or an exception message holding U+0000 or a lone surrogate cannot go into
    jsonb. Today the batched finish fails, the round rolls back and every round that carries
    the outcome fails again: the bad runs and their batch-mates never finish."""
    bad = {"nul-result": faults.returns_nul, "nul-message": faults.raises_nul,
           "surrogate": faults.returns_surrogate}
    ordinary: list[str] = []
    for index in range(30):
        if index in (3, 11, 19):
            name, fn = list(bad.items())[(index - 3) // 8]
            faults.mixed.enqueue(fn, workflow_id=name, max_attempts=1)
        ordinary.append(faults.mixed.enqueue(faults.ordinary, index,
                                             workflow_id=f"ordinary-{index}").workflow_id)
    # Enqueued before the worker starts, so the bad runs share claim rounds with good ones.
    worker = workers.start("faults_app.py", "--queues", "mixed", "--concurrency", "4")

    wait_for(lambda: active_runs(sql) == 0, 30, what="all 33 runs to finish",
             logs=workers.logs)

    rows = statuses(sql, [*bad, *ordinary])
    # A result jsonb cannot hold fails its run for good: no retry can make it storable.
    for name in ("nul-result", "surrogate"):
        assert rows[name][0] == "ERROR" and rows[name][2] == "SerializationError", rows[name]
    # An exception's message is pgsched's to store: the NUL is escaped, and the run is
    # retried and dead-lettered as its own exception, whose type and text stay visible.
    assert rows["nul-message"][0::2] == ("DEAD", "ValueError"), rows["nul-message"]
    [(message,)] = sql("SELECT error ->> 'message' FROM workflows WHERE id = 'nul-message'")
    assert message == "bad byte \\x00 in the message"
    for index, workflow_id in enumerate(ordinary):
        assert rows[workflow_id][::3] == ("SUCCESS", index), rows[workflow_id]
    assert worker.poll() is None
    failed_rounds = worker.log_path.read_text().count("claim round failed")
    assert failed_rounds < 2, f"the worker failed {failed_rounds} claim rounds:\n{workers.logs()}"


@pytest.mark.parametrize("value", ["a\x00b", "lone \udc00 surrogate", ["ok", {"deep": "\x00"}]],
                         ids=["nul", "surrogate", "nested-nul"])
def test_enqueue_refuses_inputs_postgres_cannot_store(faults, sql, value):
    """Refused before anything is sent, with the typed error, whichever way in."""
    with pytest.raises(SerializationError):
        faults.mixed.enqueue(faults.ordinary, value)
    with pytest.raises(SerializationError):
        faults.mixed.enqueue(faults.ordinary, index=value)
    with pytest.raises(SerializationError):
        faults.app.start(faults.ordinary, value, queue="mixed")
    with pytest.raises(SerializationError):
        faults.mixed.enqueue_many([(faults.ordinary, (1,), {}), (faults.ordinary, (value,), {})])
    assert sql("SELECT count(*) FROM workflows") == [(0,)]


# -- #2 -------------------------------------------------------------------------------------------


def test_base_exceptions_are_failed_attempts_and_give_their_thread_back(faults, workers, sql):
    """sys.exit(), KeyboardInterrupt and an awaited task's CancelledError. Today each kills
    its executor thread silently: the run stays RUNNING forever and its capacity is gone."""
    worker = workers.start("faults_app.py", "--queues", "mixed", "--concurrency", "2")
    workers.wait_registered(sql, 1)
    expected = {"exits": "SystemExit", "interrupts": "KeyboardInterrupt",
                "cancelled": "CancelledError"}
    for name in expected:
        faults.mixed.enqueue(getattr(faults, name), name, workflow_id=name, max_attempts=2)

    wait_for(lambda: all(row[0] == "DEAD" for row in statuses(sql, list(expected)).values()),
             20, what="the three runs to be dead-lettered after 2 attempts", logs=workers.logs)
    rows = statuses(sql, list(expected))
    for name, error_type in expected.items():
        assert rows[name][:3] == ("DEAD", 2, error_type), rows[name]
        assert events(sql, name, name) == 2
    assert worker.poll() is None, "the worker process must survive its jobs' BaseException"

    # Capacity came back: twice the worker's concurrency of ordinary runs all finish.
    handles = [faults.mixed.enqueue(faults.ordinary, i) for i in range(8)]
    assert [h.result(timeout=15) for h in handles] == list(range(8))
    assert worker.poll() is None


def test_sigterm_keeps_the_attempts_of_a_run_that_raised_base_exception(faults, workers, sql):
    """Today the run whose thread died is handed back on SIGTERM with its attempt uncounted,
    so a job that always calls sys.exit() is never dead-lettered."""
    worker = workers.start("faults_app.py", "--queues", "mixed", "--concurrency", "2",
                           env={"PGSCHED_SHUTDOWN_GRACE": "1"})
    workers.wait_registered(sql, 1)
    faults.mixed.enqueue(faults.exits, "term", workflow_id="term", max_attempts=5)
    wait_for(lambda: events(sql, "exits", "term") >= 1, 20, what="the job to run",
             logs=workers.logs)

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    executions = events(sql, "exits", "term")
    [(status, attempts)] = sql("SELECT status, attempts FROM workflows WHERE id = 'term'")
    assert (status, attempts) == ("ENQUEUED", executions), (
        f"{executions} execution(s) ended in SystemExit, but the run is {status} with "
        f"{attempts} attempt(s) counted")


# -- #6 -------------------------------------------------------------------------------------------


RESTART_BACKOFF = 3.0


def test_a_process_crashing_pill_is_dead_lettered_alone(faults, workers, sql, tmp_path):
    """os.abort() with max_attempts=5 among 160 ordinary runs on 2 supervised workers. Today
    takeover re-queues the pill with the runs claimed beside it, they are claimed together
    again, and innocent runs are dead-lettered with the pill (the 7 claimed beside it, in
    every run of this test on that code)."""
    marker = tmp_path / "pill-executions"
    innocents: list[str] = []
    for index in range(160):
        if index == 4:
            faults.mixed.enqueue(faults.pill, str(marker), workflow_id="pill", max_attempts=5)
        innocents.append(faults.mixed.enqueue(faults.steady, index, 0.02, max_attempts=5,
                                              workflow_id=f"innocent-{index}").workflow_id)

    def start() -> object:
        return workers.start("faults_app.py", "--queues", "mixed", "--concurrency", "8",
                             env={"PGSCHED_POOL_SIZE": "12"})

    # The supervisor restarts a dead worker after a back-off longer than the takeover timeout
    # (as a crash-looping pod's does), so the surviving worker takes over and claims alone.
    supervised = [start(), start()]
    died: dict[int, float] = {}
    restarts, deadline = 0, time.monotonic() + 120
    while active_runs(sql):
        assert time.monotonic() < deadline, f"runs still active after 120 s\n{workers.logs()}"
        for slot, proc in enumerate(supervised):
            if proc.poll() is None:  # type: ignore[attr-defined]
                continue
            died.setdefault(slot, time.monotonic())
            if time.monotonic() - died[slot] >= RESTART_BACKOFF:
                restarts += 1
                assert restarts <= 12, f"restarted {restarts} times\n{workers.logs()}"
                supervised[slot] = start()
                del died[slot]
        time.sleep(0.2)  # the supervisor's own check interval

    rows = statuses(sql, ["pill", *innocents])
    assert rows["pill"][:2] == ("DEAD", 5), rows["pill"]
    # Its first crash, beside other runs, was refunded like theirs; the five it caused
    # while running alone were charged.
    [(crashes,)] = sql("SELECT crashes FROM workflows WHERE id = 'pill'")
    assert len(marker.read_text().splitlines()) == crashes and 5 <= crashes <= 6
    dead = [i for i in innocents if rows[i][0] == "DEAD"]
    assert dead == [], f"{len(dead)} innocent run(s) dead-lettered with the pill: {dead}"
    assert all(rows[i][0] == "SUCCESS" for i in innocents)
    print(f"pill DEAD after 5 crashes; {restarts} worker restarts; 160 innocents SUCCESS")


# -- #7 -------------------------------------------------------------------------------------------


def test_a_parents_timeout_stops_its_child_at_the_next_step(faults, workers, sql):
    """The parent times out after 1 s while its child runs 8 transaction steps of 0.3 s.
    Today the child keeps committing all 8 and ends SUCCESS under a CANCELLED parent."""
    workers.start("faults_app.py", "--queues", "mixed", "--concurrency", "2")
    faults.mixed.enqueue(faults.parent_of_effects, workflow_id="tree", timeout=1)

    def settled() -> bool:
        """Both runs finished and no thread is inside either workflow's code any more."""
        children = sql("SELECT id FROM workflows WHERE parent_id = 'tree'")
        rows = statuses(sql, ["tree", *(c[0] for c in children)])
        return (len(rows) == 2 and all(row[0] not in ACTIVE for row in rows.values())
                and events(sql, "parent_of_effects:entered") >= 1
                and all(events(sql, f"{name}:entered") == events(sql, f"{name}:exited")
                        for name in ("parent_of_effects", "eight_effects")))

    wait_for(settled, 30, what="the parent and its child to finish and their code to return",
             logs=workers.logs)
    effects = sql("SELECT count(*) FROM effects")[0][0]
    [(child,)] = sql("SELECT id FROM workflows WHERE parent_id = 'tree'")
    rows = statuses(sql, ["tree", child])
    assert rows["tree"][0] == "CANCELLED", rows
    assert rows[child][0] == "CANCELLED", (rows, f"{effects} effects committed")
    assert effects < 8
    # Nothing runs the child's code any more, so nothing can commit another effect.
    assert sql("SELECT count(*) FROM effects")[0][0] == effects
    assert_no_infinite_not_before(sql)


# -- #8 -------------------------------------------------------------------------------------------


def test_concurrency_one_holds_while_timed_out_threads_run_on(faults, workers, sql):
    """Half the runs sleep 1 s under a 0.3 s timeout. Today the slot is freed at the timeout
    while the thread sleeps on, and the next run starts beside it."""
    for _ in range(2):
        workers.start("faults_app.py", "--queues", "solo", "--concurrency", "2")
    workers.wait_registered(sql, 2)
    ids = []
    for index in range(8):
        long = index % 2 == 0
        ids.append(faults.solo.enqueue(faults.interval, index, 1.0 if long else 0.1,
                                       timeout=0.3 if long else None,
                                       workflow_id=f"interval-{index}").workflow_id)

    wait_for(lambda: sql("SELECT count(*) FROM intervals")[0][0] == 8, 40,
             what="8 intervals", logs=workers.logs)
    wait_for(lambda: active_runs(sql) == 0, 15, what="8 runs to finish", logs=workers.logs)
    spans = sorted(sql("SELECT started, ended, job, pid FROM intervals"))
    overlaps = [(a, b) for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1]]
    assert overlaps == [], f"runs of a concurrency=1 queue overlapped: {overlaps}"
    rows = statuses(sql, ids)
    assert [rows[i][0] for i in ids] == ["CANCELLED", "SUCCESS"] * 4
    # Cancelled at the timeout, not when the thread finally returned.
    ended = {job: end for _, end, job, _ in spans}
    for index in range(0, 8, 2):
        [(finished,)] = sql("SELECT finished_at FROM workflows WHERE id = %s",
                            (f"interval-{index}",))
        assert finished.timestamp() < ended[index]


# -- #9 -------------------------------------------------------------------------------------------


def test_a_child_that_failed_with_a_retryable_error_reruns_with_its_parent(faults, workers, sql):
    """Today the child stays ERROR and every later attempt of the parent fails at once with
    WorkflowFailed, so the parent ends DEAD although a retry would have worked."""
    workers.start("faults_app.py", "--queues", "mixed", "--concurrency", "2")
    handle = faults.mixed.enqueue(faults.parent_of_flaky, "k", workflow_id="flaky")
    wait_for(lambda: handle.status() not in ACTIVE, 30, what="the parent to finish",
             logs=workers.logs)
    rows = statuses(sql, ["flaky"])
    assert rows["flaky"][0] == "SUCCESS", rows
    assert rows["flaky"][3] == "ok:k!"
    assert events(sql, "flaky_child", "k") == 2
    assert_no_infinite_not_before(sql)


# -- #10 ------------------------------------------------------------------------------------------

POLL = 5.0
TRIALS = 1000
STREAMS = 4


def test_no_lost_wake_up_over_a_thousand_enqueues(faults, workers, sql, database_url, schema):
    """An enqueue whose NOTIFY arrives while the worker is mid-round must still be claimed at
    once. Polling every 5 s cannot mask a lost wake-up here (an idle listening worker polls
    even less often). Each stream enqueues bursts of two runs onto its own queue, so the
    second enqueue often lands during the round that claims the first, and waits for both to
    start before the next burst: nothing else would wake the worker for a run it forgot."""
    workers.start("faults_app.py", "--queues", "busy,wake0,wake1,wake2,wake3",
                  "--concurrency", "12",
                  env={"PGSCHED_POLL_INTERVAL": str(POLL), "PGSCHED_POOL_SIZE": "16"})
    workers.wait_registered(sql, 1)
    faults.busy.enqueue_many([(faults.busywork, (), {})] * 2500)
    wait_for(lambda: sql("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")[0][0] > 20,
             20, what="the background queue to get busy", logs=workers.logs)

    latencies: list[float] = []
    stalled: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def stream(queue) -> None:  # type: ignore[no-untyped-def]
        rng = random.Random()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            done = 0
            while done < TRIALS // STREAMS and time.monotonic() < deadline:
                sent: dict[str, float] = {}
                for _ in range(2):
                    at = time.time()
                    sent[queue.enqueue(faults.stamp).workflow_id] = at
                    time.sleep(rng.uniform(0, 0.004))  # the load: land mid-round
                waited, started = 0.0, {}
                while len(started) < len(sent) and waited < POLL:
                    rows = conn.execute("SELECT id, output FROM workflows WHERE id = ANY(%s) "
                                        "AND status = 'SUCCESS'", (list(sent),)).fetchall()
                    started = {row[0]: float(row[1]) for row in rows}
                    time.sleep(0.005)  # poll interval, bounded by POLL
                    waited += 0.005
                with lock:
                    latencies.extend(started[i] - sent[i] for i in started)
                    stalled.extend(i for i in sent if i not in started)
                    if len(stalled) >= 3:
                        return  # enough evidence; keep the test's runtime bounded
                done += len(sent)

    threads = [threading.Thread(target=stream, args=(q,)) for q in faults.wakes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)

    ordered = sorted(latencies)
    p50 = statistics.median(ordered) if ordered else float("nan")
    p99 = ordered[int(len(ordered) * 0.99) - 1] if ordered else float("nan")
    print(f"enqueue-to-start over {len(ordered)} trials: p50 {p50 * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms, max {max(ordered, default=0) * 1000:.1f} ms; "
          f"{len(stalled)} waited longer than the {POLL:g} s poll interval")
    assert stalled == [], (f"{len(stalled)} of {len(ordered) + len(stalled)} runs were not "
                           f"started within one poll interval ({POLL:g} s): {stalled}")
    assert len(ordered) >= TRIALS
    assert max(ordered) < POLL


# -- #12 ------------------------------------------------------------------------------------------


def blocked_by(sql: Callable[..., list[tuple]], holder: int) -> set[int]:
    """Backends waiting on ``holder``'s locks, directly or behind another waiting backend
    (workers that queue on a lock of their own behind the first one count too)."""
    waits = dict(sql("SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity "
                     "WHERE wait_event_type = 'Lock'"))
    blocked: set[int] = set()
    grew = True
    while grew:
        grew = False
        for pid, blockers in waits.items():
            if pid not in blocked and ({holder} | blocked) & set(blockers):
                blocked.add(pid)
                grew = True
    return blocked


def test_workers_declaring_queues_in_opposite_orders_both_start(faults, workers, sql,
                                                                database_url, schema):
    """Workers with --queues a,b beside workers with --queues b,a, started at the same moment,
    several times over (first with no queue rows yet, then with rows to update). Today their
    queue declarations lock the two rows in opposite orders and deadlock. To make "the same
    moment" exact, the test holds a lock on the queues table until every worker waits on it
    (or has registered without touching the table), then lets them all go at once."""
    for attempt in range(3):
        with psycopg.connect(database_url) as gate:
            gate.execute(f'LOCK TABLE "{schema}".queues IN ACCESS EXCLUSIVE MODE')
            group = [workers.start("faults_app.py", "--queues", order, "--concurrency", "2")
                     for order in ("a,b", "b,a", "a,b", "b,a")]

            def lined_up() -> bool:
                waiting = len(blocked_by(sql, gate.info.backend_pid))  # noqa: B023
                return (waiting >= len(group)  # noqa: B023
                        or sql("SELECT count(*) FROM workers")[0][0] >= len(group)  # noqa: B023
                        or any(p.poll() is not None for p in group))  # noqa: B023

            wait_for(lined_up, 30, what="the workers to wait on the queues table",
                     logs=workers.logs)
        wait_for(lambda: sql("SELECT count(*) FROM workers")[0][0] == len(group)  # noqa: B023
                 or any(p.poll() is not None for p in group), 30,  # noqa: B023
                 what="the workers to register", logs=workers.logs)
        assert all(p.poll() is None for p in group), (
            f"start {attempt}: a worker exited\n{workers.logs()}")
        if attempt == 2:
            break
        for proc in group:
            proc.send_signal(signal.SIGTERM)
        for proc in group:
            assert proc.wait(20) == 0
    handles = [faults.first.enqueue(faults.ordinary, i) for i in range(4)]
    handles += [faults.second.enqueue(faults.ordinary, i) for i in range(4)]
    assert [h.result(timeout=15) for h in handles] == [0, 1, 2, 3] * 2


def test_a_rolling_deploy_never_strands_or_exceeds_queue_capacity(faults, workers, sql):
    """The new release declares ``deploy`` with concurrency=2; an old release without it
    starts mid-deploy. Today its declaration deletes the free slots: the new workers claim
    nothing until restarted, while the old one claims with no limit at all."""
    new = [workers.start("faults_app.py", "--queues", "deploy", "--concurrency", "2")
           for _ in range(2)]
    workers.wait_registered(sql, 2)
    faults.deploy.enqueue_many([(faults.deploy_span, (i, 0.25), {}) for i in range(12)])
    old = workers.start("faults_old_release.py", "--queues", "deploy", "--concurrency", "4")
    workers.wait_registered(sql, 3)
    faults.deploy.enqueue_many([(faults.deploy_span, (i, 0.25), {}) for i in range(12, 24)])
    wait_for(lambda: sql("SELECT count(*) FROM intervals")[0][0] == 24, 40,
             what="24 runs during the deploy", logs=workers.logs)

    old.send_signal(signal.SIGTERM)  # the deploy completes: only the new release is left
    assert old.wait(20) == 0
    faults.deploy.enqueue_many([(faults.deploy_span, (i, 0.1), {}) for i in range(24, 30)])
    wait_for(lambda: sql("SELECT count(*) FROM intervals")[0][0] == 30, 20,
             what="6 runs after the deploy, on the new release alone", logs=workers.logs)
    wait_for(lambda: active_runs(sql) == 0, 15, what="every run to finish", logs=workers.logs)

    assert sql("SELECT DISTINCT status FROM workflows") == [("SUCCESS",)]
    spans = sql("SELECT started, ended, pid FROM intervals")
    moments = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    running, peak = 0, 0
    for _, delta in moments:
        running += delta
        peak = max(peak, running)
    assert peak <= 2, f"{peak} runs of the concurrency=2 queue ran at once"
    new_pids = {p.pid for p in new}
    assert {pid for _, _, pid in spans} & new_pids
    warnings = [line for line in old.log_path.read_text().splitlines()
                if "WARNING" in line and "deploy" in line]
    assert warnings, f"the old release logged no warning about queue 'deploy'\n{workers.logs()}"
