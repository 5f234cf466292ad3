"""Durable workflows end to end: real worker processes, real SIGKILL and SIGTERM."""

from __future__ import annotations

import signal
import threading
from types import ModuleType

import pytest

from pgsched.errors import WorkflowFailed
from tests.waiting import wait_for


@pytest.fixture
def core(load_app_module, sql) -> ModuleType:
    module = load_app_module("core_app.py")
    module.app.migrate()
    sql("CREATE TABLE calls (name text, detail text, pid int, "
        "at timestamptz DEFAULT clock_timestamp())")
    sql("CREATE TABLE effects (step int, value int)")
    return module


def calls(sql, name: str) -> int:
    return sql("SELECT count(*) FROM calls WHERE name = %s", (name,))[0][0]


def test_sigkill_mid_workflow_is_taken_over_and_resumes_from_checkpoint(core, workers, sql):
    handle = core.app.start(core.five_steps, 7, workflow_id="order-7")
    doomed = workers.start("core_app.py", env={"CORE_BLOCK_STEP3": "1"})
    wait_for(lambda: calls(sql, "blocked") == 1, 30, what="step 3 to start", logs=workers.logs)
    assert sql("SELECT step_number FROM steps ORDER BY 1") == [(1,), (2,)]

    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    rescuer = workers.start("core_app.py")

    result = handle.result(timeout=60)
    assert result == f"done:73:{rescuer.pid}"
    # Finished steps were not re-executed; the step that was running when the worker died ran
    # again (steps are at-least-once), and each transaction step's write exists exactly once.
    assert [calls(sql, n) for n in ("step_one", "step_two", "step_three", "step_four",
                                    "step_five")] == [1, 1, 2, 1, 1]
    assert sql("SELECT step, value FROM effects ORDER BY step") == [(2, 70), (4, 72)]
    # The killed attempt is refunded (nothing says this run killed its worker); the run was
    # then retried alone, and that attempt is the one counted.
    assert sql("SELECT status, attempts, crashes FROM workflows WHERE id = 'order-7'") == [
        ("SUCCESS", 1, 1)]


def test_sigterm_hands_the_running_run_back_to_another_worker(core, workers, sql):
    handle = core.app.start(core.five_steps, 1, workflow_id="order-1")
    stopping = workers.start("core_app.py", env={"CORE_BLOCK_STEP3": "1",
                                                 "PGSCHED_SHUTDOWN_GRACE": "0.5"})
    wait_for(lambda: calls(sql, "blocked") == 1, 30, what="step 3 to start", logs=workers.logs)
    stopping.send_signal(signal.SIGTERM)
    assert stopping.wait(20) == 0
    # Handed back at once: ENQUEUED with the attempt not counted, not waiting for takeover.
    assert sql("SELECT status, attempts, executor FROM workflows WHERE id = 'order-1'") == [
        ("ENQUEUED", 0, None)
    ]
    assert sql("SELECT count(*) FROM workers") == [(0,)]

    finisher = workers.start("core_app.py")
    assert handle.result(timeout=60) == f"done:13:{finisher.pid}"
    assert calls(sql, "step_two") == 1
    assert sql("SELECT count(*) FROM effects") == [(2,)]


def test_twenty_threads_starting_one_workflow_id_run_it_once(core, workers, sql):
    handles = []
    barrier = threading.Barrier(20)

    def start() -> None:
        barrier.wait()
        handles.append(core.app.start(core.once, "x", workflow_id="only-once"))

    threads = [threading.Thread(target=start) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sql("SELECT count(*) FROM workflows") == [(1,)]
    workers.start("core_app.py")
    assert {h.result(timeout=30) for h in handles} == {"ran:x"}
    assert calls(sql, "once") == 1


def test_failing_workflow_is_retried_then_dead_lettered_with_its_error(core, workers, sql):
    handle = core.app.start(core.always_fails)
    workers.start("core_app.py")
    with pytest.raises(WorkflowFailed) as failure:
        handle.result(timeout=60)
    assert failure.value.status == "DEAD"
    assert "payment provider said no" in failure.value.error["message"]
    assert failure.value.error["type"] == "RuntimeError"
    assert calls(sql, "always_fails") == 2
    assert sql("SELECT attempts, max_attempts, finished_at IS NOT NULL FROM workflows") == [
        (2, 2, True)
    ]


def test_resumed_run_that_calls_different_steps_fails_with_a_determinism_error(core, workers, sql):
    handle = core.app.start(core.five_steps, 3, workflow_id="changed")
    sql("INSERT INTO steps (workflow_id, step_number, name, kind, output, started_at, finished_at)"
        " VALUES ('changed', 1, 'validate_card', 'step', '1', now(), now())")
    workers.start("core_app.py")
    with pytest.raises(WorkflowFailed) as failure:
        handle.result(timeout=30)
    assert failure.value.status == "ERROR"
    assert failure.value.error["type"] == "DeterminismError"
    assert "'step_one' as step 1" in failure.value.error["message"]
    assert "'validate_card'" in failure.value.error["message"]
    assert "fork" in failure.value.error["message"]
    assert calls(sql, "step_one") == 0


def test_child_workflows_are_checkpointed_like_steps(core, workers, sql):
    handle = core.app.start(core.parent, 5, workflow_id="family")
    workers.start("core_app.py")
    assert handle.result(timeout=30) == [11, 13]
    assert sql("SELECT id, parent_id, status FROM workflows WHERE parent_id IS NOT NULL "
               "ORDER BY id") == [("family/1", "family", "SUCCESS"),
                                  ("family/2", "family", "SUCCESS")]
    assert sql("SELECT step_number, kind, child_id FROM steps WHERE workflow_id = 'family' "
               "ORDER BY 1") == [(1, "child", "family/1"), (2, "child", "family/2")]


def test_run_of_a_workflow_this_worker_lacks_waits_for_a_worker_that_has_it(core, workers, sql):
    sql("INSERT INTO workflows (id, name, status, queue, inputs, max_attempts, not_before, "
        "created_at, updated_at) VALUES ('ghost-1', 'not_deployed_here', 'ENQUEUED', 'default', "
        "'{\"args\": [], \"kwargs\": {}}', 3, now(), now(), now())")
    handle = core.app.start(core.once, "after-ghost")
    proc = workers.start("core_app.py")
    assert handle.result(timeout=30) == "ran:after-ghost"
    assert proc.poll() is None
    assert sql("SELECT status, attempts, executor FROM workflows WHERE id = 'ghost-1'") == [
        ("ENQUEUED", 0, None)
    ]


def test_sigkill_inside_a_child_workflow_resumes_parent_and_child(core, workers, sql):
    handle = core.app.start(core.parent_of_slow_child, 4, workflow_id="p")
    doomed = workers.start("core_app.py", env={"CORE_BLOCK_CHILD": "1"})
    wait_for(lambda: calls(sql, "blocked") == 1, 30, what="the child to block", logs=workers.logs)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    workers.start("core_app.py")

    assert handle.result(timeout=60) == 4 * 2 + 100 + 1
    # The child's finished step was replayed from its checkpoint, not run again.
    assert calls(sql, "child_step") == 1
    assert calls(sql, "slow_child_step") == 2
    assert sql("SELECT id, status FROM workflows ORDER BY id") == [("p", "SUCCESS"),
                                                                  ("p/1", "SUCCESS")]
