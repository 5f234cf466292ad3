"""``pgsched bench --soak N``: what a month of traffic does to the tables and the hot paths.

N no-op jobs go through enqueue → drain in slices (100,000 by default): each slice is
enqueued in batches, then drained by one real ``pgsched worker`` subprocess while a pruner
thread deletes every run finished more than a few seconds ago, as a worker's pruner does with
a short retention. Per slice the report gives the drain rate (slice size over the time from
the enqueue's commit to the last finish) and the worker's claim statement p99 (from its own
``pgsched_claim_seconds`` histogram, read off its /metrics endpoint before and after the
slice, interpolated inside its bucket). At the end: dead tuples, (auto)vacuum counts and
table and index sizes of ``workflows``, ``steps`` and ``queue_slots``. A table that
bloats, or an index that fills with dead entries at its head, shows as a last slice slower
than the first.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.request
from datetime import timedelta
from typing import Any

from pgsched.bench import Bench, BenchConfig
from pgsched.clock import utcnow
from pgsched.operations import prune_batch

SLICE = 100_000
#: Runs finished longer ago than this are pruned while the soak runs.
RETENTION = timedelta(seconds=5)
PRUNE_BATCH = 1000
_BUCKET = re.compile(r'^pgsched_claim_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', re.M)
_SUM = re.compile(r"^pgsched_claim_seconds_sum ([0-9.e+-]+)$", re.M)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def claim_quantile(before: dict[float, float], after: dict[float, float],
                   q: float) -> float | None:
    """Quantile ``q`` (seconds) of the claims observed between two scrapes of a cumulative
    histogram, interpolated linearly inside the bucket that holds it (as Prometheus's
    ``histogram_quantile`` does); ``None`` when there were none."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


class Soak(Bench):
    def __init__(self, database_url: str | None, config: BenchConfig, jobs: int,
                 slice_size: int = SLICE) -> None:
        super().__init__(database_url, config)
        self.jobs = jobs
        self.slice_size = min(slice_size, jobs)
        self.port = _free_port()
        self.worker_env["PGSCHED_HEALTH_PORT"] = str(self.port)
        self.pruned = 0
        self._stop = threading.Event()

    def _run(self) -> dict[str, Any]:
        self.app.migrate()
        with self.app.db.connection() as conn:
            server = conn.execute(self.app.db.sql("bench_server")).fetchone()
            autovacuum = conn.execute(self.app.db.sql("bench_autovacuum")).fetchone()
        self._worker(self.url, "drain", self.config.concurrency)
        self._wait(lambda: self._workers() >= 1, 60, "the worker to register", 0.05)
        self._wait(self._metrics_up, 30, "the worker's /metrics endpoint", 0.1)
        pruner = threading.Thread(target=self._prune_loop, daemon=True, name="soak-pruner")
        pruner.start()
        slices = []
        try:
            done = 0
            while done < self.jobs:
                size = min(self.slice_size, self.jobs - done)
                slices.append(self._slice(done, size))
                done += size
        finally:
            self._stop.set()
            pruner.join(30)
        time.sleep(1.0)  # table statistics are flushed about once a second
        with self.app.db.connection() as conn:
            tables = conn.execute(self.app.db.sql("bench_table_stats"),
                                  {"schema": self.schema}).fetchall()
        first, last = slices[0]["drain_per_s"], slices[-1]["drain_per_s"]
        return {"server": server, "autovacuum": autovacuum, "schema": self.schema,
                "soak": self.jobs,
                "slice": self.slice_size, "concurrency": self.config.concurrency,
                "retention_s": RETENTION.total_seconds(), "pruned": self.pruned,
                "slices": slices, "last_vs_first": last / first if first else None,
                "tables": {row["table"]: {k: v for k, v in row.items() if k != "table"}
                           for row in tables}}

    def _slice(self, start: int, size: int) -> dict[str, Any]:
        queue = self.app.get_queue("drain")
        items = [("bench.noop", (), {})] * min(size, 10_000)
        before = self._claims()
        enqueue_started = time.perf_counter()
        for chunk in range(0, size, 10_000):
            queue.enqueue_many(items[:min(10_000, size - chunk)])
        committed = time.time()
        enqueue_s = time.perf_counter() - enqueue_started
        self._wait(lambda: not self._scalar(self.app.db.sql("bench_pending"), {"queue": "drain"}),
                   3600,
                   f"jobs {start:,}-{start + size:,} to finish", 0.25)
        last = self._scalar(self.app.db.sql("bench_last_finish"), {"queue": "drain"})
        after = self._claims()
        p99 = claim_quantile(before[0], after[0], 0.99)
        count = after[0][float("inf")] - before[0].get(float("inf"), 0.0)
        with self.app.db.connection() as conn:
            sizes = conn.execute(self.app.db.sql("bench_slice_stats"),
                                 {"schema": self.schema}).fetchone()
        return {"from": start, "to": start + size,
                "enqueue_per_s": size / enqueue_s,
                "drain_per_s": size / max(1e-9, last.timestamp() - committed),
                "claims": int(count),
                "claim_p99_ms": None if p99 is None else p99 * 1000,
                "claim_mean_ms": (after[1] - before[1]) / count * 1000 if count else None,
                "pruned_so_far": self.pruned, **sizes}

    def _metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def _metrics_up(self) -> bool:
        try:
            return "pgsched_claim_seconds" in self._metrics()
        except OSError:
            return False

    def _claims(self) -> tuple[dict[float, float], float]:
        """The worker's claim histogram: cumulative count per bucket bound, and the sum."""
        text = self._metrics()
        buckets = {float(bound): float(count) for bound, count in _BUCKET.findall(text)}
        total = _SUM.search(text)
        return buckets, float(total.group(1)) if total else 0.0

    def _prune_loop(self) -> None:
        """Delete runs finished more than ``RETENTION`` ago, batch after batch, all along."""
        while not self._stop.is_set():
            deleted = prune_batch(self.app.db, utcnow() - RETENTION, PRUNE_BATCH,
                                  exclusive=False) or 0
            self.pruned += deleted
            if deleted < PRUNE_BATCH:
                self._stop.wait(0.5)
