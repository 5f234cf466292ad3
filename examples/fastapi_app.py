"""A FastAPI app that enqueues a job in the same async transaction as its own writes.

`POST /orders` inserts the order, enqueues its packing on the request's connection
(`await packing.enqueue_async(..., conn=conn)`), then takes the items from stock, all in one
transaction. If the stock runs out (or the product is unknown) the transaction rolls back and
the order and its job vanish together: the 409 names the job that never existed. If it
commits, a worker packs the order. The connections come from the app's own
`AsyncConnectionPool`; the tables are created at startup, so it runs on a fresh database.

Run it: `pgsched worker examples/fastapi_app.py & uvicorn examples.fastapi_app:web`
then order two mugs: `curl -f --json '{"sku": "mug", "quantity": 2}' localhost:8000/orders`
and the worker's log shows the order packed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, HTTPException
from loguru import logger
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

import pgsched

app = pgsched.App("shop")
packing = app.queue("packing", concurrency=4)


@app.transaction()
def create_tables(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS api_stock "
                 "(sku text PRIMARY KEY, available int NOT NULL CHECK (available >= 0))")
    conn.execute("CREATE TABLE IF NOT EXISTS api_orders (id serial PRIMARY KEY, "
                 "sku text NOT NULL, quantity int NOT NULL, status text NOT NULL DEFAULT 'new')")
    conn.execute("INSERT INTO api_stock VALUES ('mug', 10) ON CONFLICT DO NOTHING")


@app.transaction()
def mark_packed(conn: psycopg.Connection, order_id: int) -> None:
    conn.execute("UPDATE api_orders SET status = 'packed' WHERE id = %s", (order_id,))


@app.workflow()
def pack_order(order_id: int, sku: str, quantity: int) -> str:
    mark_packed(order_id)
    logger.info("packed order {} ({} x {})", order_id, quantity, sku)
    return f"packed:{order_id}"


@asynccontextmanager
async def lifespan(web: FastAPI) -> AsyncIterator[None]:
    await asyncio.to_thread(create_tables)  # with no URL, this starts the embedded server
    async with AsyncConnectionPool(app.db.url, open=False) as pool:
        web.state.pool = pool
        yield
    await app.close_async()


web = FastAPI(lifespan=lifespan)


class Order(BaseModel):
    sku: str
    quantity: int


@web.post("/orders", status_code=201)
async def create_order(order: Order) -> dict[str, object]:
    async with web.state.pool.connection() as conn:
        try:
            async with conn.transaction():  # commits on success, rolls back on any error
                cur = await conn.execute(
                    "INSERT INTO api_orders (sku, quantity) VALUES (%s, %s) RETURNING id",
                    (order.sku, order.quantity))
                (order_id,) = await cur.fetchone()
                job = await packing.enqueue_async(pack_order, order_id, order.sku,
                                                  order.quantity, conn=conn)
                taken = await conn.execute(
                    "UPDATE api_stock SET available = available - %s WHERE sku = %s",
                    (order.quantity, order.sku))
                if taken.rowcount == 0:
                    raise HTTPException(404, detail={"error": f"no product {order.sku!r}",
                                                     "job": job.workflow_id})
        except psycopg.errors.CheckViolation:
            raise HTTPException(409, detail={"error": "not enough stock",
                                              "job": job.workflow_id}) from None
    return {"order": order_id, "job": job.workflow_id}
