"""The runnable examples work as their comments say, on a real worker process."""

from __future__ import annotations

import pytest

from tests.waiting import wait_for


@pytest.fixture
def public_tables(sql):
    yield
    sql("DROP TABLE IF EXISTS public.shop_orders, public.shop_stock, public.web_users")


def test_order_fulfilment_example(load_app_module, workers, sql, public_tables):
    # The worker's demo cron (shop_front) orders sku-1; this test orders its own product.
    orders = load_app_module("examples/orders.py")
    orders.create_tables()
    orders.restock("sku-test", 5)
    order_id = orders.create_order("sku-test", 2)
    workers.start("examples/orders.py")

    handle = orders.app.start(orders.fulfil_order, order_id, workflow_id=f"order-{order_id}")
    result = handle.result(timeout=60)

    assert result["order"] == order_id and result["charged_cents"] == 2500
    assert result["charge"].endswith("_2500")
    assert sql("SELECT available FROM public.shop_stock WHERE sku = 'sku-test'") == [(3,)]
    assert sql("SELECT status, charge_id FROM public.shop_orders WHERE id = %s",
               (order_id,)) == [("paid", result["charge"])]
    assert sql("SELECT step_number, name, kind FROM steps WHERE workflow_id = %s ORDER BY 1",
               (f"order-{order_id}",)) == [
        (1, "reserve_stock", "transaction"),
        (2, "charge_card", "step"),
        (3, "mark_paid", "transaction"),
    ]


def test_payment_provider_dedups_on_the_idempotency_key(load_app_module):
    orders = load_app_module("examples/orders.py")
    first = orders.payments.charge(100, idempotency_key="order-1-charge")
    again = orders.payments.charge(100, idempotency_key="order-1-charge")
    other = orders.payments.charge(100, idempotency_key="order-2-charge")
    assert first == again != other
    assert orders.payments.calls == 3


def test_web_signup_enqueues_in_the_same_transaction(load_app_module, workers, sql,
                                                      public_tables):
    webapp = load_app_module("examples/webapp.py")  # the first request creates its table
    client = webapp.web.test_client()

    created = client.post("/signups", json={"email": "ada@example.com"})
    assert created.status_code == 201
    job_id = created.get_json()["job"]
    assert sql("SELECT name, queue, status FROM workflows") == [
        ("send_welcome_email", "emails", "ENQUEUED")
    ]

    duplicate = client.post("/signups", json={"email": "ada@example.com"})
    invalid = client.post("/signups", json={"email": "nope"})
    assert (duplicate.status_code, invalid.status_code) == (409, 400)
    assert sql("SELECT count(*) FROM workflows") == [(1,)]
    assert sql("SELECT count(*) FROM public.web_users") == [(1,)]

    workers.start("examples/webapp.py")
    assert webapp.app.handle(job_id).result(timeout=60) == "welcomed:ada@example.com"
    wait_for(lambda: sql("SELECT count(*) FROM workers") == [(1,)], 10, what="worker row")
