"""Prometheus metrics of one worker process, in a registry of its own.

A registry per worker (not the global default) keeps two workers in one test process, or an
app that exports its own metrics, from colliding on names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from pgsched.scheduler import PassResult


class WorkerMetrics:
    def __init__(self) -> None:
        self._started: dict[tuple[str, str], Any] = {}
        self._finished: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.started = Counter("pgsched_runs_started", "Runs started", ["queue", "workflow"],
                               registry=r)
        self.finished_total = Counter(
            "pgsched_runs_finished", "Runs finished, by outcome", ["queue", "workflow", "status"],
            registry=r,
        )
        self.failed = Counter("pgsched_runs_failed", "Runs that failed (retried, dead, error)",
                              ["queue", "workflow"], registry=r)
        self.duration = Histogram(
            "pgsched_run_duration_seconds", "Run duration", ["queue", "workflow"], registry=r,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800),
        )
        self.claim_latency = Histogram(
            "pgsched_claim_seconds", "Time of one claim statement", registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1),
        )
        self.running = Gauge("pgsched_worker_running", "Runs in progress in this worker",
                             registry=r)
        self.concurrency = Gauge("pgsched_worker_concurrency",
                                 "Runs this worker may run at once", registry=r)
        self.queue_depth = Gauge("pgsched_queue_waiting", "Runs ready to start and waiting",
                                 ["queue"], registry=r)
        self.queue_delayed = Gauge(
            "pgsched_queue_delayed", "Runs enqueued for later (start time or retry backoff)",
            ["queue"], registry=r,
        )
        self.queue_oldest = Gauge(
            "pgsched_queue_oldest_waiting_seconds",
            "Seconds the oldest ready run has waited since it became ready", ["queue"], registry=r,
        )
        self.ticks = Counter("pgsched_cron_ticks", "Cron ticks by result (inserted, collapsed, "
                             "missed, skipped)", ["schedule", "result"], registry=r)
        self.takeovers = Counter("pgsched_takeovers", "Runs taken over from dead workers, by "
                                 "outcome (requeued, dead)", ["outcome"], registry=r)
        self.heartbeat_age = Gauge("pgsched_heartbeat_age_seconds",
                                   "Seconds since this worker's last successful heartbeat",
                                   registry=r)
        self.loop_age = Gauge(
            "pgsched_loop_seconds_since_success",
            "Seconds since each background loop (and the dispatcher) last completed a round",
            ["loop"], registry=r,
        )
        self.gauge_errors = Counter(
            "pgsched_metrics_refresh_errors",
            "Scrapes whose queue gauges could not be read from the database", registry=r,
        )

    def start(self, queue: str, workflow: str) -> None:
        child = self._started.get((queue, workflow))
        if child is None:
            child = self._started[queue, workflow] = self.started.labels(queue, workflow)
        child.inc()

    def finished(self, queue: str, workflow: str, status: str, seconds: float) -> None:
        """Count one finished run. The labelled children are cached: ``labels()`` validates
        and looks up its arguments under a lock, which a drain would pay twice per run."""
        children = self._finished.get((queue, workflow, status))
        if children is None:
            children = self._finished[queue, workflow, status] = (
                self.finished_total.labels(queue, workflow, status),
                self.duration.labels(queue, workflow),
                self.failed.labels(queue, workflow) if status != "SUCCESS" else None,
            )
        total, duration, failed = children
        total.inc()
        duration.observe(seconds)
        if failed is not None:
            failed.inc()

    def record_pass(self, results: Mapping[str, PassResult]) -> None:
        """Count what one scheduler pass did; "collapsed" ticks were already inserted by a
        peer (or by this worker earlier), which is the fleet deduplicating, not an error."""
        for schedule, result in results.items():
            for outcome, count in (("inserted", len(result.fired)),
                                   ("collapsed", result.collapsed),
                                   ("missed", result.missed), ("skipped", result.skipped)):
                if count:
                    self.ticks.labels(schedule, outcome).inc(count)

    def record_takeovers(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Count the rows the takeover statement returned (each has the run's new status)."""
        for row in rows:
            self.takeovers.labels("dead" if row["status"] == "DEAD" else "requeued").inc()
