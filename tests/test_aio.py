"""The async client: the sync client's semantics and errors, awaited on psycopg's
AsyncConnection, inside the caller's transaction or through the app's own async pool; and
examples/fastapi_app.py, a FastAPI app that enqueues in its request's transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgsched import errors, testing
from pgsched.errors import (
    ConfigurationError,
    DuplicateJob,
    ResultTimeout,
    SerializationError,
    WorkflowFailed,
    WorkflowNotFound,
)
from pgsched.queues import BATCH_CHUNK


class Rollback(Exception):
    """Raised inside a caller's transaction to roll it back."""


def count(sql: Callable[..., list[tuple]], where: str = "true", *params: Any) -> int:
    return sql(f"SELECT count(*) FROM workflows WHERE {where}", params)[0][0]  # noqa: S608


def test_enqueue_async_joins_the_callers_transaction(load_app_module, workers, sql,
                                                      database_url):
    mod = load_app_module("aio_app.py")

    async def main() -> tuple[Any, Any]:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            async with conn.transaction():
                kept = await mod.jobs.enqueue_async(mod.double, 21, conn=conn)
                # Not committed yet: no other connection (no worker) can see it.
                assert count(sql, "id = %s", kept.workflow_id) == 0
            assert count(sql, "id = %s", kept.workflow_id) == 1
            with pytest.raises(Rollback):
                async with conn.transaction():
                    dropped = await mod.jobs.enqueue_async(mod.double, 1, conn=conn)
                    with pytest.raises(WorkflowNotFound):  # uncommitted: invisible elsewhere
                        await dropped.status_async()
                    raise Rollback
        return kept, dropped

    kept, dropped = asyncio.run(main())
    assert count(sql, "id = %s", dropped.workflow_id) == 0
    workers.start("aio_app.py")

    async def wait() -> tuple[int, str]:
        value = await kept.result_async(timeout=60)
        return value, await kept.status_async()

    assert asyncio.run(wait()) == (42, "SUCCESS")
    assert count(sql) == 1


def _outcome(call: Callable[[], Any]) -> tuple[str, str]:
    try:
        value = call()
    except Exception as exc:  # the type and message are what is compared
        return type(exc).__name__, str(exc)
    return "returned", type(value).__name__


