"""The worker process: the only place that owns threads and signals.

Startup: migrate, declare queues, register in ``workers``, start the loops, the listener and
the dispatcher. SIGTERM/SIGINT: stop claiming, let running work finish for the grace period,
hand back what is still running, deregister, exit. A second signal skips the grace period.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import uuid
from typing import TYPE_CHECKING

from loguru import logger

from pgsched.claims import declare_queues
from pgsched.clock import utcnow
from pgsched.db.fleet_settings import publish as publish_settings
from pgsched.errors import ConfigurationError
from pgsched.logs import configure_logging
from pgsched.scheduler import Scheduler
from pgsched.worker.dispatcher import Dispatcher
from pgsched.worker.listener import Listener
from pgsched.worker.loops import CronLoop, Heartbeat, Loop, LoopThread, Takeover
from pgsched.worker.metrics import WorkerMetrics

if TYPE_CHECKING:
    from pgsched.app import App
    from pgsched.queues import Queue


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
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopping = threading.Event()
        self.halt = threading.Event()
        self.metrics = WorkerMetrics()
        self.loops: list[LoopThread] = []
        self.dispatcher: Dispatcher | None = None
        self.listener: Listener | None = None
        self.heartbeat: Heartbeat | None = None
        if configure_logs:
            configure_logging(settings.log_level, settings.log_json)
        self.log = logger.bind(component="worker")

    def _register(self) -> None:
        with self.app.db.connection() as conn:
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
                },
            )

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
        self.log.info("connecting to {}", "embedded PostgreSQL" if self.app.db.embedded
                      else "PostgreSQL")
        self.app.migrate()
        declare_queues(self.app.db, self.queues, utcnow())
        self._register()
        publish_settings(self.app.db, settings)  # the SQL views follow the takeover timeout
        self.dispatcher = Dispatcher(self.app, self.id, self.queues, self.concurrency, self.metrics)
        self.heartbeat = Heartbeat(self.app, self.id, self._register, settings.heartbeat_interval)
        takeover = Takeover(self.app, settings.takeover_timeout, self.metrics)
        loops: list[Loop] = [self.heartbeat, takeover]
        if self.app.schedules:
            scheduler = Scheduler(self.app)
            scheduler.register(utcnow())
            loops.append(CronLoop(scheduler, self.metrics))
        if settings.prune_older_than:
            from pgsched.worker.pruner import Pruner

            loops.append(Pruner(self.app, settings.prune_older_than))
        loops.extend([health.readiness] if health is not None else [])  # /readyz, from memory
        for loop in loops:
            thread = LoopThread(loop, self.halt)
            thread.start()
            self.loops.append(thread)
        if settings.listen:
            self.listener = Listener(self.app.db, self.app.db.channel, self.dispatcher.notify,
                                     self.halt, url=settings.listen_database_url)
            self.listener.start()
        if health is not None:
            health.start()
        self.log.info(
            "worker {} serving queues {} with concurrency {}{}",
            self.id, ",".join(q.name for q in self.queues), self.concurrency,
            f", {len(self.app.schedules)} schedule(s)" if self.app.schedules else "",
        )

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
        returned = self.dispatcher.handback(unfinished)
        if returned:
            self.log.warning("handed back {} unfinished run(s) for other workers", returned)
        self.halt.set()
        with self.app.db.connection() as conn:
            conn.execute(self.app.db.sql("worker_remove"), {"id": self.id})
        self.app.close()
        self.log.info("worker {} stopped", self.id)
