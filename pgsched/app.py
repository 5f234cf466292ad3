"""The App: one object a web process imports to enqueue work and a worker runs.

Constructing an App or decorating functions never connects or starts threads; the first
enqueue opens a pool, and only ``pgsched worker`` / ``app.run_worker()`` runs work.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from pgsched import tracing
from pgsched.context import current_run
from pgsched.cron import CronSchedule
from pgsched.db import Database
from pgsched.db.migrations import current_version, latest_version, migrate
from pgsched.errors import ConfigurationError, UnknownQueue
from pgsched.handles import Handle
from pgsched.queues import DEFAULT_QUEUE, Queue
from pgsched.registry import SPEC_ATTR, Registry, StepSpec
from pgsched.settings import Settings, load_settings
from pgsched.steps import call_child, call_step, call_transaction

F = TypeVar("F", bound=Callable[..., Any])


def _in_zone(fn: Callable[..., Any], schedule: CronSchedule) -> Callable[..., Any]:
    """Hand the function its tick in the schedule's zone: JSON keeps only a UTC offset."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(scheduled_at: datetime, *args: Any, **kwargs: Any) -> Any:
            return await fn(schedule.local(scheduled_at), *args, **kwargs)

        return run_async

    @functools.wraps(fn)
    def run(scheduled_at: datetime, *args: Any, **kwargs: Any) -> Any:
        return fn(schedule.local(scheduled_at), *args, **kwargs)

    return run


