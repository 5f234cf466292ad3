"""Starting a step as if it were a workflow is explained as what it is, not as a missing
decorator (the function already has one)."""

from __future__ import annotations

import pytest

import pgsched
from pgsched.errors import NotRegistered


def test_starting_a_step_says_to_call_it_from_a_workflow() -> None:
    app = pgsched.App("steps-only", database_url="postgresql://unused@127.0.0.1:1/x")

    @app.step(retries=2)
    def charge(order_id: int) -> str:
        return f"receipt-{order_id}"

    @app.transaction()
    def record(conn: object, order_id: int) -> None: ...

    with pytest.raises(NotRegistered) as step_error:
        app.start(charge, 1)
    with pytest.raises(NotRegistered) as transaction_error:
        app.queue("emails").enqueue(record, 1)
    assert "@app.step() function: a step only runs inside a workflow" in str(step_error.value)
    assert "@app.transaction() function" in str(transaction_error.value)
    for error in (step_error, transaction_error):
        assert "decorate it with" not in str(error.value)
        assert "Call it from an @app.workflow() function" in str(error.value)


def test_starting_another_apps_workflow_names_the_mistake() -> None:
    url = "postgresql://unused@127.0.0.1:1/x"
    billing, shipping = pgsched.App("billing", database_url=url), pgsched.App("shipping",
                                                                              database_url=url)

    @shipping.workflow()
    def ship(order_id: int) -> None: ...

    with pytest.raises(NotRegistered, match="ship' is a workflow of another pgsched.App"):
        billing.start(ship, 1)
