"""The durable-workflow examples: an approval that waits days (frozen time), and a saga whose
compensations run exactly once even when its worker is killed in the middle."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from pgsched import testing
from tests.waiting import wait_for

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def test_expense_escalates_after_7_days_then_is_approved_and_paid(load_app_module):
    approval = load_app_module("examples/approval.py")
    app, client = approval.app, approval.web.test_client()
    with freeze_time(MONDAY) as frozen:
        assert client.post("/claims/7").status_code == 201
        testing.run_until_idle(app)
        assert client.get("/claims/7").get_json() == {"stage": "awaiting approval"}
        # Six days and 23 hours: still waiting, nothing escalated.
        testing.advance(frozen, app, timedelta(days=6, hours=23))
        assert approval.ledger == ["submitted 7"]
        testing.advance(frozen, app, timedelta(hours=1))
        assert approval.ledger == ["submitted 7", "escalated 7"]
        assert client.get("/claims/7").get_json() == {"stage": "escalated"}
        # The director approves; the same request retried delivers the decision once.
        for _ in range(2):
            sent = client.post("/claims/7/decision", json={"approved": True},
                               headers={"Idempotency-Key": "director-1"})
            assert sent.status_code == 202
        testing.run_until_idle(app)
        assert approval.ledger == ["submitted 7", "escalated 7"]  # the cooling-off hour
        testing.advance(frozen, app, timedelta(hours=1))
        assert approval.ledger == ["submitted 7", "escalated 7", "paid 7"]
        assert app.handle("expense-7").result() == "paid"
        assert client.get("/claims/7").get_json() == {"stage": "paid"}


def test_expense_rejected_within_the_week(load_app_module):
    approval = load_app_module("examples/approval.py")
    app, client = approval.app, approval.web.test_client()
    with freeze_time(MONDAY) as frozen:
        client.post("/claims/8")
        testing.advance(frozen, app, timedelta(days=2))
        client.post("/claims/8/decision", json={"approved": False})
        testing.run_until_idle(app)
    assert app.handle("expense-8").result() == "rejected"
    assert approval.ledger == ["submitted 8"]


@pytest.fixture
def saga(load_app_module, sql):
    module = load_app_module("examples/saga.py")
    module.create_tables()
    yield module
    sql("DROP TABLE IF EXISTS public.saga_ledger")


def ledger(sql, order_id: int) -> list[str]:
    return [r[0] for r in sql("SELECT entry FROM public.saga_ledger WHERE order_id = %s "
                              "ORDER BY id", (order_id,))]


def test_saga_ships_when_it_can(saga, workers, sql):
    workers.start("examples/saga.py")
    assert saga.app.start(saga.place_order, 1, "book", 900).result(timeout=60) == "parcel-1"
    assert ledger(sql, 1) == ["reserve book", "charge 900", "ship book"]


def test_saga_compensates_in_reverse_exactly_once_across_a_sigkill(saga, workers, sql):
    first = workers.start("examples/saga.py", env={"SAGA_HANG_IN_REFUND": "1"})
    handle = saga.app.start(saga.place_order, 2, "fragile-vase", 4200)
    wait_for(lambda: "refund started" in ledger(sql, 2), 60, what="the refund to start",
             logs=workers.logs)
    first.kill()  # SIGKILL inside the refund's transaction: it never commits
    first.wait(10)
    workers.start("examples/saga.py")
    assert handle.result(timeout=60).startswith("cancelled: the carrier refuses")
    assert ledger(sql, 2) == ["reserve fragile-vase", "charge 4200", "refund started",
                              "refund 4200", "release fragile-vase"]
