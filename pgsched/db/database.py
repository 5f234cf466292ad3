"""Connections to the one PostgreSQL that coordinates the fleet."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from pgsched.db.embedded import start_embedded
from pgsched.db.redact import error_reason, mask_url
from pgsched.db.sqlfiles import query
from pgsched.errors import ConfigurationError, DatabaseUnavailable


def check_connect(url: str, timeout: float = 5.0) -> None:
    """Fail fast with a readable message instead of a pool timeout 30 s later."""
    try:
        psycopg.connect(url, connect_timeout=max(1, int(timeout))).close()
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
    ) -> None:
        self._url = url
        self._data_dir = data_dir
        self.embedded = url is None
        self.schema = schema
        self.pool_size = pool_size
        self._pool: ConnectionPool | None = None
        # Two locks: opening the pool reads ``url``, which may start the embedded server;
        # one non-reentrant lock for both deadlocked every process but the worker.
        self._url_lock = threading.Lock()
        self._pool_lock = threading.Lock()

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

    def sql(self, name: str) -> str:
        return query(name, self.schema)

    def _open_pool(self) -> ConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                check_connect(self.url)
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.pool_size,
                    kwargs={"row_factory": dict_row},
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
            if not autocommit:
                yield conn
                return
            conn.autocommit = True
            try:
                yield conn
            finally:
                conn.autocommit = False

    def connect(self, *, autocommit: bool = False, url: str | None = None) -> psycopg.Connection:
        """A dedicated connection outside the pool (LISTEN, the claim loop, migrations)."""
        target = url or self.url
        check_connect(target)
        return psycopg.connect(target, autocommit=autocommit, row_factory=dict_row)

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
