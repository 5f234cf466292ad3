"""Order fulfilment: a durable workflow with a transaction step and an idempotent external call.

Shows the two delivery guarantees side by side:
- `reserve_stock` and `mark_paid` are `@app.transaction()` steps: their writes commit in the
  same transaction as their checkpoint, so they happen exactly once even across crashes;
- `charge_card` calls the outside world (a payment provider). A crash after the call but
  before its checkpoint commits re-runs it, so it sends an idempotency key derived from the
  order: the provider returns the first charge instead of charging twice.

Run a worker with `pgsched worker examples/orders.py`, then from Python:
    from examples.orders import app, fulfil_order, create_order
    order_id = create_order("sku-1", 2)
    app.start(fulfil_order, order_id, workflow_id=f"order-{order_id}").result(timeout=30)
"""

from __future__ import annotations

import itertools
import threading

import psycopg

import pgsched

app = pgsched.App("orders")


class PaymentProvider:
    """Stands in for a real provider's API, which dedups requests on an Idempotency-Key."""

    def __init__(self) -> None:
        self._charges: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.calls = 0

    def charge(self, amount_cents: int, idempotency_key: str) -> str:
        with self._lock:
            self.calls += 1
            if idempotency_key not in self._charges:
                self._charges[idempotency_key] = f"ch_{next(self._ids)}_{amount_cents}"
            return self._charges[idempotency_key]


payments = PaymentProvider()


@app.transaction()
def create_tables(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS shop_stock (sku text PRIMARY KEY, available int NOT NULL "
        "CHECK (available >= 0));"
        "CREATE TABLE IF NOT EXISTS shop_orders (id serial PRIMARY KEY, sku text NOT NULL, "
        "quantity int NOT NULL, status text NOT NULL DEFAULT 'new', charge_id text)"
    )


@app.transaction()
def create_order(conn: psycopg.Connection, sku: str, quantity: int) -> int:
    row = conn.execute(
        "INSERT INTO shop_orders (sku, quantity) VALUES (%s, %s) RETURNING id", (sku, quantity)
    ).fetchone()
    return int(row["id"])


@app.transaction()
def reserve_stock(conn: psycopg.Connection, order_id: int) -> int:
    row = conn.execute(
        "UPDATE shop_stock s SET available = s.available - o.quantity FROM shop_orders o "
        "WHERE o.id = %s AND s.sku = o.sku RETURNING s.available, o.quantity",
        (order_id,),
    ).fetchone()
    if row is None:
        raise pgsched.errors.PermanentError(f"order {order_id}: unknown order or product")
    conn.execute("UPDATE shop_orders SET status = 'reserved' WHERE id = %s", (order_id,))
    return int(row["quantity"]) * 1250


@app.step(retries=3)
def charge_card(order_id: int, amount_cents: int) -> str:
    return payments.charge(amount_cents, idempotency_key=f"order-{order_id}-charge")


@app.transaction()
def mark_paid(conn: psycopg.Connection, order_id: int, charge_id: str) -> None:
    conn.execute(
        "UPDATE shop_orders SET status = 'paid', charge_id = %s WHERE id = %s",
        (charge_id, order_id),
    )


@app.workflow()
def fulfil_order(order_id: int) -> dict:
    amount = reserve_stock(order_id)
    charge_id = charge_card(order_id, amount)
    mark_paid(order_id, charge_id)
    return {"order": order_id, "charged_cents": amount, "charge": charge_id}
