"""Steps compose (issue 14): a step called inside a step is part of it, with one checkpoint;
a transaction or a child workflow inside a step, whose commit could not be exactly once, is
refused with a typed error. Real worker processes, real PostgreSQL."""

from __future__ import annotations

import pytest

from pgsched.errors import WorkflowFailed


def executions(sql, label: str, key: str = "") -> int:
    return sql("SELECT count(*) FROM events WHERE label = %s AND key = %s", (label, key))[0][0]


def test_a_step_inside_a_step_is_part_of_it_on_retry_and_on_resume(steps, workers, sql):
    """``outer`` calls ``inner`` twice and fails its first try; the run then fails its first
    attempt after ``after``, so the second attempt resumes from the checkpoints. Before the
    fix each inner call took a step number of its own: the retry of ``outer`` checkpointed
    two more, and the resume found ``inner`` where it called ``outer`` (DeterminismError)."""
    handle = steps.app.start(steps.composed, 1, workflow_id="composed")
    workers.start("steps_app.py")
    assert handle.result(timeout=30) == [(1 + 1) + (11 + 1), 100]
    # One checkpoint per step the workflow body called, none for the inner calls.
    assert sql("SELECT step_number, name FROM steps WHERE workflow_id = 'composed' "
               "ORDER BY 1") == [(1, "outer"), (2, "after")]
    assert sql("SELECT status, attempts FROM workflows WHERE id = 'composed'") == [
        ("SUCCESS", 2)]
    # The inner steps ran once per try of ``outer`` (two tries), and the resume ran nothing.
    assert [executions(sql, "inner", k) for k in ("1", "11")] == [2, 2]
    assert executions(sql, "outer", "1") == 2
    assert executions(sql, "after", "1") == 1


def test_a_transaction_inside_a_step_is_refused_and_writes_nothing(steps, workers, sql):
    """Before: the transaction committed on each try of its outer step (twice here)."""
    handle = steps.app.start(steps.transaction_in_step, "x", workflow_id="tx-in-step")
    workers.start("steps_app.py")
    with pytest.raises(WorkflowFailed) as failure:
        handle.result(timeout=30)
    assert failure.value.status == "ERROR"
    assert failure.value.error["type"] == "StepPlacementError"
    message = failure.value.error["message"]
    assert "'write_effect'" in message and "'step_calling_transaction'" in message
    assert "exactly once" in message and "workflow body" in message
    assert sql("SELECT count(*) FROM effects") == [(0,)]
    assert sql("SELECT count(*) FROM steps") == [(0,)]
    # Refused at once: a retry cannot move the call, so the outer step was not retried.
    assert executions(sql, "step_calling_transaction", "x") == 0


def test_a_transaction_inside_a_transaction_is_refused(steps, workers, sql):
    handle = steps.app.start(steps.transaction_in_transaction, "y")
    workers.start("steps_app.py")
    with pytest.raises(WorkflowFailed) as failure:
        handle.result(timeout=30)
    assert failure.value.error["type"] == "StepPlacementError"
    assert "use the connection" in failure.value.error["message"]
    assert sql("SELECT count(*) FROM effects") == [(0,)]


def test_a_step_inside_a_transaction_is_part_of_its_transaction(steps, workers, sql):
    handle = steps.app.start(steps.step_in_transaction, "abc", workflow_id="step-in-tx")
    workers.start("steps_app.py")
    assert handle.result(timeout=30) == "4"
    assert sql("SELECT step_number, name, kind FROM steps") == [
        (1, "transaction_calling_step", "transaction")]
    assert sql("SELECT label FROM effects") == [("abc",)]


def test_a_child_workflow_inside_a_step_is_refused(steps, workers, sql):
    handle = steps.app.start(steps.child_in_step, 3, workflow_id="child-in-step")
    workers.start("steps_app.py")
    with pytest.raises(WorkflowFailed) as failure:
        handle.result(timeout=30)
    assert failure.value.error["type"] == "StepPlacementError"
    assert "'little_child'" in failure.value.error["message"]
    assert sql("SELECT id FROM workflows ORDER BY id") == [("child-in-step",)]


def test_a_base_exception_inside_a_nested_step_is_a_failed_attempt_of_the_run(
    steps, workers, sql
):
    """Not retried by the steps (their retries are for exceptions), never swallowed: each
    run attempt executes it once, and the run is dead-lettered after its two attempts."""
    handle = steps.app.start(steps.base_exception_in_nested_step, "k", workflow_id="exits")
    worker = workers.start("steps_app.py")
    with pytest.raises(WorkflowFailed) as failure:
        handle.result(timeout=30)
    assert (failure.value.status, failure.value.error["type"]) == ("DEAD", "SystemExit")
    assert executions(sql, "exits_inside", "k") == 2
    assert sql("SELECT count(*) FROM steps") == [(0,)]
    assert worker.poll() is None
