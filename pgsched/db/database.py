"""Connections to the one PostgreSQL that coordinates the fleet."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from pgsched import clock
from pgsched.db.embedded import start_embedded
from pgsched.db.redact import error_reason, mask_url
from pgsched.db.sqlfiles import query
from pgsched.errors import ConfigurationError, DatabaseUnavailable

#: On every connection pgsched opens. TCP keepalives notice a half-open connection (a cut
#: network, a vanished host) in about 20 s instead of the kernel's two hours, and
#: ``tcp_user_timeout`` fails a send that gets no acknowledgement for 20 s, so a loop blocked
#: on a dead peer gets an error it can retry instead of hanging. Both are ignored on Unix
#: sockets.
CONNECT_OPTIONS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,
}


#: The claim loop's connection waits at most this long for any lock, then its round fails
#: (``LockNotAvailable``, transient: the loop reconnects and claims again). Its claims skip
#: locked rows, so only a stuck lock holder (an operator's open transaction on pgsched's
#: tables) could make it wait, and a worker that waits claims nothing.
CLAIM_LOCK_TIMEOUT_MS = 5_000


def check_connect(url: str, timeout: float = 5.0) -> None:
    """Fail fast with a readable message instead of a pool timeout 30 s later."""
    open_connection(url, timeout).close()


def open_connection(url: str, timeout: float = 5.0, **kwargs: Any) -> psycopg.Connection:
    """One connection attempt; a failure becomes a typed error with a readable message."""
    kwargs = {**CONNECT_OPTIONS, **kwargs}
    try:
        return psycopg.connect(url, connect_timeout=max(1, int(timeout)), **kwargs)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(
            f"the database URL {mask_url(url)!r} is not valid: "
            f"{error_reason(exc, url, malformed=True)}. "
            "Expected postgresql://user:password@host:5432/dbname"
        ) from None
    except psycopg.OperationalError as exc:
        reason = error_reason(exc, url)
        raise DatabaseUnavailable(
            f"cannot connect to {mask_url(url)}: {reason}. "
            "Check PGSCHED_DATABASE_URL and that the server is running"
        ) from None


def _with_option(url: str, option: str) -> str:
    """The URL's own ``options`` (a user's ``-c search_path=...``) followed by ``option``:
    a keyword argument to ``connect`` replaces the URL's value instead of adding to it."""
    try:
        existing = conninfo_to_dict(url).get("options")
    except psycopg.ProgrammingError:
        existing = None  # the connection attempt reports the malformed URL
    return f"{existing} {option}" if existing else option


class Database:
    """A lazily opened pool plus the schema every query runs in.

    Nothing connects at construction, so importing an app in a web process costs nothing
    until it first enqueues.
    """

    def __init__(
        self,
        url: str | None,
        schema: str,
        *,
        data_dir: str | None = None,
        pool_size: int = 10,
        pool_max_idle: float = 60.0,
        pooler: str = "none",
        application_name: str = "pgsched",
    ) -> None:
        self._url = url
        self._data_dir = data_dir
        self.embedded = url is None
        self.schema = schema
        #: A worker raises this to fit its concurrency before the pool opens.
        self.pool_size = pool_size
        self.pool_max_idle = pool_max_idle
        #: "transaction" behind PgBouncer in transaction mode (PGSCHED_POOLER).
        self.pooler = pooler
        #: Shown in pg_stat_activity; a worker sets its id here before the pool opens.
        self.application_name = application_name
        self._pool: ConnectionPool | None = None
        # Two locks: opening the pool reads ``url``, which may start the embedded server;
        # one non-reentrant lock for both deadlocked every process but the worker.
        self._url_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        #: Called by ``close`` before the pool closes: users of the pool flush what they hold
        #: (pgsched.wakeups sends its pending NOTIFYs).
        self.before_close: list[Callable[[], None]] = []

    @property
    def url(self) -> str:
        if self._url is None:
            with self._url_lock:
                if self._url is None:
                    self._url = start_embedded(self._data_dir)
        return self._url

    @property
    def channel(self) -> str:
        """The NOTIFY channel for this schema: an enqueue wakes idle workers of this schema."""
        return f"pgsched_{self.schema}"

    @property
    def prepare_threshold(self) -> int | None:
        """psycopg's default (prepare a statement on its 5th run), or never behind a
        transaction pooler: PgBouncer before 1.21 hands each transaction any server
        connection, where a statement prepared on another one does not exist (or one of
        the same name already does)."""
        return None if self.pooler == "transaction" else 5

    def session_options(self) -> dict[str, Any]:
        """Keyword arguments for every connection this process opens to the database."""
        # fallback_: an application_name in the URL (or PGAPPNAME) wins.
        return {**CONNECT_OPTIONS, "fallback_application_name": self.application_name,
                "prepare_threshold": self.prepare_threshold}

    def sql(self, name: str) -> str:
        return query(name, self.schema)

    def _open_pool(self) -> ConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                check_connect(self.url)
                # Connections above min_size close after pool_max_idle seconds unused, so a
                # worker that was busy gives its connections back when it goes idle.
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.pool_size,
                    max_idle=self.pool_max_idle,
                    kwargs={"row_factory": dict_row, "connect_timeout": 5,
                            **self.session_options()},
                    open=True,
                    name="pgsched",
                )
            return self._pool

    @contextmanager
    def connection(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """A pooled connection: one transaction committed on clean exit, or with
        ``autocommit`` each statement on its own (no BEGIN/COMMIT round trips)."""
        pool = self._pool or self._open_pool()
        with pool.connection() as conn:
            if clock.stale():
                # Delays this process computes are compared with the workers' times, and a
                # process that only enqueues has no heartbeat to keep its offset fresh.
                # Autocommit: one statement, no BEGIN/ROLLBACK around it.
                conn.autocommit = True
                clock.measure(conn)
                conn.autocommit = False
            if not autocommit:
                yield conn
                return
            conn.autocommit = True
            try:
                yield conn
            finally:
                conn.autocommit = False

    def connect(
        self, *, autocommit: bool = False, url: str | None = None, connect_timeout: float = 5.0,
        claiming: bool = False,
    ) -> psycopg.Connection:
        """A dedicated connection outside the pool (LISTEN, the claim loop, the heartbeat,
        migrations). ``claiming``, for the claim loop: each statement prepared on its first
        run (the connection runs the same few statements for its life) and a
        ``lock_timeout``; neither behind a transaction pooler, which refuses the ``options``
        startup parameter and lends prepared statements to other clients."""
        options = self.session_options()
        if claiming and self.pooler != "transaction":
            options["prepare_threshold"] = 0
            options["options"] = _with_option(url or self.url,
                                              f"-c lock_timeout={CLAIM_LOCK_TIMEOUT_MS}")
        return open_connection(url or self.url, connect_timeout, autocommit=autocommit,
                               row_factory=dict_row, **options)

    def close(self) -> None:
        for flush in list(self.before_close):
            flush()
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
