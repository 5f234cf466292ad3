"""The worker's health and metrics endpoints, for Kubernetes probes and Prometheus.

``/healthz`` (liveness) answers whether restarting this process could help. It fails when a
background loop's thread died or stopped completing rounds, when the LISTEN thread died, when
the dispatcher stopped completing claim rounds, or when every slot of this worker is held by
runs that were timed out or cancelled but whose threads never returned. A loop that is stale
only because the database is unreachable does not fail it, since a restart cannot bring the
database back and would kill runs that do not need it; nor does one in the first
``RECOVERY_GRACE_S`` after the database came back, while it sleeps off its error backoff.

``/readyz`` and ``/metrics`` are served from memory: the ``Readiness`` loop checks the
database on its own connection once per interval (see ``readiness.py``). No request opens a
database connection, so unauthenticated probes cannot load the database.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from loguru import logger
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pgsched.db.redact import error_reason
from pgsched.errors import ConfigurationError
from pgsched.worker.dispatcher import IDLE_POLL_FACTOR
from pgsched.worker.pruner import INTERVAL_S as PRUNE_INTERVAL_S
from pgsched.worker.readiness import INTERVAL_S as READINESS_INTERVAL_S
from pgsched.worker.readiness import Readiness

if TYPE_CHECKING:
    from pgsched.settings import Settings
    from pgsched.worker.process import Worker

# A loop this module does not know may sleep as long as the pruner does.
OTHER_LOOP_LIMIT_S = 3 * 1.2 * PRUNE_INTERVAL_S
#: A loop that failed waits at most this long before its next try (``LoopThread``), and the
#: listener as long before it reconnects: so long after the database came back, a stale loop
#: is still given the benefit of the doubt.
MAX_BACKOFF_S = 30.0
RECOVERY_GRACE_S = MAX_BACKOFF_S + 5.0
#: A run still held this long past its deadline counts as abandoned too.
DEADLINE_SLACK_S = 30.0

_log = logger.bind(component="health")


def loop_limits(
    settings: Settings, readiness_interval: float = READINESS_INTERVAL_S
) -> dict[str, float]:
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
        # A check takes at most the connect and statement timeouts (2 s each).
        "readiness": 3 * readiness_interval + 4.0,
        # An idle dispatcher still completes a round every 10 poll intervals (+20% jitter).
        "dispatch": max(30.0, 3 * 1.2 * IDLE_POLL_FACTOR * settings.poll_interval),
        # An idle alarm probes every 10 poll intervals too (+10% jitter).
        "alarm": max(30.0, 3 * 1.1 * IDLE_POLL_FACTOR * settings.poll_interval),
    }


@dataclass
class LoopHealth:
    name: str
    since_success: float
    limit: float | None  # None: judged by its thread being alive only
    alive: bool
    failures: int

    @property
    def stale(self) -> bool:
        return not self.alive or (self.limit is not None and self.since_success > self.limit)

    def as_json(self) -> dict[str, Any]:
        return {
            "seconds_since_success": round(self.since_success, 3),
            "limit_seconds": self.limit,
            "alive": self.alive,
            "failures": self.failures,
        }


class HealthChecks:
    """What the endpoints answer, apart from HTTP. Nothing here touches the database."""

    def __init__(self, worker: Worker, readiness: Readiness) -> None:
        self.worker = worker
        self.readiness = readiness
        self.limits = loop_limits(worker.app.settings, readiness.interval)

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
        listener = self.worker.listener
        if listener is not None:
            # Disconnected means the database (or its direct LISTEN URL) is away, which a
            # restart cannot fix; the worker polls meanwhile. Only a dead thread is stale.
            down = self.readiness.listener_down_since
            found.append(LoopHealth("listen", 0.0 if down is None else now - down,
                                    None, listener.is_alive(), 0))
        return found

    def abandoned(self) -> tuple[int, int]:
        """How many runs hold a slot after being timed out or cancelled, of how many slots."""
        dispatcher = self.worker.dispatcher
        if dispatcher is None:
            return 0, self.worker.concurrency
        now = time.monotonic()
        held = sum(
            1 for run in list(dispatcher.running.values())
            if getattr(run, "abandoned", False)
            or (run.deadline is not None and now > run.deadline + DEADLINE_SLACK_S)
        )
        return held, self.worker.concurrency

    def liveness(self) -> tuple[int, dict[str, Any]]:
        if self.worker.stopping.is_set():
            return 200, {"status": "stopping"}
        if self.worker.startup_problem is not None:
            # Waiting for the database at start: a restart would only wait again.
            return 200, {"status": "starting", "reason": self.worker.startup_problem}
        loops = self.loops()
        stale = [loop.name for loop in loops if loop.stale]
        body: dict[str, Any] = {"loops": {loop.name: loop.as_json() for loop in loops}}
        held, slots = self.abandoned()
        body["abandoned_runs"] = held
        if held >= slots:
            stale.append("capacity")
            body["reason"] = (f"all {slots} slot(s) are held by runs that were timed out or "
                              "cancelled but never returned; restarting frees them")
        if not stale:
            return 200, {"status": "ok", **body}
        body["stale"] = stale
        if held < slots and all(loop.alive for loop in loops):
            snapshot = self.readiness.snapshot
            if snapshot.database_problem is not None:
                return 200, {"status": "waiting for database",
                             "database": snapshot.database_problem, **body}
            back = snapshot.recovered_at
            if back is not None and time.monotonic() - back < RECOVERY_GRACE_S:
                return 200, {"status": "recovering", **body}
        _log.warning("liveness failing: stale {}", ", ".join(stale))
        return 503, {"status": "stale", **body}

    def readiness_answer(self) -> tuple[int, dict[str, Any]]:
        if self.worker.stopping.is_set():
            return 503, {"status": "stopping", "reason": "the worker is shutting down"}
        if self.worker.startup_problem is not None:
            return 503, {"status": "starting", "reason": self.worker.startup_problem}
        snapshot = self.readiness.snapshot
        age = time.monotonic() - snapshot.checked_at
        limit = self.limits["readiness"]
        if age > limit:
            return 503, {"status": "unknown",
                         "reason": f"the last database check was {age:.0f}s ago (limit "
                                   f"{limit:.0f}s); the readiness loop is stuck"}
        return snapshot.status, {**snapshot.body, "checked_seconds_ago": round(age, 3)}

    def metrics(self) -> bytes:
        self._refresh()
        return generate_latest(self.worker.metrics.registry)

    def _refresh(self) -> None:
        """Process-local gauges on every scrape; the queue gauges from the last readiness
        round, which reads them again only because a scrape asked."""
        metrics = self.worker.metrics
        for loop in self.loops():
            metrics.loop_age.labels(loop.name).set(loop.since_success)
            if loop.name == "heartbeat":
                metrics.heartbeat_age.set(loop.since_success)
        metrics.concurrency.set(self.worker.concurrency)
        if self.worker.dispatcher is not None:
            metrics.running.set(len(self.worker.dispatcher.running))
        self.readiness.gauges_wanted.set()
        snapshot = self.readiness.snapshot
        if snapshot.database_problem is not None:
            metrics.gauge_errors.inc()
        for row in snapshot.gauges:
            metrics.queue_depth.labels(row["queue"]).set(row["waiting"])
            metrics.queue_delayed.labels(row["queue"]).set(row["delayed"])
            metrics.queue_oldest.labels(row["queue"]).set(row["oldest_s"])


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
                self._json(*checks.readiness_answer())
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, checks.metrics())
            else:
                self._json(404, {"status": "not found",
                                 "reason": f"no {path}; try /healthz, /readyz or /metrics"})
        except Exception as exc:
            _log.exception("{} failed", path)
            self._json(500, {"status": "error", "reason": error_reason(exc)})

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
    a clear error, and ``port`` is the real one when 0 asked for any free port. ``host``
    defaults to ``PGSCHED_HEALTH_HOST`` (127.0.0.1; the chart and the image set 0.0.0.0).
    ``readiness`` is the loop the worker must run for ``/readyz`` to become ready.
    """

    def __init__(self, worker: Worker, port: int, *, host: str | None = None) -> None:
        host = host or worker.app.settings.health_host
        self.readiness = Readiness(worker)
        self.checks = HealthChecks(worker, self.readiness)
        try:
            self._server = _Server((host, port), self.checks)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve health checks on {host}:{port}: {exc.strerror or exc}; "
                "choose a free port with --health-port or PGSCHED_HEALTH_PORT, and an address "
                "of this host with --health-host or PGSCHED_HEALTH_HOST"
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
