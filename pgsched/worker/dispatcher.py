"""The claim loop: claims runs in batches, hands them to threads, writes results in batches.

One thread owns one connection. Each round writes every outcome that finished since the last
round and claims new runs for the freed capacity, in one transaction sent as one pipeline:
the batched finish and one claim per ready queue cost a single network round trip and a
single commit, however many runs the round finishes and starts.

The transaction is the pipeline's implicit one: PostgreSQL runs every statement up to the
pipeline's single Sync message in one transaction, committed at the Sync (or rolled back as a
whole if a statement fails). An explicit ``conn.transaction()`` inside the pipeline would add
BEGIN and COMMIT and make psycopg sync the pipeline on entry, an extra round trip: measured
here, it cost a third of the drain rate and 0.6 ms of every idle worker's start latency. A
round of one statement (an idle worker claiming a fresh run) skips the pipeline altogether:
entering and leaving pipeline mode cost another 0.3 ms of that latency.

Waking up: the listener reports each enqueue (NOTIFY) at once; a delayed run's NOTIFY says
when it comes due, and the retries this worker writes are timed the same way, so neither
needs a query to be found. Polling is the fallback: every ``poll_interval`` while there is no
working LISTEN connection (poll-only mode, a pooler, a lost connection) or while runs wait on
a limit held elsewhere; otherwise an idle worker sleeps until the next delayed run comes due,
checking in only every ``IDLE_POLL_FACTOR`` intervals.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from loguru import logger

from pgsched.claims import claim_statements, peek, send_claim
from pgsched.clock import utcnow
from pgsched.errors import JobTimeout
from pgsched.queues import parse_wake
from pgsched.runs import Outcome, error_json, execute_claimed, finish_params
from pgsched.worker.executor import Executor
from pgsched.worker.listener import CONNECTED, DISCONNECTED

if TYPE_CHECKING:
    from pgsched.app import App
    from pgsched.queues import Queue
    from pgsched.worker.metrics import WorkerMetrics

#: With a working LISTEN connection an idle worker polls this many times less often: every
#: enqueue, hand-back and takeover notifies, and delayed runs are awaited by their due time.
IDLE_POLL_FACTOR = 10


#: The longest a round waits for more runs to finish before it writes the ones that have.
LINGER = 0.0005


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
        self.queue_names = [q.name for q in queues]
        self.concurrency = concurrency
        self.metrics = metrics
        self.names = sorted(app.registry.workflows)
        self.executor = Executor(concurrency)
        self.wake = threading.Event()
        self.outcomes: deque[Outcome] = deque()
        self.running: dict[str, Running] = {}
        self.per_queue: Counter[str] = Counter()
        self.ready: set[str] = set(self.queue_names)
        self.listening = False
        self.blocked = False
        self.next_poll = 0.0
        self.next_due: float | None = None
        #: Unix times at which runs this worker heard of (delayed enqueues, its own retries)
        #: may start; the loop folds them into ``next_due``.
        self.expected: deque[float] = deque()
        self.limited = {q.name for q in queues if q.concurrency is not None or q.rate_limit}
        self._rotation = 0
        self.last_round = time.monotonic()

    # -- called from other threads -----------------------------------------------------------

    def notify(self, payload: str) -> None:
        """A NOTIFY payload (``queues.wake_payload``) or the listener's connection news."""
        if payload == CONNECTED or payload == DISCONNECTED:
            # Notifications sent while nobody listened are lost: look at every queue now.
            self.listening = payload == CONNECTED
            self.next_poll = 0.0
            self.wake.set()
            return
        queue, at = parse_wake(payload)
        if queue not in self.queue_names:
            return
        if at is None:
            self.ready.add(queue)  # the next round claims it; no poll needed after that
        else:
            self.expected.append(at)  # a delayed run: look again when it comes due
        if queue in self.limited:
            # The claim may find the limit full: the poll after it tells whether runs wait
            # on capacity held elsewhere, which no NOTIFY will announce when it frees up.
            self.next_poll = 0.0
        self.wake.set()

    def _done(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.wake.set()

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stopping: threading.Event, halt: threading.Event, grace: float) -> list[str]:
        """Serve until ``stopping``; then drain for ``grace`` seconds (or until ``halt``).
        Returns the ids still running, for the caller to hand back."""
        log = logger.bind(component="dispatch")
        conn = self._connect()
        stop_deadline: float | None = None
        while True:
            self.wake.clear()
            self._linger()
            self.last_round = time.monotonic()
            try:
                claimed = self._round(conn, claim_more=not stopping.is_set())
            except psycopg.Error as exc:
                log.warning("claim round failed ({!r}); reconnecting", exc)
                conn = self._reconnect(conn)
                continue
            now = time.monotonic()
            if stopping.is_set():
                stop_deadline = stop_deadline or now + grace
                if not self.running or now >= stop_deadline or halt.is_set():
                    conn.close()
                    return list(self.running)
                self.wake.wait(min(0.1, stop_deadline - now))
                continue
            self._expire(now)
            if claimed:
                continue
            self._fold_expected(now)
            if now >= self.next_poll or (self.next_due is not None and now >= self.next_due):
                try:
                    if self._poll(conn, now) and self._capacity() > 0:
                        continue
                except psycopg.Error as exc:
                    log.warning("poll failed ({!r}); reconnecting", exc)
                    conn = self._reconnect(conn)
                    continue
            self.wake.wait(self._sleep_for(now))

    def _linger(self) -> None:
        """Let a round carry every outcome it can: when some running runs have finished, wait
        up to ``LINGER`` for the rest. Short runs then share one round trip and one commit
        (a drain of no-op runs writes and claims the whole concurrency each round, instead of
        splitting into two half-size cohorts that alternate); a run that takes longer costs
        the others at most ``LINGER`` of delay."""
        deadline = time.perf_counter() + LINGER
        while 0 < len(self.outcomes) < len(self.running):
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            self.wake.clear()
            self.wake.wait(left)

    def _reconnect(self, conn: psycopg.Connection) -> psycopg.Connection:
        """A fresh connection, and back to their queues any runs this worker owns without
        knowing it: a claim whose COMMIT succeeded as the connection broke would otherwise
        stay RUNNING under a live worker, beyond the reach of takeover."""
        conn.close()
        while True:
            time.sleep(random.uniform(0.5, 1.5))
            conn = self._connect()
            try:
                owned = conn.execute(self.db.sql("worker_runs"),
                                     {"worker": self.worker_id}).fetchall()
                unknown = [row["id"] for row in owned if row["id"] not in self.running]
                if unknown:
                    logger.bind(component="dispatch").warning(
                        "handing back {} run(s) claimed as the connection broke", len(unknown))
                    self._handback_on(conn, unknown)
                return conn
            except psycopg.Error as exc:
                logger.bind(component="dispatch").warning("reconnect failed ({!r})", exc)
                conn.close()

    def _connect(self) -> psycopg.Connection:
        """A dedicated autocommit connection: a poll is one statement, a round one pipeline.
        ``prepare_threshold=0`` prepares each statement on first use: this connection runs
        the same few statements for the life of the worker."""
        while True:
            try:
                conn = self.db.connect(autocommit=True)
                conn.prepare_threshold = 0
                return conn
            except Exception as exc:
                logger.bind(component="dispatch").warning("cannot connect ({}); retrying", exc)
                time.sleep(random.uniform(1, 3))

    def _poll(self, conn: psycopg.Connection, now: float) -> bool:
        """Look for waiting runs; return whether one is ready to start."""
        period = self.app.settings.poll_interval
        wall = utcnow()
        found = peek(conn, self.db, self.queue_names, self.names, wall)
        ready = {name for name, waiting in found.items() if waiting.ready}
        self.ready |= ready
        self.blocked = bool(ready)
        if self.listening and not self.blocked:
            period *= IDLE_POLL_FACTOR
        self.next_poll = now + period * random.uniform(0.8, 1.2)
        self.next_due = self._monotonic_due(
            [w.next_due for w in found.values() if w.next_due is not None], wall, now
        )
        return bool(ready)

    def _fold_expected(self, now: float) -> None:
        wall = time.time()
        while self.expected:
            due = now + max(0.0, self.expected.popleft() - wall)
            self.next_due = due if self.next_due is None else min(self.next_due, due)

    @staticmethod
    def _monotonic_due(due: list[datetime], wall: datetime, now: float) -> float | None:
        if not due:
            return None
        return now + max(0.0, (min(due) - wall).total_seconds())

    def _sleep_for(self, now: float) -> float:
        deadlines = [r.deadline for r in self.running.values() if r.deadline is not None]
        if self.next_due is not None:
            deadlines.append(self.next_due)
        return max(0.0, min([self.next_poll - now, *[d - now for d in deadlines]]))

    def _capacity(self) -> int:
        return self.concurrency - len(self.running)

    def _take_outcomes(self) -> list[Outcome]:
        batch: list[Outcome] = []
        seen: set[str] = set()
        while self.outcomes:
            outcome = self.outcomes.popleft()
            if outcome.workflow_id not in seen:  # a timeout and the late result: first wins
                seen.add(outcome.workflow_id)
                batch.append(outcome)
        return batch

    def _round(self, conn: psycopg.Connection, claim_more: bool) -> int:
        batch = self._take_outcomes()
        writes = [o for o in batch if o.status != "LOST"]
        for outcome in batch:
            self._forget(outcome)  # before planning: a finished run's capacity is free now
        plan = self._plan() if claim_more else []
        results: list[tuple[Queue, int, list[dict[str, Any]]]] = []
        if writes or plan:
            started = time.perf_counter()
            now = utcnow()
            try:
                statements = bool(writes) + sum(claim_statements(q) for q, _ in plan)
                with conn.pipeline() if statements > 1 else contextlib.nullcontext():
                    finished = self._send_finish(conn, writes, now) if writes else None
                    # In queue-name order, whatever the rotation: a rate-limited claim holds
                    # its queue's advisory lock until the round commits, and two workers
                    # taking two such locks in opposite orders would deadlock.
                    cursors = [
                        (queue, want, send_claim(conn, self.db, queue, want,
                                                 worker_id=self.worker_id, names=self.names,
                                                 now=now))
                        for queue, want in sorted(plan, key=lambda share: share[0].name)
                    ]
                results = [(queue, want, cursor.fetchall()) for queue, want, cursor in cursors]
                if finished is not None:
                    self._report_fenced(writes, {row["id"] for row in finished.fetchall()})
                self.expected.extend(o.not_before.timestamp() for o in writes
                                     if o.status == "ENQUEUED" and o.not_before is not None)
            except BaseException:
                self.outcomes.extendleft(reversed(writes))  # written by the next round
                raise
            if plan:
                self.metrics.claim_latency.observe(time.perf_counter() - started)
        claimed = 0
        for queue, want, rows in results:
            if len(rows) < want:
                self.ready.discard(queue.name)
            for row in rows:
                self._start(queue, row)
            claimed += len(rows)
        return claimed

    @staticmethod
    def _report_fenced(writes: list[Outcome], recorded: set[str]) -> None:
        for outcome in writes:
            if outcome.workflow_id not in recorded:
                logger.bind(component="run").warning(
                    "run {}: outcome {} not recorded, this attempt no longer owns the run "
                    "(taken over, cancelled or timed out)", outcome.workflow_id, outcome.status,
                )

    def _send_finish(self, conn: psycopg.Connection, writes: list[Outcome], now: datetime) -> Any:
        """The batched finish, sent without reading its result (``runs.write_outcomes``
        reads it, which in a pipeline would cost a round trip of its own). Rows whose token no
        longer matches are fenced out by the statement itself."""
        return conn.cursor().execute(self.db.sql("finish"), finish_params(writes, now))

    def _plan(self) -> list[tuple[Queue, int]]:
        """Share the free capacity among the ready queues, one unit at a time starting at a
        rotating queue, so that no queue starves another and the shares never add up to more
        than this worker may run."""
        free = self._capacity()
        if free <= 0 or not self.ready:
            return []
        count = len(self.queues)
        self._rotation = (self._rotation + 1) % count
        room: dict[int, int] = {}
        for offset in range(count):
            index = (self._rotation + offset) % count
            queue = self.queues[index]
            if queue.name not in self.ready:
                continue
            limit = free
            if queue.worker_concurrency is not None:
                limit = min(free, queue.worker_concurrency - self.per_queue[queue.name])
            if limit > 0:
                room[index] = limit
        shares = dict.fromkeys(room, 0)
        while free > 0:
            grew = False
            for index, limit in room.items():
                if free > 0 and shares[index] < limit:
                    shares[index] += 1
                    free -= 1
                    grew = True
            if not grew:
                break
        return [(self.queues[index], share) for index, share in shares.items() if share > 0]

    def _start(self, queue: Queue, row: dict[str, Any]) -> None:
        token = str(row["attempt_token"])
        timeout = row["timeout_s"]
        now = time.monotonic()
        self.running[row["id"]] = Running(
            queue.name, token, row["name"], now, now + timeout if timeout else None
        )
        self.per_queue[queue.name] += 1
        self.metrics.start(queue.name, row["name"])
        spec = self.app.registry.workflows[row["name"]]

        def task() -> None:
            outcome = execute_claimed(self.db, spec, row, worker_id=self.worker_id,
                                      queue=queue.name)
            self._done(outcome)

        self.executor.submit(task)

    def _forget(self, outcome: Outcome) -> None:
        running = self.running.get(outcome.workflow_id)
        if running is None or running.token != outcome.token:
            return
        del self.running[outcome.workflow_id]
        self.per_queue[running.queue] -= 1
        queue = self.app.queues.get(running.queue)
        if queue is not None and queue.concurrency is not None:
            # The slot it held is free again, and this round's claim may reuse it.
            self.ready.add(running.queue)
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
            return self._handback_on(conn, ids)

    def _handback_on(self, conn: psycopg.Connection, ids: list[str]) -> int:
        rows = conn.execute(
            self.db.sql("handback"),
            {"worker": self.worker_id, "ids": ids, "now": utcnow(), "channel": self.app.db.channel},
        ).fetchall()
        return len(rows)
