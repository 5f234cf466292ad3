"""Prometheus metrics of one worker process, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.started = Counter(
            "pgsched_runs_started", "Runs started", ["queue", "workflow"], registry=r
        )
        self.finished_total = Counter(
            "pgsched_runs_finished",
            "Runs finished, by outcome",
            ["queue", "workflow", "status"],
            registry=r,
        )
        self.failed = Counter(
            "pgsched_runs_failed",
            "Runs that failed (retried, dead, error)",
            ["queue", "workflow"],
            registry=r,
        )
        self.duration = Histogram(
            "pgsched_run_duration_seconds",
            "Run duration",
            ["queue", "workflow"],
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800),
        )
        self.claim_latency = Histogram(
            "pgsched_claim_seconds",
            "Time of one claim statement",
            registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1),
        )
        self.queue_depth = Gauge("pgsched_queue_waiting", "Runs waiting", ["queue"], registry=r)
        self.queue_oldest = Gauge(
            "pgsched_queue_oldest_waiting_seconds",
            "Age of the oldest waiting run",
            ["queue"],
            registry=r,
        )
        self.ticks = Counter(
            "pgsched_cron_ticks",
            "Cron ticks by result (inserted, collapsed, missed, skipped)",
            ["schedule", "result"],
            registry=r,
        )
        self.takeovers = Counter("pgsched_takeovers", "Runs requeued from dead workers", registry=r)
        self.heartbeat_age = Gauge(
            "pgsched_heartbeat_age_seconds",
            "Seconds since this worker's last heartbeat",
            registry=r,
        )

    def finished(self, queue: str, workflow: str, status: str, seconds: float) -> None:
        self.finished_total.labels(queue, workflow, status).inc()
        self.duration.labels(queue, workflow).observe(seconds)
        if status != "SUCCESS":
            self.failed.labels(queue, workflow).inc()
