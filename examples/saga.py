"""A saga: reserve stock, charge, ship; when shipping fails, undo the earlier steps in reverse.

No new primitive is needed: each forward step and each compensation is a checkpointed step,
and the workflow body is ordinary Python. Here every step is a `@app.transaction()`, so its
write and its checkpoint commit together: however often the run replays (a worker killed in
the middle, a retry), stock is reserved and released once, and the card charged and refunded
once. Steps that call outside services are at-least-once instead: give them idempotency keys
(see examples/orders.py).

Run it: `pgsched worker examples/saga.py`
and every 15 seconds a demo cron orders a fragile vase, which the carrier refuses: the log
shows the refund and the release, then `demo order ...: cancelled: the carrier refuses`.
"""

from __future__ import annotations

import os
import time
from datetime import datetime

import psycopg
from loguru import logger

import pgsched
from pgsched.errors import PermanentError

app = pgsched.App("saga")


class ShippingRefused(PermanentError):
    """The carrier will not take the parcel: retrying cannot help."""


def create_tables() -> None:
    with psycopg.connect(app.db.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS saga_ledger ("
                     " id serial PRIMARY KEY, order_id int NOT NULL, entry text NOT NULL)")


def _write(conn: psycopg.Connection, order_id: int, entry: str) -> None:
    conn.execute("INSERT INTO saga_ledger (order_id, entry) VALUES (%s, %s)", (order_id, entry))


@app.transaction()
def reserve_stock(conn: psycopg.Connection, order_id: int, sku: str) -> None:
    _write(conn, order_id, f"reserve {sku}")


@app.transaction()
def release_stock(conn: psycopg.Connection, order_id: int, sku: str) -> None:
    _write(conn, order_id, f"release {sku}")
    logger.info("order {}: released {}", order_id, sku)


@app.transaction()
def charge(conn: psycopg.Connection, order_id: int, cents: int) -> None:
    _write(conn, order_id, f"charge {cents}")


@app.transaction()
def refund(conn: psycopg.Connection, order_id: int, cents: int) -> None:
    if os.environ.get("SAGA_HANG_IN_REFUND") == "1":  # the crash test kills the worker here
        with psycopg.connect(app.db.url, autocommit=True) as other:
            _write(other, order_id, "refund started")
        while True:
            time.sleep(0.05)
    _write(conn, order_id, f"refund {cents}")
    logger.info("order {}: refunded {} cents", order_id, cents)


@app.transaction()
def ship(conn: psycopg.Connection, order_id: int, sku: str) -> str:
    if sku.startswith("fragile"):
        raise ShippingRefused(f"the carrier refuses {sku}")
    _write(conn, order_id, f"ship {sku}")
    return f"parcel-{order_id}"


@app.workflow()
def place_order(order_id: int, sku: str, cents: int) -> str:
    undo = []
    try:
        reserve_stock(order_id, sku)
        undo.append(lambda: release_stock(order_id, sku))
        charge(order_id, cents)
        undo.append(lambda: refund(order_id, cents))
        return ship(order_id, sku)
    except PermanentError as exc:
        for compensate in reversed(undo):
            compensate()
        return f"cancelled: {exc}"


@app.cron("*/15 * * * * *")
def demo_order(scheduled_at: datetime) -> str:
    """Orders a vase the carrier refuses, as a child run of the tick's run."""
    create_tables()
    order_id = int(scheduled_at.timestamp()) % 1_000_000
    result = place_order(order_id, "fragile-vase", 4200)
    logger.info("demo order {}: {}", order_id, result)
    return result
