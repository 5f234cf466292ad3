"""Order fulfilment: a durable workflow with a transaction step and an idempotent external call.

Shows the two delivery guarantees side by side:
- `reserve_stock` and `mark_paid` are `@app.transaction()` steps: their writes commit in the
  same transaction as their checkpoint, so they happen exactly once even across crashes;
- `charge_card` calls the outside world (a payment provider). A crash after the call but
  before its checkpoint commits re-runs it, so it sends an idempotency key derived from the
  order: the provider returns the first charge instead of charging twice.

Run it: `pgsched worker examples/orders.py`
Every 10 seconds a demo customer places an order (`shop_front`, a cron schedule that creates
the shop's tables if they are missing and stocks the shelf), and the log shows each order
reserved, charged and paid. Any other process can place orders the same way:
    from orders import app, create_order, fulfil_order
    order_id = create_order("sku-1", 2)
    app.start(fulfil_order, order_id, workflow_id=f"order-{order_id}").result(timeout=30)
"""

from __future__ import annotations

import itertools
import threading
from datetime import datetime

import psycopg
from loguru import logger

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
    """The shop's own tables; idempotent, so every process may call it."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS shop_stock (sku text PRIMARY KEY, available int NOT NULL "
        "CHECK (available >= 0));"
        "CREATE TABLE IF NOT EXISTS shop_orders (id serial PRIMARY KEY, sku text NOT NULL, "
        "quantity int NOT NULL, status text NOT NULL DEFAULT 'new', charge_id text)"
    )


@app.transaction()
def restock(conn: psycopg.Connection, sku: str, available: int) -> None:
    conn.execute(
        "INSERT INTO shop_stock (sku, available) VALUES (%s, %s) "
        "ON CONFLICT (sku) DO UPDATE SET available = GREATEST(shop_stock.available, %s)",
        (sku, available, available),
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
    logger.info("order {} paid: {} cents, charge {}", order_id, amount, charge_id)
    return {"order": order_id, "charged_cents": amount, "charge": charge_id}


@app.cron("*/10 * * * * *")
def shop_front(scheduled_at: datetime) -> None:
    """A demo customer: one order of two units every 10 seconds, fulfilled as its own run."""
    create_tables()
    restock("sku-1", 10)
    order_id = create_order("sku-1", 2)
    app.start(fulfil_order, order_id, workflow_id=f"order-{order_id}")
    logger.info("order {} placed at {}", order_id, scheduled_at.isoformat())
