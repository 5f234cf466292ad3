"""The worker's own view of the database, for the health server to serve from memory.

Probes are unauthenticated and may come from anywhere the health port is reachable: if each
``/readyz`` opened a connection, sixty concurrent clients opened thirty. Instead this loop
checks the database once per ``INTERVAL_S`` on one connection that it keeps, and reads the
queue gauges for ``/metrics`` in the same round when a scrape asked for them since the last
one. No HTTP request can make the worker open a connection.

It also records, for liveness, when the database came back after an outage and since when the
LISTEN connection has been down, so a loop still sleeping off its error backoff right after
an outage is not mistaken for a stuck one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from pgsched.clock import utcnow
from pgsched.db.migrations import current_version, latest_version
from pgsched.db.redact import error_reason

if TYPE_CHECKING:
    from pgsched.worker.process import Worker

INTERVAL_S = 2.0
CONNECT_TIMEOUT_S = 2  # libpq's smallest effective connect timeout
STATEMENT_TIMEOUT_MS = 2000
#: TCP settings that turn a silently dead connection (a network cut) into an error within
#: seconds instead of the kernel's retransmission timeout of many minutes.
_TCP = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
        "keepalives_count": 2, "tcp_user_timeout": 5000}


@dataclass
class Snapshot:
    """What the last round found; replaced whole, so readers never see half an update."""

    status: int
    body: dict[str, Any]
    database_problem: str | None
    checked_at: float  # time.monotonic()
    #: When the database came back after being unreachable (monotonic); None if it never
    #: went away since the worker started.
    recovered_at: float | None
    gauges: list[dict[str, Any]] = field(default_factory=list)


class Readiness:
    """A Loop (see ``loops.py``): one database check per interval, kept in ``snapshot``."""

    name = "readiness"

    def __init__(self, worker: Worker, interval: float = INTERVAL_S) -> None:
        self.worker = worker
        self.db = worker.app.db
        self.interval = interval
        self.max_backoff = interval
        self.gauges_wanted = threading.Event()
        self.listener_down_since: float | None = None
        self._conn: psycopg.Connection | None = None
        self.snapshot = Snapshot(503, {"status": "starting",
                                       "reason": "the first database check has not run yet"},
                                 None, time.monotonic(), None)

    def run_once(self) -> float:
        now = time.monotonic()
        self._watch_listener(now)
        previous = self.snapshot
        try:
            conn = self._connection()
            with conn.transaction():  # the statement timeout is transaction-scoped
                conn.execute(self.db.sql("health_statement_timeout"),
                             {"ms": str(STATEMENT_TIMEOUT_MS)})
                version = current_version(conn, self.db.schema)
                wanted = self.gauges_wanted.is_set()
                gauges = self._gauges(conn) if wanted else previous.gauges
        except psycopg.Error as exc:
            self._close()
            problem = error_reason(exc, self.db.url)
            self.snapshot = Snapshot(
                503, {"status": "database unavailable",
                      "reason": f"{problem}; check PGSCHED_DATABASE_URL and the server"},
                problem, time.monotonic(), previous.recovered_at, previous.gauges)
            return self.interval
        recovered = now if previous.database_problem is not None else previous.recovered_at
        expected = latest_version()
        if version != expected:
            status, body = 503, {
                "status": "schema mismatch",
                "reason": f"schema {self.db.schema!r} is at version {version}, this pgsched "
                          f"expects {expected}; run `pgsched migrate` or deploy the matching "
                          "pgsched version",
                "schema_version": version,
                "expected_version": expected,
            }
        else:
            status, body = 200, {"status": "ready", "schema_version": version}
        self.snapshot = Snapshot(status, body, None, time.monotonic(), recovered, gauges)
        return self.interval

    def _watch_listener(self, now: float) -> None:
        listener = self.worker.listener
        if listener is None or listener.connected.is_set():
            self.listener_down_since = None
        elif self.listener_down_since is None:
            self.listener_down_since = now

    def _gauges(self, conn: psycopg.Connection) -> list[dict[str, Any]]:
        self.gauges_wanted.clear()
        return conn.execute(
            self.db.sql("health_queue_gauges"),
            {"queues": [q.name for q in self.worker.queues], "now": utcnow()},
        ).fetchall()

    def _connection(self) -> psycopg.Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._conn = psycopg.connect(
            self.db.url, connect_timeout=CONNECT_TIMEOUT_S, row_factory=dict_row,
            autocommit=True, application_name="pgsched-health", **_TCP,
            prepare_threshold=self.db.prepare_threshold,
        )
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
