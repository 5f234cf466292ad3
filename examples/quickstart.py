"""Quickstart: a cron schedule, a named queue and a durable workflow in one small app.

Run it: `pgsched worker examples/quickstart.py`
With no PGSCHED_DATABASE_URL, pgsched starts its embedded PostgreSQL. Every 10 seconds the
cron tick enqueues a few emails and starts an order workflow; the log shows each one running
and finishing.
"""

from __future__ import annotations

from datetime import datetime

from loguru import logger

import pgsched

app = pgsched.App("quickstart")
emails = app.queue("emails", concurrency=5, worker_concurrency=2)


@app.workflow()
def send_email(user_id: int, subject: str) -> str:
    logger.info("sending {!r} to user {}", subject, user_id)
    return f"sent:{user_id}"


@app.step(retries=3)
def charge(order_id: int, cents: int) -> str:
    return f"receipt-{order_id}-{cents}"


@app.step()
def ship(order_id: int) -> str:
    return f"parcel-{order_id}"


@app.workflow()
def fulfil(order_id: int) -> dict:
    receipt = charge(order_id, 4200)
    parcel = ship(order_id)
    logger.info("order {} fulfilled: {} {}", order_id, receipt, parcel)
    return {"receipt": receipt, "parcel": parcel}


@app.cron("*/10 * * * * *")
def every_ten_seconds(scheduled_at: datetime) -> None:
    stamp = int(scheduled_at.timestamp())
    for user_id in range(3):
        emails.enqueue(send_email, user_id, f"digest {stamp}", dedup_key=f"{user_id}:{stamp}")
    app.start(fulfil, stamp % 1000, workflow_id=f"order-{stamp}")
    logger.info("tick {} enqueued 3 emails and order-{}", scheduled_at.isoformat(), stamp)
