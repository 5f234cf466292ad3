"""Async everywhere, and concurrency inside a workflow (issue 14): async steps, async
children of async parents, ``asyncio.gather`` of steps and of children replayed each to its
own call, and steps called from threads refused. Real worker processes, real PostgreSQL."""

from __future__ import annotations

import pytest

import pgsched
from pgsched.errors import ConfigurationError, WorkflowFailed
from tests.test_steps_compose import executions


def test_gathered_async_steps_replay_each_result_to_its_own_call(steps, workers, sql):
    """``gather(fruit("apple", 0.5), fruit("pear", 0))``: the pear finishes first. Numbers
    are taken when the calls are made, so the apple is step 1 whatever finishes first, and
    the second attempt (the first fails after the gather) replays each to its own call."""
    # With a timeout, the body runs in a task of its own: still the body.
    handle = steps.app.start(steps.basket, workflow_id="basket", timeout=60)
    workers.start("steps_app.py")
    assert handle.result(timeout=30) == {"apple": "APPLE", "pear": "PEAR"}
    assert sql("SELECT step_number, output FROM steps WHERE workflow_id = 'basket' "
               "ORDER BY 1") == [(1, "APPLE"), (2, "PEAR")]
    [(pear_done, apple_done)] = sql(
        "SELECT min(at) FILTER (WHERE key = 'pear'), min(at) FILTER (WHERE key = 'apple') "
        "FROM events WHERE label = 'fruit'")
    assert pear_done < apple_done, "the test needs the later call to finish first"
    assert sql("SELECT attempts FROM workflows WHERE id = 'basket'") == [(2,)]
    # Replayed, not run again.
    assert [executions(sql, "fruit", k) for k in ("apple", "pear")] == [1, 1]


def test_gathered_async_steps_run_at_the_same_time(steps, workers, sql):
    """Numbering at the call does not serialize the steps: every one has started before the
    first one ends (run one after another, the first would end before the second starts)."""
    handle = steps.app.start(steps.five_at_once)
    workers.start("steps_app.py")
    assert handle.result(timeout=30) == [f"f{i}" for i in range(5)]
    [(last_start, first_end)] = sql(
        "SELECT max(at) FILTER (WHERE label = 'slow_fruit:start'), "
        "min(at) FILTER (WHERE label = 'slow_fruit:end') FROM events")
    assert last_start < first_end
    assert sql("SELECT step_number, output FROM steps ORDER BY 1") == [
        (i + 1, f"f{i}") for i in range(5)]


def test_an_async_step_is_retried_and_checkpointed(steps, workers, sql):
    handle = steps.app.start(steps.retried_async_step, "k", workflow_id="flaky")
    workers.start("steps_app.py")
    assert handle.result(timeout=30) == 3
    assert sql("SELECT step_number, name, attempts, output FROM steps") == [
        (1, "flaky_async", 3, 3)]


def test_an_async_step_called_from_a_plain_workflow_returns_its_result(steps, workers, sql):
    handle = steps.app.start(steps.sync_calls_async_step, "kiwi")
    workers.start("steps_app.py")
    assert handle.result(timeout=30) == "KIWI"
    assert sql("SELECT step_number, name, output FROM steps") == [(1, "fruit", "KIWI")]


def test_an_async_parent_runs_async_children_also_gathered(steps, workers, sql):
    """Before: the child ran ``asyncio.run()`` inside the parent's running loop and the
    parent ended DEAD. The gathered children take their numbers (and so their ids) in call
    order, and the resumed parent replays all three."""
    handle = steps.app.start(steps.async_parent, 1, workflow_id="fam")
    workers.start("steps_app.py")
    assert handle.result(timeout=30) == [2, 4, 6]
    assert sql("SELECT id, parent_id, status, output FROM workflows WHERE parent_id = 'fam' "
               "ORDER BY id") == [("fam/1", "fam", "SUCCESS", 2), ("fam/2", "fam", "SUCCESS", 4),
                                  ("fam/3", "fam", "SUCCESS", 6)]
    assert sql("SELECT step_number, kind, child_id, output FROM steps "
               "WHERE workflow_id = 'fam' ORDER BY 1") == [
        (1, "child", "fam/1", 2), (2, "child", "fam/2", 4), (3, "child", "fam/3", 6)]
    assert sql("SELECT status, attempts FROM workflows WHERE id = 'fam'") == [("SUCCESS", 2)]
    assert [executions(sql, "fruit_count", k) for k in ("1", "2", "3")] == [1, 1, 1]


def test_a_plain_child_of_an_async_parent_calls_async_steps_and_children(steps, workers, sql):
    """The plain child runs on its parent's event loop thread, where a loop cannot nest."""
    handle = steps.app.start(steps.async_parent_of_plain_child, "lime", workflow_id="mixed")
    workers.start("steps_app.py")
    assert handle.result(timeout=30) == "LIME:8"
    assert sql("SELECT workflow_id, step_number, name, kind FROM steps ORDER BY 1, 2") == [
        ("mixed", 1, "plain_child", "child"),
        ("mixed/1", 1, "fruit", "step"),
        ("mixed/1", 2, "async_child", "child"),
        ("mixed/1/2", 1, "fruit_count", "step"),
    ]


@pytest.mark.parametrize(("workflow", "where"), [
    ("steps_in_threads", "a thread of its own"),
    ("step_in_executor", "a thread of its own"),
    ("helpers_in_gather", "an asyncio task of its own"),
])
def test_a_step_numbered_by_timing_is_refused(steps, workers, sql, workflow, where):
    """Before: ``asyncio.to_thread`` numbered the steps in whatever order the threads ran
    them, ``run_in_executor`` ran them as plain calls, never checkpointed, and helper
    coroutines gathered after racing awaits numbered their steps by which woke first (the
    replay swapped their results)."""
    handle = steps.app.start(getattr(steps, workflow))
    workers.start("steps_app.py")
    with pytest.raises(WorkflowFailed) as failure:
        handle.result(timeout=30)
    assert failure.value.status == "ERROR"
    assert failure.value.error["type"] == "StepPlacementError"
    assert where in failure.value.error["message"]
    assert sql("SELECT count(*) FROM events WHERE label = 'count'") == [(0,)]
    assert sql("SELECT count(*) FROM steps") == [(0,)]


def test_a_thread_inside_a_step_may_call_steps_as_plain_calls(steps, workers, sql):
    handle = steps.app.start(steps.thread_inside_step)
    workers.start("steps_app.py")
    assert handle.result(timeout=30) == "FIG"
    assert sql("SELECT step_number, name FROM steps") == [(1, "step_using_a_thread")]
    assert executions(sql, "count", "fig") == 1


def test_an_async_transaction_is_refused_where_it_is_defined(make_app):
    app = make_app()
    with pytest.raises(ConfigurationError, match="plain def"):

        @app.transaction()
        async def record(conn: object, order_id: int) -> None: ...

    assert "record" not in app.registry.steps
    assert isinstance(app, pgsched.App)
