"""The async client: enqueue, start and wait from asyncio code (FastAPI, Starlette, aiohttp).

Users call it through the same objects as the sync client: ``await app.start_async(...)``,
``await queue.enqueue_async(..., conn=async_conn)``, ``await queue.enqueue_many_async(...)``,
``await handle.result_async()``, ``await handle.status_async()``. Parameters, checks and
conflict handling are the sync client's own (``Queue._enqueue_params``, ``Queue._batches``,
the ``Queue._insert_plan`` statement plan, ``Handle._settled``) and so are the ``.sql``
files: this module only executes them on psycopg's ``AsyncConnection``.

With ``conn`` a run is written in the caller's open async transaction, so it exists exactly
when the caller's own writes commit. Without, it goes through an ``AsyncConnectionPool`` that
this module opens for the app's database on first use. A pool belongs to the event loop that
opened it (its connections and tasks live there), so each running loop gets its own; a test
client or ``asyncio.run`` per script thus never borrows a connection from a dead loop.
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pgsched import clock
from pgsched.context import current_run
from pgsched.db.database import check_connect
from pgsched.db.redact import error_reason, mask_url
from pgsched.errors import ConfigurationError, DatabaseUnavailable
from pgsched.handles import Handle, next_poll
from pgsched.messages import event_value, events_channel
from pgsched.queues import Plan
from pgsched.tracing import traced_enqueue

if TYPE_CHECKING:
    from pgsched.app import App
    from pgsched.db import Database
    from pgsched.queues import Queue

#: Per database, per event loop: the task that opens (then holds) its pool.
_pools: weakref.WeakKeyDictionary[
    Database, dict[asyncio.AbstractEventLoop, asyncio.Task[AsyncConnectionPool]]
] = weakref.WeakKeyDictionary()


async def pool(db: Database) -> AsyncConnectionPool:
    """The async pool of ``db`` for the running event loop, opened on first use.

    Concurrent first callers await one opening; a failed opening is forgotten, so the next
    call tries again (the database may be back)."""
    loop = asyncio.get_running_loop()
    per_loop = _pools.setdefault(db, {})
    for stale in [other for other in per_loop if other.is_closed()]:
        del per_loop[stale]  # its loop is gone, and its connections with it
    task = per_loop.get(loop)
    if task is None:
        task = per_loop[loop] = loop.create_task(_open(db))
    try:
        return await asyncio.shield(task)
    except BaseException:
        if task.done() and per_loop.get(loop) is task:
            del per_loop[loop]
        raise


async def _open(db: Database) -> AsyncConnectionPool:
    """Open a pool as the sync client opens its own: a first connection attempt that turns a
    failure into a readable typed error (DatabaseUnavailable, ConfigurationError) and the same
    session options; ``_connection`` measures the offset to the database clock, as
    ``Database.connection`` does. Its connections are in autocommit: every statement pgsched
    sends through it is its own transaction, and ``enqueue_many_async`` opens an explicit one
    where it needs one."""
    url = await asyncio.to_thread(lambda: db.url)  # may start the embedded server
    await asyncio.to_thread(check_connect, url)
    opened = AsyncConnectionPool(
        url, min_size=1, max_size=db.pool_size, max_idle=db.pool_max_idle,
        kwargs={"row_factory": dict_row, "connect_timeout": 5, "autocommit": True,
                **db.session_options()},
        open=False, name="pgsched-async",
    )
    await opened.open(wait=True)
    return opened


async def close(db: Database) -> None:
    """Close ``db``'s async pool of the running loop (``app.close_async()``)."""
    per_loop = _pools.get(db)
    task = per_loop.pop(asyncio.get_running_loop(), None) if per_loop is not None else None
    if task is not None:
        try:
            opened = await task
        except Exception:  # it never opened: nothing to close
            return
        await opened.close()


async def ensure_schema(app: App) -> None:
    """Migrate once per process before the first write, as the sync client does (in a
    thread: migrations are sync code and may wait on other processes' migration lock)."""
    if not app._schema_ready:
        await asyncio.to_thread(app.ensure_schema)


@asynccontextmanager
async def _connection(db: Database, conn: Any) -> AsyncIterator[Any]:
    """The caller's connection (its transaction), else one of the async pool's."""
    if conn is not None and not isinstance(conn, AsyncConnection):
        raise ConfigurationError(
            f"conn must be a psycopg AsyncConnection, got {type(conn).__name__}; with a "
            "sync connection, use enqueue(...) / enqueue_many(...)")
    if conn is not None:
        yield conn
        return
    async with (await pool(db)).connection() as pooled:
        if clock.stale():  # as Database.connection does
            sent = clock.local_now()
            row = await (await pooled.execute("SELECT clock_timestamp() AS db_now")).fetchone()
            clock.observe(row["db_now"], sent, clock.local_now())  # type: ignore[index]
        yield pooled


async def run_plan(plan: Plan, fetchone: Callable[[str, dict[str, Any]], Any]) -> Any:
    """``queues.run_plan`` with an async ``fetchone``."""
    try:
        step = next(plan)
        while True:
            step = plan.send(await fetchone(*step))
    except StopIteration as done:
        return done.value


