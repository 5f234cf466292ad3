"""The worker's health and metrics endpoints, for Kubernetes probes and Prometheus.

``/healthz`` (liveness) answers whether restarting this process could help: it fails when a
background loop or the dispatcher stopped completing rounds. A loop that is stuck only
because the database is unreachable does not fail it, since a restart cannot bring the
database back and would kill runs that do not need it; ``/readyz`` reports the database
instead. ``/metrics`` serves the worker's own registry, with queue gauges read from the
database at most once every few seconds however often Prometheus scrapes.

Every database check uses a short-lived connection of its own with a connect and a statement
timeout, never the worker's pool: a probe must answer within the kubelet's timeout even when
every pooled connection is busy running jobs.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import psycopg
from loguru import logger
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg.rows import dict_row

from pgsched.clock import utcnow
from pgsched.db import mask_url
from pgsched.db.migrations import current_version, latest_version
from pgsched.errors import ConfigurationError
from pgsched.worker.pruner import INTERVAL_S as PRUNE_INTERVAL_S

if TYPE_CHECKING:
    from pgsched.settings import Settings
    from pgsched.worker.process import Worker

CONNECT_TIMEOUT_S = 2  # libpq's smallest effective connect timeout
STATEMENT_TIMEOUT_MS = 2000
GAUGE_REFRESH_S = 5.0
# A loop this module does not know may sleep as long as the pruner does.
OTHER_LOOP_LIMIT_S = 3 * 1.2 * PRUNE_INTERVAL_S

_log = logger.bind(component="health")


def loop_limits(settings: Settings) -> dict[str, float]:
    """Seconds each loop may go without completing a round before it counts as stuck.

    Each limit allows about three of the loop's own waits (see ``loops.py``), so one slow
    round or a pause in the interpreter is not mistaken for a hang.
    """
    return {
        # Past the takeover timeout the fleet declares this worker dead anyway.
        "heartbeat": max(3 * settings.heartbeat_interval, settings.takeover_timeout),
        "takeover": 3 * 1.2 * max(1.0, settings.takeover_timeout / 4),
        # CronLoop sleeps at most 60 s between passes, whatever the schedules say.
        "cron": 3 * 60.0,
        # The pruner rounds are a jittered hour apart.
        "prune": 3 * 1.2 * PRUNE_INTERVAL_S,
        # The dispatcher wakes at least every poll interval, even with nothing to do.
        "dispatch": max(30.0, 10 * settings.poll_interval),
    }


@dataclass
class LoopHealth:
    name: str
    since_success: float
    limit: float
    alive: bool
    failures: int

    @property
    def stale(self) -> bool:
        return not self.alive or self.since_success > self.limit

    def as_json(self) -> dict[str, Any]:
        return {
            "seconds_since_success": round(self.since_success, 3),
            "limit_seconds": self.limit,
            "alive": self.alive,
            "failures": self.failures,
        }


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return mask_url(text.splitlines()[0]) if text else type(exc).__name__


class HealthChecks:
    """What the endpoints answer, apart from HTTP."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.db = worker.app.db
        self.limits = loop_limits(worker.app.settings)
        self._refresh_lock = threading.Lock()
        self._next_refresh = 0.0

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(
            self.db.url, connect_timeout=CONNECT_TIMEOUT_S, row_factory=dict_row,
            application_name="pgsched-health",
        )
        try:
            conn.execute(self.db.sql("health_statement_timeout"),
                         {"ms": str(STATEMENT_TIMEOUT_MS)})
        except BaseException:
            conn.close()
            raise
        return conn

    def loops(self) -> list[LoopHealth]:
        now = time.monotonic()
        found = [
            LoopHealth(
                thread.loop.name,
                now - thread.last_success,
                self.limits.get(thread.loop.name, OTHER_LOOP_LIMIT_S),
                thread.is_alive(),
                thread.failures,
            )
            for thread in self.worker.loops
        ]
        dispatcher = self.worker.dispatcher
        if dispatcher is not None:
            found.append(LoopHealth("dispatch", now - dispatcher.last_round,
                                    self.limits["dispatch"], True, 0))
        return found

    def database_problem(self) -> str | None:
        """Why the database cannot be reached, or None when it can."""
        try:
            self._connect().close()
        except psycopg.Error as exc:
            return _reason(exc)
        return None

    def liveness(self) -> tuple[int, dict[str, Any]]:
        if self.worker.stopping.is_set():
            return 200, {"status": "stopping"}
        loops = self.loops()
        stale = [loop.name for loop in loops if loop.stale]
        body: dict[str, Any] = {"loops": {loop.name: loop.as_json() for loop in loops}}
        if not stale:
            return 200, {"status": "ok", **body}
        body["stale"] = stale
        if all(loop.alive for loop in loops):
            problem = self.database_problem()
            if problem is not None:
                return 200, {"status": "waiting for database", "database": problem, **body}
        _log.warning("liveness failing: stale {}", ", ".join(stale))
        return 503, {"status": "stale", **body}

    def readiness(self) -> tuple[int, dict[str, Any]]:
        if self.worker.stopping.is_set():
            return 503, {"status": "stopping", "reason": "the worker is shutting down"}
        try:
            with self._connect() as conn:
                version = current_version(conn, self.db.schema)
        except psycopg.Error as exc:
            return 503, {"status": "database unavailable",
                         "reason": f"{_reason(exc)}; check PGSCHED_DATABASE_URL and the server"}
        expected = latest_version()
        if version != expected:
            return 503, {
                "status": "schema mismatch",
                "reason": f"schema {self.db.schema!r} is at version {version}, this pgsched "
                          f"expects {expected}; run `pgsched migrate` or deploy the matching "
                          "pgsched version",
                "schema_version": version,
                "expected_version": expected,
            }
        return 200, {"status": "ready", "schema_version": version}

    def metrics(self) -> bytes:
        self._refresh()
        return generate_latest(self.worker.metrics.registry)

    def _refresh(self) -> None:
        """Process-local gauges on every scrape; database gauges at most every few seconds,
        so a fleet of workers scraped often does not turn monitoring into load."""
        metrics = self.worker.metrics
        for loop in self.loops():
            metrics.loop_age.labels(loop.name).set(loop.since_success)
            if loop.name == "heartbeat":
                metrics.heartbeat_age.set(loop.since_success)
        metrics.concurrency.set(self.worker.concurrency)
        if self.worker.dispatcher is not None:
            metrics.running.set(len(self.worker.dispatcher.running))
        if not self._refresh_lock.acquire(blocking=False):
            return  # another scrape is reading the database right now
        try:
            if time.monotonic() < self._next_refresh:
                return
            self._next_refresh = time.monotonic() + GAUGE_REFRESH_S
            with self._connect() as conn:
                rows = conn.execute(
                    self.db.sql("health_queue_gauges"),
                    {"queues": [q.name for q in self.worker.queues], "now": utcnow()},
                ).fetchall()
            for row in rows:
                metrics.queue_depth.labels(row["queue"]).set(row["waiting"])
                metrics.queue_delayed.labels(row["queue"]).set(row["delayed"])
                metrics.queue_oldest.labels(row["queue"]).set(row["oldest_s"])
        except psycopg.Error as exc:
            metrics.gauge_errors.inc()
            _log.warning("cannot read queue gauges: {}", _reason(exc))
        finally:
            self._refresh_lock.release()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that stalls mid-request must not hold a thread forever

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        path = self.path.split("?", 1)[0]
        checks = self.server.checks
        try:
            if path == "/healthz":
                self._json(*checks.liveness())
            elif path == "/readyz":
                self._json(*checks.readiness())
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, checks.metrics())
            else:
                self._json(404, {"status": "not found",
                                 "reason": f"no {path}; try /healthz, /readyz or /metrics"})
        except Exception as exc:
            _log.exception("{} failed", path)
            self._json(500, {"status": "error", "reason": _reason(exc)})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(body, sort_keys=True).encode())

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        _log.debug("{} {}", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], checks: HealthChecks) -> None:
        self.checks = checks
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        _log.opt(exception=True).debug("health request from {} failed", client_address)


class HealthServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``host:port``, on a daemon thread.

    The socket is bound in the constructor, so a taken port fails the worker at startup with
    a clear error, and ``port`` is the real one when 0 asked for any free port.
    """

    def __init__(self, worker: Worker, port: int, *, host: str = "0.0.0.0") -> None:
        self.checks = HealthChecks(worker)
        try:
            self._server = _Server((host, port), self.checks)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve health checks on {host}:{port}: {exc.strerror or exc}; "
                "choose a free port with --health-port or PGSCHED_HEALTH_PORT"
            ) from None
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
            name="pgsched-health", daemon=True,
        )

    def start(self) -> HealthServer:
        self._thread.start()
        _log.info("health and metrics on http://{}:{} (/healthz, /readyz, /metrics)",
                  self.host, self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
