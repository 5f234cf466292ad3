"""Named queues and enqueueing onto them.

A queue is a name plus limits; the rows live in ``workflows``. Limits are enforced by the
claim query (see ``sql/queries/claim.sql``), never by the enqueuer.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
import re
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from pgsched.clock import utcnow
from pgsched.errors import ConfigurationError, DuplicateJob
from pgsched.handles import Handle
from pgsched.serialization import encode_inputs
from pgsched.tracing import traced_enqueue, traceparent
from pgsched.wakeups import waker_for

if TYPE_CHECKING:
    from pgsched.app import App

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
DEFAULT_QUEUE = "default"
#: Rows per statement of ``enqueue_many``: big enough that a statement's fixed cost vanishes,
#: small enough that the server starts inserting while the client still serializes.
BATCH_CHUNK = 1_000
#: Longest workflow id or dedup key, in UTF-8 bytes. Both are btree-indexed, and PostgreSQL
#: refuses an index row over about 2700 bytes ("index row requires ... bytes") only after
#: the insert started; the margin leaves room for the ``/N`` a child run appends per level.
MAX_KEY_BYTES = 2_000


def wake_payload(queue: str, not_before: datetime, now: datetime) -> str:
    """What an enqueue NOTIFYs: the queue's name, and for a run that may not start yet, also
    when it may (``emails@1795000000.5``), so idle workers set a timer instead of looking.
    Queue names cannot hold '@'."""
    return wake_payload_at(queue, None if not_before <= now else not_before.timestamp())


def wake_payload_at(queue: str, at: float | None) -> str:
    """``wake_payload`` for a run startable at Unix time ``at`` (None: now)."""
    return queue if at is None else f"{queue}@{at!r}"


def parse_wake(payload: str) -> tuple[str, float | None]:
    """The queue a NOTIFY names, and the Unix time its run may start at (None: now)."""
    queue, _, at = payload.partition("@")
    try:
        return queue, float(at) if at else None
    except ValueError:
        return queue, None


def new_ids(count: int) -> list[str]:
    """Time-ordered UUIDs (version 7 layout): new rows land at the right edge of the index.

    One ``os.urandom`` call serves the whole batch: a system call per id was a tenth of what
    ``enqueue_many`` spent in Python.
    """
    ms = (time.time_ns() // 1_000_000) & ((1 << 48) - 1)
    entropy = os.urandom(10 * count)
    ids = []
    for offset in range(0, 10 * count, 10):
        rand = int.from_bytes(entropy[offset:offset + 10], "big")
        value = ms << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
        value |= 0b10 << 62 | (rand & ((1 << 62) - 1))
        ids.append(str(uuid.UUID(int=value)))
    return ids


def new_id() -> str:
    return new_ids(1)[0]


def _check_key(value: str | None, label: str) -> None:
    """A workflow id or dedup key the indexes can hold, or ConfigurationError up front."""
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{label} must be a non-empty string, got {value!r}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ConfigurationError(
            f"{label} contains a lone surrogate, which has no UTF-8 form; use valid text"
        ) from None
    if size > MAX_KEY_BYTES:
        raise ConfigurationError(
            f"{label} is {size} bytes long (UTF-8), more than the {MAX_KEY_BYTES} pgsched "
            f"allows ({value[:40]!r}...); use a shorter one, for example a hash of it"
        )
    if "\x00" in value:
        raise ConfigurationError(f"{label} contains a NUL character (U+0000); remove it")


Checker = Callable[[tuple, dict], None]

#: A sequence of statements whose next one depends on the rows of the last: it yields
#: ``(query name, parameters)``, receives the statement's first row (or None), and returns
#: its result. ``run_plan`` executes one on a psycopg connection, ``pgsched.aio`` on an
#: async one, so enqueue's logic exists once whichever way it is called.
Plan = Generator[tuple[str, dict[str, Any]], "dict[str, Any] | None", Any]


def run_plan(plan: Plan, fetchone: Callable[[str, dict[str, Any]], Any]) -> Any:
    """Execute ``plan``, each of its statements with ``fetchone(name, params)``."""
    try:
        step = next(plan)
        while True:
            step = plan.send(fetchone(*step))
    except StopIteration as done:
        return done.value


@functools.cache
def argument_checker(fn: Callable[..., Any], name: str) -> Checker:
    """A check that a call ``fn(*args, **kwargs)`` binds to ``fn``'s signature.

    Enqueueing arguments the function cannot take used to fail only in the worker, after
    every retry. The common signature (plain positional parameters, no defaults) gets a
    length check; anything else ``inspect.Signature.bind``.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C function without a signature
        return lambda args, kwargs: None
    params = list(signature.parameters.values())
    simple = all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params)

    def fail(args: tuple, kwargs: dict, reason: str) -> None:
        raise ConfigurationError(
            f"workflow {name!r} cannot be called with {len(args)} positional argument(s)"
            f"{' and keywords ' + ', '.join(map(repr, kwargs)) if kwargs else ''}: {reason}; "
            f"its signature is {name}{signature}. Nothing was enqueued"
        )

    def check(args: tuple, kwargs: dict) -> None:
        if simple and not kwargs and len(args) == len(params):
            return
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            fail(args, kwargs, str(exc))

    return check