@traced_enqueue
async def enqueue(
    queue: Queue,
    fn: Callable[..., Any],
    *args: Any,
    workflow_id: str | None = None,
    priority: int = 0,
    delay: float | timedelta | None = None,
    dedup_key: str | None = None,
    max_attempts: int | None = None,
    timeout: float | timedelta | None = None,
    conn: Any = None,
    on_duplicate: Literal["return", "raise"] = "return",
    **kwargs: Any,
) -> Handle:
    """``Queue.enqueue`` on an async connection; see ``Queue.enqueue_async``."""
    params = queue._enqueue_params(fn, args, kwargs, workflow_id=workflow_id,
                                   priority=priority, delay=delay, dedup_key=dedup_key,
                                   max_attempts=max_attempts, timeout=timeout)
    db = queue.app.db
    await ensure_schema(queue.app)
    # In the caller's transaction enqueue.sql notifies at its commit; on a pooled connection
    # the insert commits alone and the process's waker notifies after it, as in the sync path.
    statement = "enqueue" if conn is not None else "enqueue_insert"
    async with _connection(db, conn) as target:
        cur = target.cursor(row_factory=dict_row)

        async def fetchone(name: str, values: dict[str, Any]) -> Any:
            await cur.execute(db.sql(name), values)
            return await cur.fetchone()

        handle, inserted = await run_plan(
            queue._insert_plan(statement, params, workflow_id, on_duplicate), fetchone)
    if inserted and conn is None:
        queue.wake_after_commit(params)
    return handle


@traced_enqueue
async def enqueue_many(
    queue: Queue,
    items: Iterable[tuple[Callable[..., Any], tuple, dict]],
    *,
    priority: int = 0,
    delay: float | timedelta | None = None,
    max_attempts: int | None = None,
    timeout: float | timedelta | None = None,
    conn: Any = None,
) -> list[Handle]:
    """``Queue.enqueue_many`` on an async connection: the same statements, chunks and
    all-or-nothing transaction."""
    chunks = queue._batches(items, priority=priority, delay=delay,
                            max_attempts=max_attempts, timeout=timeout)
    first = next(chunks, None)
    if first is None:
        return []
    db = queue.app.db
    statement = db.sql("enqueue_many")
    await ensure_schema(queue.app)
    async with _connection(db, conn) as target:
        second = next(chunks, None)
        if second is None:
            await target.execute(statement, first)
            ids = first["ids"]
        else:
            ids = []
            async with target.pipeline(), target.transaction():
                for params in itertools.chain((first, second), chunks):
                    await target.cursor().execute(statement, params)
                    ids.extend(params["ids"])
    return [Handle(db, workflow_id) for workflow_id in ids]


async def send(app: App, workflow_id: str, message: Any, *, topic: str,
               idempotency_key: str | None) -> None:
    """``App.send`` on a thread: a delivery may wake a parked run, a state change that only
    ``lifecycle.py`` makes, in sync code. It is one short transaction, and the event loop
    goes on meanwhile. Inside an async workflow the send is a step of that run, numbered on
    the body's own thread as every step is, so it runs there, like ``pgsched.recv``."""
    if current_run.get() is not None:
        app.send(workflow_id, message, topic=topic, idempotency_key=idempotency_key)
        return
    await asyncio.to_thread(app.send, workflow_id, message, topic=topic,
                            idempotency_key=idempotency_key)


async def get_event(app: App, workflow_id: str, key: str, timeout: float) -> Any:
    """``messages.get_event`` on an async connection: LISTEN first, then read, then wait
    for a notification slice by slice, holding no thread while it waits."""
    db = app.db
    await ensure_schema(app)
    url = await asyncio.to_thread(lambda: db.url)
    try:
        conn = await AsyncConnection.connect(url, autocommit=True, row_factory=dict_row,
                                             connect_timeout=5, **db.session_options())
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to {mask_url(url)}: "
                                  f"{error_reason(exc, url)}") from None
    async with conn:
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(events_channel(db))))
        waited = 0.0
        while True:
            cur = await conn.execute(db.sql("get_event"), {"id": workflow_id, "key": key})
            found, value = event_value(await cur.fetchone(), workflow_id, key)  # type: ignore[arg-type]
            if found:
                return value
            if waited >= timeout:
                return None
            slice_ = min(0.5, timeout - waited)
            notified = False
            async for notice in conn.notifies(timeout=slice_, stop_after=1):
                notified = notice.payload == workflow_id
            if not notified:
                waited += slice_


async def get_run(handle: Handle) -> dict[str, Any]:
    """The run's row, as ``Handle._row`` reads it."""
    db = handle._db
    async with _connection(db, None) as conn:
        cur = await conn.execute(db.sql("get_run"), {"id": handle.workflow_id})
        return handle._found(await cur.fetchone())


async def result(handle: Handle, timeout: float | None, poll: float) -> Any:
    """``Handle.result``'s wait (same decisions, same backoff), on the event loop. Elapsed
    time is the sum of the sleeps, so it ends under freezegun too."""
    waited = 0.0
    delay = poll
    while True:
        finished, output = handle._settled(await get_run(handle), timeout, waited)
        if finished:
            return output
        await asyncio.sleep(delay)
        waited += delay
        delay = next_poll(delay)