CASES: dict[str, Callable[[Any], tuple[tuple, dict]]] = {
    "missing argument": lambda m: ((m.double,), {}),
    "unknown keyword": lambda m: ((m.double, 1), {"colour": "red"}),
    "unstorable argument": lambda m: ((m.double, object()), {}),
    "negative delay": lambda m: ((m.double, 1), {"delay": -1}),
    "zero max_attempts": lambda m: ((m.double, 1), {"max_attempts": 0}),
    "empty workflow id": lambda m: ((m.double, 1), {"workflow_id": ""}),
    "huge dedup key": lambda m: ((m.double, 1), {"dedup_key": "k" * 3000}),
    "unregistered function": lambda m: ((print, 1), {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_async_exactly_as_sync_and_writes_nothing(case, load_app_module, sql):
    mod = load_app_module("aio_app.py")
    mod.app.migrate()
    args, options = CASES[case](mod)
    sync = _outcome(lambda: mod.jobs.enqueue(*args, **options))
    in_async = _outcome(lambda: asyncio.run(mod.jobs.enqueue_async(*args, **options)))
    assert in_async == sync
    assert issubclass(getattr(errors, sync[0]), errors.PgschedError), sync  # a typed error
    assert count(sql) == 0


def test_a_connection_of_the_wrong_kind_is_a_typed_error(load_app_module, sql, database_url):
    mod = load_app_module("aio_app.py")

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            with pytest.raises(ConfigurationError, match="use await enqueue_async"):
                mod.jobs.enqueue(mod.double, 1, conn=conn)
            with pytest.raises(ConfigurationError, match="use await enqueue_async"):
                mod.jobs.enqueue_many([(mod.double, (1,), {})] * 2, conn=conn)
        with psycopg.connect(database_url) as sync_conn:
            with pytest.raises(ConfigurationError, match="use enqueue"):
                await mod.jobs.enqueue_async(mod.double, 1, conn=sync_conn)
            with pytest.raises(ConfigurationError, match="use enqueue"):
                await mod.jobs.enqueue_many_async([(mod.double, (1,), {})], conn=sync_conn)

    asyncio.run(main())
    assert count(sql) == 0


def test_workflow_id_and_dedup_key_behave_as_in_the_sync_client(load_app_module, sql):
    mod = load_app_module("aio_app.py")

    async def main() -> None:
        first = await mod.app.start_async(mod.double, 1, workflow_id="order-1", queue="jobs")
        again = await mod.app.start_async(mod.double, 1, workflow_id="order-1", queue="jobs")
        assert first == again
        with pytest.raises(ConfigurationError, match="already used by a run of 'fail'"):
            await mod.jobs.enqueue_async(mod.double, 1, workflow_id="taken")
        one = await mod.jobs.enqueue_async(mod.double, 2, dedup_key="user-7")
        two = await mod.jobs.enqueue_async(mod.double, 3, dedup_key="user-7")
        assert one == two
        with pytest.raises(DuplicateJob, match=f"already has run {one.workflow_id}"):
            await mod.jobs.enqueue_async(mod.double, 4, dedup_key="user-7",
                                         on_duplicate="raise")
        await mod.app.close_async()

    mod.jobs.enqueue(mod.fail, "x", workflow_id="taken")
    asyncio.run(main())
    assert count(sql) == 3
    assert sql("SELECT count(*) FROM workflows WHERE dedup_key = 'user-7'") == [(1,)]


def test_enqueue_many_async_is_all_or_nothing_in_chunks(load_app_module, sql, database_url):
    mod = load_app_module("aio_app.py")
    total = BATCH_CHUNK * 2 + 500  # three statements down one pipeline

    async def main() -> list[Any]:
        assert await mod.jobs.enqueue_many_async([]) == []
        items: list[tuple[Any, tuple, dict]] = [(mod.double, (n,), {}) for n in range(total)]
        items[-1] = (mod.double, (object(),), {})  # found after two chunks went out
        with pytest.raises(SerializationError):
            await mod.jobs.enqueue_many_async(items)
        assert count(sql) == 0
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            with pytest.raises(Rollback):
                async with conn.transaction():
                    await mod.jobs.enqueue_many_async(
                        [(mod.double, (n,), {}) for n in range(total)], conn=conn)
                    raise Rollback
        assert count(sql) == 0
        return await mod.jobs.enqueue_many_async(
            [(mod.double, (n,), {}) for n in range(total)], priority=3)

    handles = asyncio.run(main())
    assert len(set(handles)) == total
    assert sql("SELECT count(*), min(priority), max(priority) FROM workflows") == [(total, 3, 3)]


def test_result_async_waits_returns_and_raises_like_result(load_app_module, sql):
    mod = load_app_module("aio_app.py")

    async def enqueue() -> tuple[Any, Any]:
        good = await mod.jobs.enqueue_async(mod.pipeline, 4)
        bad = await mod.jobs.enqueue_async(mod.fail, "no stock")
        with pytest.raises(ResultTimeout, match="still ENQUEUED after 0.1s"):
            await good.result_async(timeout=0.1)
        with pytest.raises(WorkflowNotFound):
            await mod.app.handle("nope").status_async()
        return good, bad

    good, bad = asyncio.run(enqueue())
    testing.run_until_idle(mod.app)

    async def results() -> None:
        assert await good.result_async(timeout=5) == good.result() == 12
        with pytest.raises(WorkflowFailed, match="no stock"):
            await bad.result_async(timeout=5)
        assert await bad.status_async() == "ERROR"

    asyncio.run(results())


def test_each_event_loop_gets_its_own_pool(load_app_module, sql):
    """A pool's connections belong to the loop that opened them: a second ``asyncio.run``
    (a second test client, a script's second call) must not reuse the first loop's."""
    mod = load_app_module("aio_app.py")
    first = asyncio.run(mod.app.start_async(mod.double, 1, queue="jobs"))
    second = asyncio.run(mod.app.start_async(mod.double, 2, queue="jobs"))
    assert first != second and count(sql) == 2


def test_an_unreachable_database_is_a_typed_error(make_app, monkeypatch):
    from pgsched.errors import DatabaseUnavailable

    app = make_app(database_url="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(DatabaseUnavailable, match="cannot connect"):
        asyncio.run(app.handle("any").status_async())


@pytest.fixture
def api_tables(sql):
    yield
    sql("DROP TABLE IF EXISTS public.api_orders, public.api_stock")


def test_fastapi_example_enqueues_in_the_request_transaction(load_app_module, workers, sql,
                                                            api_tables):
    from fastapi.testclient import TestClient

    shop = load_app_module("examples/fastapi_app.py")
    with TestClient(shop.web) as client:
        created = client.post("/orders", json={"sku": "mug", "quantity": 2})
        assert created.status_code == 201, created.text
        order, job = created.json()["order"], created.json()["job"]
        assert sql("SELECT id, name, queue, status FROM workflows") == [
            (job, "pack_order", "packing", "ENQUEUED")]

        too_many = client.post("/orders", json={"sku": "mug", "quantity": 100})
        unknown = client.post("/orders", json={"sku": "teapot", "quantity": 1})
    assert (too_many.status_code, unknown.status_code) == (409, 404)
    rolled_back = too_many.json()["detail"]["job"]
    assert rolled_back != job
    # The job was enqueued in the request's transaction, and went with its rollback.
    assert sql("SELECT id FROM workflows") == [(job,)]
    assert sql("SELECT id, status FROM public.api_orders") == [(order, "new")]
    assert sql("SELECT available FROM public.api_stock WHERE sku = 'mug'") == [(8,)]

    workers.start("examples/fastapi_app.py")
    assert shop.app.handle(job).result(timeout=60) == f"packed:{order}"
    assert sql("SELECT status FROM public.api_orders WHERE id = %s", (order,)) == [("packed",)]


def test_send_and_get_event_async_drive_a_waiting_run(load_app_module, workers, sql):
    waits = load_app_module("waits_app.py")
    workers.start("waits_app.py")

    async def ticker(stop: asyncio.Event) -> int:
        ticks = 0
        while not stop.is_set():
            await asyncio.sleep(0.05)
            ticks += 1
        return ticks

    async def main() -> Any:
        handle = await waits.jobs.enqueue_async(waits.approval, 7)
        stage = await waits.app.get_event_async(handle.workflow_id, "stage", timeout=60)
        assert stage == "awaiting approval"
        # Waiting for an event that never comes leaves the event loop free meanwhile.
        stop = asyncio.Event()
        ticks = asyncio.create_task(ticker(stop))
        assert await waits.app.get_event_async(handle.workflow_id, "never", timeout=1) is None
        stop.set()
        assert await ticks >= 10
        with pytest.raises(WorkflowNotFound):
            await waits.app.get_event_async("nope", "stage", timeout=1)
        with pytest.raises(WorkflowNotFound):
            await waits.app.send_async("nope", "yes", topic="approval")
        await waits.app.send_async(handle.workflow_id, "yes", topic="approval",
                                   idempotency_key="approve-7")
        await waits.app.send_async(handle.workflow_id, "again", topic="approval",
                                   idempotency_key="approve-7")  # a retried request
        return await handle.result_async(timeout=60)

    assert asyncio.run(main()) == {"claim": 7, "decision": "yes"}
