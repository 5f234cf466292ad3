"""The claim loop: claims runs in batches, hands them to threads, writes results in batches.

One thread owns one connection. Each round writes every outcome that finished since the last
round and claims new runs for the freed capacity, in one transaction, so a busy worker pays
about one commit per batch of runs rather than two per run.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from loguru import logger

from pgsched.claims import claim, ready_queues
from pgsched.clock import utcnow
from pgsched.context import RunContext
from pgsched.errors import JobTimeout
from pgsched.runs import Outcome, error_json, execute, write_outcomes
from pgsched.steps import load_checkpoints
from pgsched.worker.executor import Executor

if TYPE_CHECKING:
    from pgsched.app import App
    from pgsched.queues import Queue
    from pgsched.worker.metrics import WorkerMetrics


@dataclass
class Running:
    queue: str
    token: str
    name: str
    started: float
    deadline: float | None


class Dispatcher:
    def __init__(
        self,
        app: App,
        worker_id: str,
        queues: list[Queue],
        concurrency: int,
        metrics: WorkerMetrics,
    ) -> None:
        self.app = app
        self.db = app.db
        self.worker_id = worker_id
        self.queues = queues
        self.concurrency = concurrency
        self.metrics = metrics
        self.names = sorted(app.registry.workflows)
        self.executor = Executor(concurrency)
        self.wake = threading.Event()
        self.outcomes: deque[Outcome] = deque()
        self.running: dict[str, Running] = {}
        self.per_queue: Counter[str] = Counter()
        self.ready: set[str] = {q.name for q in queues}
        self._rotation = 0
        self.last_round = time.monotonic()

    # -- called from other threads -----------------------------------------------------------

    def notify(self, queue: str) -> None:
        if any(q.name == queue for q in self.queues):
            self.ready.add(queue)
            self.wake.set()

    def _done(self, outcome: Outcome | None, workflow_id: str, token: str) -> None:
        self.outcomes.append(outcome or Outcome(workflow_id, token, "LOST"))
        self.wake.set()

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stopping: threading.Event, halt: threading.Event, grace: float) -> list[str]:
        """Serve until ``stopping``; then drain for ``grace`` seconds (or until ``halt``).
        Returns the ids still running, for the caller to hand back."""
        log = logger.bind(component="dispatch")
        conn = self._connect()
        next_poll = 0.0
        stop_deadline: float | None = None
        while True:
            self.wake.clear()
            self.last_round = time.monotonic()
            try:
                claimed = self._round(conn, claim_more=not stopping.is_set())
            except psycopg.OperationalError as exc:
                log.warning("database connection lost ({!r}); reconnecting", exc)
                time.sleep(random.uniform(0.5, 1.5))
                conn = self._connect()
                continue
            now = time.monotonic()
            if stopping.is_set():
                stop_deadline = stop_deadline or now + grace
                if not self.running or now >= stop_deadline or halt.is_set():
                    return list(self.running)
                self.wake.wait(min(0.1, stop_deadline - now))
                continue
            self._expire(now)
            if claimed:
                continue
            if now >= next_poll:
                next_poll = now + self.app.settings.poll_interval * random.uniform(0.8, 1.2)
                with conn.transaction():
                    found = ready_queues(
                        conn, self.db, [q.name for q in self.queues], self.names, utcnow()
                    )
                if found - self.ready and self._capacity() > 0:
                    self.ready |= found
                    continue
                self.ready |= found
            self.wake.wait(self._sleep_for(now, next_poll))

    def _connect(self) -> psycopg.Connection:
        while True:
            try:
                return self.db.connect()
            except Exception as exc:
                logger.bind(component="dispatch").warning("cannot connect ({}); retrying", exc)
                time.sleep(random.uniform(1, 3))

    def _sleep_for(self, now: float, next_poll: float) -> float:
        deadlines = [r.deadline for r in self.running.values() if r.deadline is not None]
        return max(0.0, min([next_poll - now, *[d - now for d in deadlines]]))

    def _capacity(self) -> int:
        return self.concurrency - len(self.running)

    def _round(self, conn: psycopg.Connection, claim_more: bool) -> int:
        batch: list[Outcome] = []
        seen: set[str] = set()
        while self.outcomes:
            outcome = self.outcomes.popleft()
            if outcome.workflow_id not in seen:  # a timeout and the late result: first wins
                seen.add(outcome.workflow_id)
                batch.append(outcome)
        claimed: list[tuple[Queue, dict[str, Any]]] = []
        with conn.transaction():
            writes = [o for o in batch if o.status != "LOST"]
            if writes:
                write_outcomes(conn, self.db.sql("finish"), writes)
            if claim_more:
                claimed = self._claim(conn)
        for outcome in batch:
            self._forget(outcome)
        for queue, row in claimed:
            self._start(queue, row)
        return len(claimed)

    def _claim(self, conn: psycopg.Connection) -> list[tuple[Queue, dict[str, Any]]]:
        """Claim for the ready queues, starting at a rotating queue so none starves."""
        claimed: list[tuple[Queue, dict[str, Any]]] = []
        count = len(self.queues)
        self._rotation = (self._rotation + 1) % max(1, count)
        now = utcnow()
        for offset in range(count):
            queue = self.queues[(self._rotation + offset) % count]
            if queue.name not in self.ready:
                continue
            free = self._capacity() - len(claimed)
            if free <= 0:
                break
            if queue.worker_concurrency is not None:
                taken = sum(1 for q, _ in claimed if q is queue)
                free = min(free, queue.worker_concurrency - self.per_queue[queue.name] - taken)
                if free <= 0:
                    continue
            started = time.perf_counter()
            rows = claim(conn, self.db, queue, free, worker_id=self.worker_id,
                         names=self.names, now=now)
            self.metrics.claim_latency.observe(time.perf_counter() - started)
            if len(rows) < free:
                self.ready.discard(queue.name)
            claimed.extend((queue, row) for row in rows)
        return claimed

    def _start(self, queue: Queue, row: dict[str, Any]) -> None:
        token = str(row["attempt_token"])
        timeout = row["timeout_s"]
        now = time.monotonic()
        self.running[row["id"]] = Running(
            queue.name, token, row["name"], now, now + timeout if timeout else None
        )
        self.per_queue[queue.name] += 1
        self.metrics.started.labels(queue.name, row["name"]).inc()
        spec = self.app.registry.workflows[row["name"]]
        ctx = RunContext(
            db=self.db,
            workflow_id=row["id"],
            workflow_name=row["name"],
            token=token,
            worker_id=self.worker_id,
            queue=queue.name,
        )

        def task() -> None:
            outcome: Outcome | None
            try:
                if row["has_steps"]:
                    load_checkpoints(ctx)
                outcome = execute(ctx, spec, row)
            except Exception as exc:
                logger.bind(component="run").exception("run {} crashed the runner", row["id"])
                outcome = Outcome(row["id"], token, "ERROR", error=error_json(exc))
            self._done(outcome, row["id"], token)

        self.executor.submit(task)

    def _forget(self, outcome: Outcome) -> None:
        running = self.running.get(outcome.workflow_id)
        if running is None or running.token != outcome.token:
            return
        del self.running[outcome.workflow_id]
        self.per_queue[running.queue] -= 1
        self.metrics.finished(running.queue, running.name, outcome.status,
                              time.monotonic() - running.started)
        if outcome.status != "SUCCESS":
            logger.bind(component="run").info("run {} ({}) → {}", outcome.workflow_id,
                                               running.name, outcome.status)

    def _expire(self, now: float) -> None:
        """Cancel runs past their timeout. Their threads cannot be killed; the cleared token
        fences whatever they still try to write, and a fresh thread takes their place."""
        for workflow_id, running in list(self.running.items()):
            if running.deadline is not None and now >= running.deadline:
                limit = running.deadline - running.started
                error = error_json(JobTimeout(f"cancelled after its timeout of {limit:g}s"))
                self.outcomes.append(Outcome(workflow_id, running.token, "CANCELLED", error=error))
                self.executor.replace_stuck_thread()
                running.deadline = None
                self.wake.set()

    def handback(self, ids: list[str]) -> int:
        """Return unfinished runs to their queues so live workers take them at once."""
        if not ids:
            return 0
        with self.db.connection() as conn:
            rows = conn.execute(
                self.db.sql("handback"),
                {"worker": self.worker_id, "ids": ids, "now": utcnow(), "channel": self.app.channel},
            ).fetchall()
        return len(rows)
