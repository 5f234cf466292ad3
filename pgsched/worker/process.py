"""The worker process: the only place that owns threads and signals.

Startup: migrate, declare queues, register in ``workers``, start the loops, the listener and
the dispatcher. A database that cannot be reached at start is waited for, with a capped
backoff, instead of exiting (a supervisor would only restart the worker into the same
wait); ``startup_problem`` says why for ``/readyz``. SIGTERM/SIGINT: stop claiming, let
running work finish for the grace period, hand back what is still running, deregister,
exit. A second signal skips the grace period.

Connections: a worker holds at most ``max(PGSCHED_POOL_SIZE, concurrency + 4)`` pooled ones
(one per running job's step or transaction, plus the loops; the pool shrinks back to one
after ``PGSCHED_POOL_MAX_IDLE`` seconds unused) and ``dedicated_connections()`` of its own:
the claim loop and the heartbeat, LISTEN unless it polls, the health check when it serves
one. It publishes both numbers with its registration, so ``pgsched workers`` can show the
fleet's footprint.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg
from loguru import logger
from psycopg.types.json import Jsonb

from pgsched import __version__, clock, tracing
from pgsched.claims import declare_queues, declared_limits, reconcile_queues
from pgsched.clock import utcnow
from pgsched.db.fleet_settings import publish as publish_settings
from pgsched.db.fleet_settings import publish_connections
from pgsched.errors import ConfigurationError, DatabaseUnavailable
from pgsched.logs import configure_logging
from pgsched.scheduler import Scheduler
from pgsched.worker.dispatcher import Dispatcher
from pgsched.worker.lease import Lease
from pgsched.worker.listener import Listener
from pgsched.worker.loops import Alarm, CronLoop, Heartbeat, Loop, LoopThread, Takeover
from pgsched.worker.metrics import WorkerMetrics

if TYPE_CHECKING:
    from pgsched.app import App
    from pgsched.queues import Queue

#: Pool connections a worker needs beside its jobs': the takeover, alarm, cron and prune loops.
POOL_LOOPS = 4
#: The longest wait between two tries to reach the database at start.
MAX_START_BACKOFF = 10.0


class Worker:
    def __init__(
        self,
        app: App,
        *,
        queues: list[str] | None = None,
        concurrency: int | None = None,
        health_port: int | None = None,
        configure_logs: bool = True,
    ) -> None:
        self.app = app
        settings = app.settings
        self.concurrency = concurrency or settings.concurrency
        if self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {self.concurrency}")
        names = queues or sorted(app.queues)
        self.queues: list[Queue] = [app.get_queue(name) for name in names]
        self.health_port = health_port if health_port is not None else settings.health_port
        # Every running job may hold a pooled connection (a transaction step), and the
        # takeover, cron and prune loops take one each: a smaller pool would make jobs
        # wait on each other.
        app.db.pool_size = max(app.db.pool_size, self.concurrency + POOL_LOOPS)
        self.lease = Lease(settings.takeover_timeout)
        #: Why the worker cannot start serving (None unless it waits for the database), for
        #: the health endpoints.
        self.startup_problem: str | None = None
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        # pg_stat_activity names the worker behind each of its connections.
        app.db.application_name = self.id
        self.stopping = threading.Event()
        self.halt = threading.Event()
        self.metrics = WorkerMetrics()
        self.loops: list[LoopThread] = []
        self.dispatcher: Dispatcher | None = None
        self.listener: Listener | None = None
        self.heartbeat: Heartbeat | None = None
        if configure_logs:
            configure_logging(settings.log_level, settings.log_json)
        tracing.configure(settings.otel_export, service_name=app.name)
        self.log = logger.bind(component="worker")

    def _register(self, conn: psycopg.Connection | None = None) -> None:
        """Insert this worker's row (again, if it was declared dead), renewing its lease."""
        if conn is None:
            with self.app.db.connection() as own:
                self._register(own)
            return
        sent = time.monotonic()
        conn.execute(
            self.app.db.sql("worker_register"),
            {
                "id": self.id,
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "app": self.app.name,
                "queues": [q.name for q in self.queues],
                "workflows": sorted(self.app.registry.workflows),
                "concurrency": self.concurrency,
                "queue_limits": Jsonb(declared_limits(self.queues)),
                "version": __version__,
                "app_version": self.app.version,
            },
        )
        publish_connections(conn, self.app.db, self.id, pool=self.app.db.pool_size,
                            dedicated=self.dedicated_connections())
        self.lease.renewed(sent)

    def _install_signals(self) -> None:
        def on_signal(signum: int, _frame: object) -> None:
            if self.stopping.is_set():
                self.log.warning("second signal: handing back running work now")
                self.halt.set()
                if self.dispatcher is not None:
                    self.dispatcher.wake.set()
                return
            self.log.info("{} received: stopping", signal.Signals(signum).name)
            self.stopping.set()
            if self.dispatcher is not None:
                self.dispatcher.wake.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)

    def start(self) -> None:
        """Everything but the dispatch loop, which ``run`` drives on the calling thread."""
        settings = self.app.settings
        health = None
        if self.health_port is not None:
            from pgsched.worker.health import HealthServer

            health = HealthServer(self, self.health_port)  # binds now: a taken port fails early
            health.start()  # before connecting: /readyz tells why a worker waits at start
        self.log.info("connecting to {}", "embedded PostgreSQL" if self.app.db.embedded
                      else "PostgreSQL")
        self._until_connected(self._join)
        alarm = Alarm(self.app, settings.poll_interval)
        self.dispatcher = Dispatcher(self.app, self.id, self.queues, self.concurrency,
                                     self.metrics, self.lease, on_park=alarm.expect)
        self.heartbeat = Heartbeat(self.app, self.id, self._register,
                                   settings.heartbeat_interval, self.lease)
        takeover = Takeover(self.app, self.id, settings.takeover_timeout, self.metrics)
        loops: list[Loop] = [self.heartbeat, takeover, alarm]
        if self.app.schedules:
            scheduler = Scheduler(self.app)
            self._until_connected(lambda: scheduler.register(utcnow()))
            loops.append(CronLoop(scheduler, self.metrics))
        if settings.prune_older_than:
            from pgsched.worker.pruner import Pruner

            loops.append(Pruner(self.app, settings.prune_older_than))
        loops.extend([health.readiness] if health is not None else [])  # /readyz, from memory
        threads = [LoopThread(loop, self.halt, alarm.wakeup if loop is alarm else None)
                   for loop in loops]
        for thread in threads:
            thread.start()
        self.loops = threads  # all at once: the health server never sees half of them
        if settings.listen and not self._listens():
            # LISTEN through a transaction pooler registers on whichever server connection
            # the pooler lent for that one statement: notifications would go nowhere.
            self.log.info("PGSCHED_POOLER=transaction without PGSCHED_LISTEN_DATABASE_URL: "
                          "polling every {} s instead of LISTEN", settings.poll_interval)
        elif settings.listen:
            self.listener = Listener(self.app.db, self.app.db.channel, self.dispatcher.notify,
                                     self.halt, url=settings.listen_database_url)
            self.listener.start()
        self.log.info(
            "worker {} serving queues {} with concurrency {}{}",
            self.id, ",".join(q.name for q in self.queues), self.concurrency,
            f", {len(self.app.schedules)} schedule(s)" if self.app.schedules else "",
        )

    def _listens(self) -> bool:
        """Whether this worker holds a LISTEN connection (else it polls)."""
        settings = self.app.settings
        return settings.listen and not (settings.pooler == "transaction"
                                        and not settings.listen_database_url)

    def dedicated_connections(self) -> int:
        """Connections this worker opens outside its pool: the claim loop's and the
        heartbeat's, LISTEN's unless it polls, and the health check's when it serves one."""
        return 2 + int(self._listens()) + int(self.health_port is not None)

    def _join(self) -> None:
        """Migrate, then in one transaction declare the queues, register, and settle each
        queue on the strictest declaration of the live workers (this one included)."""
        self.app.migrate()
        with self.app.db.connection() as conn:
            clock.measure(conn)  # before anything compares times
            declare_queues(conn, self.app.db, self.queues, utcnow())
            self._register(conn)
            reconcile_queues(conn, self.app.db, utcnow())
        publish_settings(self.app.db, self.app.settings)  # the SQL views follow the timeout

    def _until_connected(self, action: Callable[[], None]) -> None:
        """Run ``action`` until the database lets it through; a signal ends the wait."""
        failures = 0
        while True:
            try:
                action()
                self.startup_problem = None
                return
            except (DatabaseUnavailable, psycopg.OperationalError) as exc:
                failures += 1
                self.startup_problem = f"waiting for the database: {exc}"
                delay = min(MAX_START_BACKOFF, 0.5 * 2 ** min(failures, 6))
                if failures == 1 or failures % 10 == 0:
                    self.log.warning("cannot reach the database ({}); retrying in {:.1f}s "
                                     "(try {})", exc, delay, failures + 1)
                if self.stopping.wait(delay):
                    raise SystemExit(0) from None

    def run(self) -> None:
        self._install_signals()
        self.start()
        assert self.dispatcher is not None
        grace = self.app.settings.shutdown_grace
        unfinished = self.dispatcher.run(self.stopping, self.halt, grace)
        self.stop(unfinished)

    def stop(self, unfinished: list[str]) -> None:
        assert self.dispatcher is not None
        if self.heartbeat is not None:
            self.heartbeat.stopping = True
        try:
            returned = self.dispatcher.handback(unfinished)
            if returned:
                self.log.warning("handed back {} unfinished run(s) for other workers", returned)
            self.halt.set()
            with self.app.db.connection() as conn:
                conn.execute(self.app.db.sql("worker_remove"), {"id": self.id})
                reconcile_queues(conn, self.app.db, utcnow())
        except (DatabaseUnavailable, psycopg.OperationalError) as exc:
            self.halt.set()
            self.log.warning("could not deregister ({}); live workers take over its runs "
                             "after PGSCHED_TAKEOVER_TIMEOUT", exc)
        if self.heartbeat is not None:
            self.heartbeat.close()
        self.app.close()
        self.log.info("worker {} stopped", self.id)