class App:
    def __init__(self, name: str, *, settings: Settings | None = None,
                 version: str | None = None, **overrides: Any) -> None:
        """``version`` names the release of this app's workflows (a git sha, a release tag);
        by default it is a hash of the registered workflows' and steps' source code. Runs
        resume on workers of the version they started under while one is alive."""
        self.name = name
        self._version = version
        self.settings = settings or load_settings(**overrides)
        self.db = Database(
            self.settings.database_url,
            self.settings.schema_name,
            data_dir=self.settings.data_dir,
            pool_size=self.settings.pool_size,
            pool_max_idle=self.settings.pool_max_idle,
            pooler=self.settings.pooler,
        )
        self.registry = Registry()
        self.queues: dict[str, Queue] = {DEFAULT_QUEUE: Queue(self, DEFAULT_QUEUE)}
        self.schedules: dict[str, CronSchedule] = {}
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"App({self.name!r})"

    @property
    def version(self) -> str:
        """The code version recorded on the runs this app's workers start."""
        from pgsched.versions import code_version

        return self._version or code_version(self.registry)

    # -- definitions -------------------------------------------------------------------------

    def queue(
        self,
        name: str,
        concurrency: int | None = None,
        worker_concurrency: int | None = None,
        rate_limit: tuple[int, float] | None = None,
    ) -> Queue:
        """Define a named queue. ``concurrency`` caps running runs fleet-wide,
        ``worker_concurrency`` per worker, ``rate_limit=(n, seconds)`` caps starts per window."""
        if name in self.queues and name != DEFAULT_QUEUE:
            raise ConfigurationError(f"queue {name!r} is defined twice")
        queue = Queue(self, name, concurrency, worker_concurrency, rate_limit)
        self.queues[name] = queue
        return queue

    def get_queue(self, name: str) -> Queue:
        try:
            return self.queues[name]
        except KeyError:
            known = ", ".join(sorted(self.queues))
            raise UnknownQueue(
                f"queue {name!r} is not defined by app {self.name!r} (known: {known}); "
                f"define it with app.queue({name!r}, ...)"
            ) from None

    def workflow(
        self, name: str | None = None, max_attempts: int | None = None
    ) -> Callable[[F], F]:
        """Register a durable workflow (sync or async). Called directly it is a plain call;
        ``app.start``/``queue.enqueue`` run it durably; called inside a workflow it is a child."""

        def decorate(fn: F) -> F:
            spec = self.registry.add_workflow(fn, name, max_attempts)

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                ctx = current_run.get()
                if ctx is None:
                    return fn(*args, **kwargs)
                return tracing.step(call_child, ctx, spec, args, kwargs)

            setattr(wrapper, SPEC_ATTR, spec)
            return wrapper  # type: ignore[return-value]

        return decorate

    def step(
        self,
        retries: int = 0,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        name: str | None = None,
    ) -> Callable[[F], F]:
        """Register a checkpointed step, retried ``retries`` times with backoff and jitter."""

        def decorate(fn: F) -> F:
            spec = self.registry.add_step(
                StepSpec(name or fn.__qualname__, fn, "step", retries, backoff, max_backoff)
            )

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                ctx = current_run.get()
                if ctx is None:
                    return fn(*args, **kwargs)
                return tracing.step(call_step, ctx, spec, args, kwargs)

            setattr(wrapper, SPEC_ATTR, spec)
            return wrapper  # type: ignore[return-value]

        return decorate

    def transaction(self, name: str | None = None) -> Callable[[F], F]:
        """Register a step that receives a psycopg connection as its first argument; its
        writes and its checkpoint commit in one transaction, so it takes effect exactly once."""

        def decorate(fn: F) -> F:
            spec = self.registry.add_step(StepSpec(name or fn.__qualname__, fn, "transaction"))

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                ctx = current_run.get()
                if ctx is not None:
                    return tracing.step(call_transaction, ctx, spec, args, kwargs)
                self.ensure_schema()
                with self.db.connection() as conn, conn.transaction():
                    return fn(conn, *args, **kwargs)

            setattr(wrapper, SPEC_ATTR, spec)
            return wrapper  # type: ignore[return-value]

        return decorate

    def cron(
        self,
        expression: str,
        tz: str = "UTC",
        name: str | None = None,
        queue: str | None = None,
        jitter: float | None = None,
        catch_up: Literal["latest", "all", "none"] = "latest",
        overlap: Literal["allow", "skip"] = "allow",
        max_attempts: int | None = None,
        catch_up_window: timedelta = timedelta(days=1),
    ) -> Callable[[F], F]:
        """Run the function on a cron schedule, once per tick fleet-wide. It receives the
        tick's ``scheduled_at`` (tz-aware, in ``tz``). The expression and zone are checked here.

        ``catch_up`` decides what a start after downtime runs: the most recent missed tick
        (``"latest"``), every missed tick within ``catch_up_window`` (``"all"``), or none."""

        def decorate(fn: F) -> F:
            schedule = CronSchedule(
                name=name or fn.__qualname__,
                expression=expression,
                tz=tz,
                queue=queue or DEFAULT_QUEUE,
                jitter=jitter,
                catch_up=catch_up,
                overlap=overlap,
                catch_up_window=catch_up_window,
            )
            if schedule.name in self.schedules:
                raise ConfigurationError(f"schedule {schedule.name!r} is defined twice")
            wrapped = self.workflow(name=schedule.name, max_attempts=max_attempts)(
                _in_zone(fn, schedule)
            )
            self.schedules[schedule.name] = schedule
            return wrapped  # type: ignore[return-value]

        return decorate

    # -- running work ------------------------------------------------------------------------

    def start(
        self,
        fn: Callable[..., Any],
        *args: Any,
        workflow_id: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        **kwargs: Any,
    ) -> Handle:
        """Start a durable run of a workflow; idempotent on ``workflow_id``."""
        return self.get_queue(queue).enqueue(
            fn,
            *args,
            workflow_id=workflow_id,
            priority=priority,
            delay=delay,
            max_attempts=max_attempts,
            timeout=timeout,
            **kwargs,
        )

    async def start_async(
        self,
        fn: Callable[..., Any],
        *args: Any,
        workflow_id: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        **kwargs: Any,
    ) -> Handle:
        """``start`` for asyncio code (``pgsched.aio``)."""
        return await self.get_queue(queue).enqueue_async(
            fn, *args, workflow_id=workflow_id, priority=priority, delay=delay,
            max_attempts=max_attempts, timeout=timeout, **kwargs,
        )

    # -- messages and events (pgsched.messages) ---------------------------------------------

    def send(
        self, workflow_id: str, message: Any, *, topic: str = "default",
        idempotency_key: str | None = None,
    ) -> None:
        """Send ``message`` to run ``workflow_id``; its ``pgsched.recv(topic)`` receives it,
        once, in send order per topic, waking the run if it is parked waiting for it.

        Called inside a workflow, the send is a step of that workflow (sent once however
        often it replays). ``idempotency_key`` makes a repeated send (a retried web
        request) deliver nothing more. Raises ``WorkflowNotFound`` for an unknown run and
        ``MessageUndeliverable`` for a finished one.
        """
        from pgsched import messages

        self.ensure_schema()
        messages.send(self.db, workflow_id, message, topic=topic,
                      idempotency_key=idempotency_key)

    def get_event(self, workflow_id: str, key: str, timeout: float = 60.0) -> Any:
        """The value run ``workflow_id`` published under ``key`` (``pgsched.set_event``),
        waiting up to ``timeout`` seconds for it to be set; ``None`` if it was not."""
        from pgsched import messages

        self.ensure_schema()
        return messages.get_event(self.db, workflow_id, key, timeout)

    async def send_async(
        self, workflow_id: str, message: Any, *, topic: str = "default",
        idempotency_key: str | None = None,
    ) -> None:
        """``send`` for asyncio code (``pgsched.aio``)."""
        from pgsched import aio

        await aio.send(self, workflow_id, message, topic=topic, idempotency_key=idempotency_key)

    async def get_event_async(self, workflow_id: str, key: str, timeout: float = 60.0) -> Any:
        """``get_event`` for asyncio code: waits on an async LISTEN, holding no thread."""
        from pgsched import aio

        return await aio.get_event(self, workflow_id, key, timeout)

    # -- operating on runs (pgsched.operations) ---------------------------------------------

    def list_workflows(self, **filters: Any) -> list[dict[str, Any]]:
        """Runs matching ``status``, ``name``, ``queue``, ``since``, ``until``, ``id_prefix``,
        newest first, paged with ``limit`` and ``offset``."""
        from pgsched import operations

        self.ensure_schema()
        return operations.list_workflows(self.db, **filters)

    def get_workflow(self, workflow_id: str) -> dict[str, Any]:
        from pgsched import operations

        self.ensure_schema()
        return operations.get_workflow(self.db, workflow_id)

    def cancel(self, workflow_id: str) -> None:
        from pgsched import operations

        self.ensure_schema()
        operations.cancel(self.db, workflow_id)

    def resume(self, workflow_id: str) -> Handle:
        from pgsched import operations

        self.ensure_schema()
        return operations.resume(self.db, workflow_id)

    def retry(self, workflow_id: str) -> Handle:
        from pgsched import operations

        self.ensure_schema()
        return operations.retry(self.db, workflow_id)

    def fork(self, workflow_id: str, from_step: int, queue: str | None = None) -> Handle:
        from pgsched import operations

        self.ensure_schema()
        if queue is not None:
            self.get_queue(queue)
        return operations.fork(self.db, workflow_id, from_step=from_step, queue=queue)

    def pause_schedule(self, name: str) -> None:
        """Stop schedule ``name`` from firing, fleet-wide, until ``resume_schedule``; ticks
        while paused are skipped, not caught up (``pgsched schedules pause NAME``)."""
        from pgsched import operations

        self.ensure_schema()
        operations.set_schedule_paused(self.db, name, True)

    def resume_schedule(self, name: str) -> None:
        """Let schedule ``name`` fire again from its next tick."""
        from pgsched import operations

        self.ensure_schema()
        operations.set_schedule_paused(self.db, name, False)

    def queue_stats(self) -> list[dict[str, Any]]:
        from pgsched import operations

        self.ensure_schema()
        return operations.queue_stats(self.db)

    def prune(self, older_than: timedelta) -> int:
        from pgsched import operations

        self.ensure_schema()
        return operations.prune(self.db, older_than)

    def handle(self, workflow_id: str) -> Handle:
        return Handle(self.db, workflow_id)

    def ensure_schema(self) -> None:
        """Migrate once per process, on first use, so a client never writes to a missing table."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            with self.db.connection() as conn:
                version = current_version(conn, self.db.schema)
            if version < latest_version():
                migrate(self.db)
            self._schema_ready = True

    def migrate(self) -> list[int]:
        applied = migrate(self.db)
        self._schema_ready = True
        return applied

    def run_worker(self, **options: Any) -> None:
        """Run a worker in this process until SIGTERM/SIGINT (what ``pgsched worker`` calls)."""
        from pgsched.worker import Worker

        Worker(self, **options).run()

    def close(self) -> None:
        self.db.close()

    async def close_async(self) -> None:
        """Close the async pool this event loop's async calls opened (and the sync pool)."""
        from pgsched import aio

        await aio.close(self.db)
        self.db.close()