def _seconds(value: float | timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ConfigurationError(f"{what} must not be negative, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Queue:
    app: App
    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_limit: tuple[int, float] | None = None

    def __post_init__(self) -> None:
        if not QUEUE_NAME.match(self.name):
            raise ConfigurationError(
                f"queue name {self.name!r} is invalid: "
                "use 1-100 letters, digits, '_', '.', ':' or '-'"
            )
        for label, value in (("concurrency", self.concurrency),
                             ("worker_concurrency", self.worker_concurrency)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigurationError(
                    f"queue {self.name!r}: {label} must be a positive integer or None "
                    f"(no limit), got {value!r}"
                )
        if self.rate_limit is not None:
            count, period = self.rate_limit
            if not isinstance(count, int) or count < 1 or period <= 0:
                raise ConfigurationError(
                    f"queue {self.name!r}: rate_limit must be (starts, seconds) with both "
                    f"positive, got {self.rate_limit!r}"
                )

    def _shared(
        self,
        *,
        priority: int,
        delay: float | timedelta | None,
        max_attempts: int | None,
        timeout: float | timedelta | None,
        now: datetime,
    ) -> dict[str, Any]:
        """The column values every run of one enqueue call shares, validated once."""
        if max_attempts is not None and max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be >= 1, got {max_attempts}")
        timeout_s = _seconds(timeout, "timeout")
        if timeout_s == 0:
            raise ConfigurationError("timeout must be positive (or None for no timeout)")
        return {
            "queue": self.name,
            "priority": int(priority),
            "timeout_s": timeout_s,
            "not_before": now + timedelta(seconds=_seconds(delay, "delay") or 0),
        }

    def _spec(
        self, fn: Callable[..., Any] | str, max_attempts: int | None
    ) -> tuple[str, int, Checker]:
        """The registered name of ``fn``, the attempts its runs get, and its argument check."""
        spec = self.app.registry.workflow_for(fn)
        attempts = max_attempts or spec.max_attempts or self.app.settings.max_attempts
        return spec.name, attempts, argument_checker(spec.fn, spec.name)

    @traced_enqueue
    def enqueue(
        self,
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
        """Add a run of ``fn`` to this queue and return its handle.

        The same ``workflow_id`` twice yields one run; a ``dedup_key`` already waiting or
        running returns that run's handle (or raises DuplicateJob with
        ``on_duplicate="raise"``). With ``conn`` the row is written in the caller's open
        transaction, so it exists exactly when the caller's own writes commit.
        """
        params = self._enqueue_params(fn, args, kwargs, workflow_id=workflow_id,
                                      priority=priority, delay=delay, dedup_key=dedup_key,
                                      max_attempts=max_attempts, timeout=timeout)
        self.app.ensure_schema()
        if conn is not None:
            with self._connection(conn) as target:  # enqueue.sql notifies at its commit
                return self._insert(target, "enqueue", params, workflow_id, on_duplicate)[0]
        # Taken first: a process's first enqueue starts the waker, which connects while the
        # insert runs.
        waker = waker_for(self.app.db)
        with self._connection(None) as pooled:
            handle, inserted = self._insert(pooled, "enqueue_insert", params, workflow_id,
                                            on_duplicate)
            if inserted and not (waker.lead() and self._wake_now(pooled, params)):
                waker.wake(self.name, params["wake_at"])
        return handle

    def _wake_now(self, conn: Any, params: dict[str, Any]) -> bool:
        """Send this run's wake-up on ``conn`` (after its insert committed), in a transaction
        that writes nothing; False if that failed (the row is in: the waker sends it)."""
        try:
            conn.execute(self.app.db.sql("wake"),
                         {"channel": params["channel"], "payloads": [params["wake"]]})
        except Exception:
            return False
        return True

    def _enqueue_params(
        self,
        fn: Callable[..., Any] | str,
        args: tuple,
        kwargs: dict[str, Any],
        *,
        workflow_id: str | None = None,
        priority: int = 0,
        delay: float | timedelta | None = None,
        dedup_key: str | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
    ) -> dict[str, Any]:
        """The validated, encoded parameters of one run's insert (``enqueue.sql`` and
        ``enqueue_insert.sql``), for ``enqueue`` and ``enqueue_async`` alike: every check
        that can fail runs here, before any write. Raises ConfigurationError for bad input."""
        now = utcnow()
        shared = self._shared(priority=priority, delay=delay, max_attempts=max_attempts,
                              timeout=timeout, now=now)
        name, attempts, check = self._spec(fn, max_attempts)
        check(args, kwargs)
        _check_key(workflow_id, "workflow_id")
        _check_key(dedup_key, "dedup_key")
        not_before = shared["not_before"]
        return {**shared, "id": workflow_id or new_id(), "name": name,
                "max_attempts": attempts, "dedup_key": dedup_key,
                "inputs": encode_inputs(args, kwargs), "scheduled_at": None,
                "schedule_name": None, "parent_id": None, "forked_from": None, "now": now,
                "channel": self.app.db.channel,
                "wake": wake_payload(self.name, not_before, now),
                "wake_at": None if not_before <= now else not_before.timestamp(),
                "trace_context": traceparent()}

    def wake_after_commit(self, params: dict[str, Any]) -> None:
        """Wake the workers for a run inserted by ``enqueue_insert.sql`` (committed): the
        process's waker sends the NOTIFY from a write-free transaction (pgsched.wakeups).
        For enqueue paths other than ``enqueue`` (the async one)."""
        waker_for(self.app.db).wake(self.name, params["wake_at"])

    def _insert(
        self, conn: Any, statement: str, params: dict[str, Any], workflow_id: str | None,
        on_duplicate: str,
    ) -> tuple[Handle, bool]:
        """The run's handle, and whether this call inserted it (else an existing run with
        the same id or dedup key answers)."""
        cur = conn.cursor(row_factory=dict_row)
        return run_plan(self._insert_plan(statement, params, workflow_id, on_duplicate),
                        lambda name, values: cur.execute(self.app.db.sql(name),
                                                         values).fetchone())

    def _insert_plan(
        self, statement: str, params: dict[str, Any], workflow_id: str | None,
        on_duplicate: str,
    ) -> Plan:
        """Insert one run with ``statement`` (``enqueue``: in the caller's transaction, which
        notifies at its commit; ``enqueue_insert``: its own, the waker notifies after) and
        resolve a conflict, as a plan of statements (see ``Plan``): the sync and async
        enqueue run the same decisions, only the I/O differs. Returns the run's handle and
        whether this call inserted it."""
        inserted = yield statement, params
        if inserted is not None:
            return Handle(self.app.db, params["id"]), True
        if workflow_id is not None:
            existing = yield "get_run", {"id": workflow_id}
            if existing is not None and existing["name"] == params["name"]:
                return Handle(self.app.db, workflow_id), False
            if existing is not None:
                raise ConfigurationError(
                    f"workflow id {workflow_id!r} is already used by a run of "
                    f"{existing['name']!r}; choose another id"
                )
        found = yield "find_dedup", {"queue": self.name, "dedup_key": params["dedup_key"]}
        if found is None:
            raise DuplicateJob(
                f"the run could not be inserted and no conflicting run is visible "
                f"(queue {self.name!r}, dedup key {params['dedup_key']!r}); retry the enqueue"
            )
        if on_duplicate == "raise":
            raise DuplicateJob(
                f"queue {self.name!r} already has run {found['id']} with dedup key "
                f"{params['dedup_key']!r} waiting or running"
            )
        return Handle(self.app.db, found["id"]), False

    @contextmanager
    def _connection(self, conn: Any) -> Iterator[Any]:
        """The caller's connection (its transaction), else a pooled one in autocommit: an
        enqueue is one statement, its own transaction, and BEGIN and COMMIT would each cost a
        round trip. The dedup look-ups that may follow it only read."""
        if isinstance(conn, AsyncConnection):
            raise ConfigurationError("conn is a psycopg AsyncConnection: use await "
                                     "enqueue_async(...) / enqueue_many_async(...) with it")
        if conn is not None:
            yield conn
            return
        with self.app.db.connection(autocommit=True) as pooled:
            yield pooled

    @traced_enqueue
    def enqueue_many(
        self,
        items: Iterable[tuple[Callable[..., Any], tuple, dict]],
        *,
        priority: int = 0,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        conn: Any = None,
    ) -> list[Handle]:
        """Add many runs at once, atomically: all of them or, on any bad item, none.

        The ids are fresh and a batch sets no dedup keys, so nothing can conflict: the insert
        takes the plain path and its columns travel as binary arrays. A batch of up to
        ``BATCH_CHUNK`` items is one statement, atomic by itself: one round trip. A larger
        one goes out in chunks down one pipeline, so the server inserts one chunk while this
        process serializes the next, inside one transaction (a savepoint in the caller's),
        so that a bad item found after earlier chunks were sent still leaves nothing behind.
        """
        chunks = self._batches(items, priority=priority, delay=delay,
                               max_attempts=max_attempts, timeout=timeout)
        first = next(chunks, None)
        if first is None:
            return []
        statement = self.app.db.sql("enqueue_many")
        self.app.ensure_schema()
        with self._connection(conn) as target:
            second = next(chunks, None)
            if second is None:
                target.execute(statement, first)
                ids = first["ids"]
            else:
                ids = []
                with target.pipeline(), target.transaction():
                    for params in itertools.chain((first, second), chunks):
                        target.cursor().execute(statement, params)
                        ids.extend(params["ids"])
        return [Handle(self.app.db, workflow_id) for workflow_id in ids]

    async def enqueue_async(
        self,
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
        """``enqueue`` for asyncio code: ``conn`` is a psycopg ``AsyncConnection`` whose open
        transaction the run joins; without it the app's async pool is used (``pgsched.aio``).
        """
        from pgsched import aio

        return await aio.enqueue(self, fn, *args, workflow_id=workflow_id, priority=priority,
                                 delay=delay, dedup_key=dedup_key, max_attempts=max_attempts,
                                 timeout=timeout, conn=conn, on_duplicate=on_duplicate,
                                 **kwargs)

    async def enqueue_many_async(
        self,
        items: Iterable[tuple[Callable[..., Any], tuple, dict]],
        *,
        priority: int = 0,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        conn: Any = None,
    ) -> list[Handle]:
        """``enqueue_many`` for asyncio code (``conn``: a psycopg ``AsyncConnection``)."""
        from pgsched import aio

        return await aio.enqueue_many(self, items, priority=priority, delay=delay,
                                      max_attempts=max_attempts, timeout=timeout, conn=conn)

    def _batches(
        self,
        items: Iterable[tuple[Callable[..., Any], tuple, dict]],
        *,
        priority: int,
        delay: float | timedelta | None,
        max_attempts: int | None,
        timeout: float | timedelta | None,
    ) -> Iterator[dict[str, Any]]:
        """The parameters of ``enqueue_many.sql``'s statements, for ``enqueue_many`` and
        ``enqueue_many_async`` alike; the options are checked now, the items as they go."""
        now = utcnow()
        shared = self._shared(priority=priority, delay=delay, max_attempts=max_attempts,
                              timeout=timeout, now=now)
        return self._chunks(iter(items), shared, max_attempts, now)

    def _chunks(
        self,
        pending: Iterator[tuple[Callable[..., Any], tuple, dict]],
        shared: dict[str, Any],
        max_attempts: int | None,
        now: datetime,
    ) -> Iterator[dict[str, Any]]:
        """The parameters of ``enqueue_many``'s statements, ``BATCH_CHUNK`` rows each,
        validated and serialized one chunk at a time."""
        specs: dict[Any, tuple[str, int, Checker]] = {}
        while chunk := list(itertools.islice(pending, BATCH_CHUNK)):
            names: list[str] = []
            attempts: list[int] = []
            inputs: list[str] = []
            for fn, args, kwargs in chunk:
                key = fn if isinstance(fn, str) else id(fn)
                if key not in specs:
                    specs[key] = self._spec(fn, max_attempts)
                name, tries, check = specs[key]
                check(tuple(args), dict(kwargs))
                names.append(name)
                attempts.append(tries)
                inputs.append(encode_inputs(tuple(args), dict(kwargs)))
            count = len(names)
            yield {
                "ids": new_ids(count),
                "names": names,
                "priorities": [shared["priority"]] * count,
                "inputs": inputs,
                "max_attempts": attempts,
                "timeouts": [shared["timeout_s"]] * count,
                "not_befores": [shared["not_before"]] * count,
                "queue": self.name,
                "now": now,
                "channel": self.app.db.channel,
                "wake": wake_payload(self.name, shared["not_before"], now),
                "trace_context": traceparent(),
            }

