"""The claim loop: claims runs in batches, hands them to threads, writes results in batches.

One thread owns one connection. Each round writes every outcome that finished since the last
round and claims new runs for the freed capacity, in one transaction sent as one pipeline:
the batched finish and one claim per ready queue cost a single network round trip and a
single commit, however many runs the round finishes and starts. The one exception: a queue
this worker ran nothing of when the round began is claimed first, in a short transaction of
its own, so that a job on an idle queue does not wait for a busy queue's batch (``_round``).

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
checking in only every ``IDLE_POLL_FACTOR`` intervals. A NOTIFY that arrives while a round
is out is kept: a queue is marked drained only if no NOTIFY named it since the round began.

Failures stay with their run. An outcome the database refuses (a value jsonb cannot store)
is written alone and, if it still fails, recorded as that run's ``SerializationError``; a
transient failure (connection lost, restart) keeps every unwritten outcome for the round
after the reconnect, and nothing finished is handed back as if it were still running.

Capacity counts threads, not rows: a run that timed out is CANCELLED at once, but its thread
(which cannot be killed) keeps its share of ``concurrency`` and its queue slot until it
returns. Claims follow the queues' limits as the database holds them (read at each poll), and
a worker claims only while its lease (heartbeat) is fresh. Runs recovered from a crashed
worker (suspects) are claimed one at a time by a worker running nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from loguru import logger

from pgsched import clock, lifecycle
from pgsched.claims import claim_settings, peek
from pgsched.clock import utcnow
from pgsched.db.arrays import text_array
from pgsched.errors import JobTimeout, SerializationError
from pgsched.lifecycle import Outcome
from pgsched.queues import parse_wake
from pgsched.retrying import is_transient
from pgsched.runs import error_json, execute_claimed
from pgsched.worker.executor import Executor
from pgsched.worker.lease import Lease
from pgsched.worker.listener import CONNECTED, DISCONNECTED
from pgsched.worker.runlog import log_outcome

if TYPE_CHECKING:
    from pgsched.app import App
    from pgsched.queues import Queue
    from pgsched.worker.metrics import WorkerMetrics

#: With a working LISTEN connection an idle worker polls this many times less often: every
#: enqueue, hand-back and takeover notifies, and delayed runs are awaited by their due time.
IDLE_POLL_FACTOR = 10

#: The longest a round waits for more runs to finish before it writes the ones that have.
LINGER = 0.0005

#: What a takeover appends to a queue's NOTIFY: suspects wait there (takeover.sql).
SUSPECT_MARK = "!"


@dataclass
class Running:
    """A run whose thread has not returned yet."""

    queue: str
    token: str
    name: str
    started: float
    deadline: float | None
    attempt: int = 1
    max_attempts: int = 1
    #: Timed out: already CANCELLED in the database, but the thread still runs the code, so
    #: it keeps its capacity (and queue slot) until it returns.
    abandoned: bool = False
    #: A suspect claimed alone: nothing else is claimed until it returns.
    isolated: bool = False


class Dispatcher:
    def __init__(
        self,
        app: App,
        worker_id: str,
        queues: list[Queue],
        concurrency: int,
        metrics: WorkerMetrics,
        lease: Lease | None = None,
        on_park: Callable[[datetime], None] | None = None,
    ) -> None:
        self.app = app
        self.db = app.db
        self.worker_id = worker_id
        self.queues = queues
        self.queue_names = [q.name for q in queues]
        self.concurrency = concurrency
        self.metrics = metrics
        self.lease = lease or Lease(None)  # driven by hand (tests): no heartbeat to lapse
        #: Told when each run this worker parked comes due (the alarm loop's ``expect``).
        self.on_park = on_park
        #: The workflows this worker can run, which its claims and polls are limited to,
        #: encoded once (they go with every claim round).
        self.names = text_array(sorted(app.registry.workflows))
        self.version = app.version
        #: Versions of the live workers, refreshed each poll: runs started under another of
        #: them are left to it (claim.sql).
        self.live_versions: list[str] = []
        self.executor = Executor(concurrency)
        self.wake = threading.Event()
        #: Outcomes of returned threads, appended by those threads.
        self.outcomes: deque[Outcome] = deque()
        #: Timeouts decided by the loop, to be written while the thread still runs.
        self.timeouts: deque[Outcome] = deque()
        #: Taken from the queues above but not yet committed: kept across failed rounds.
        self.unwritten: list[Outcome] = []
        self.unreleased: list[str] = []
        self.running: dict[str, Running] = {}
        self.per_queue: Counter[str] = Counter()
        self.ready: set[str] = set(self.queue_names)
        #: NOTIFYs per queue; a round discards a queue only if none arrived while it was out.
        self.notes: Counter[str] = Counter()
        self.suspects: set[str] = set()
        self.listening = False
        self.blocked = False
        self.next_poll = 0.0
        self.next_due: float | None = None
        #: Unix times at which runs this worker heard of (delayed enqueues, its own retries)
        #: may start; the loop folds them into ``next_due``.
        self.expected: deque[float] = deque()
        self._rotation = 0
        self._warned_definitions: set[str] = set()
        #: What the log line of a run needs once its outcome is written.
        self._log_info: dict[str, Running] = {}
        self.last_round = time.monotonic()

    @property
    def limited(self) -> set[str]:
        return {q.name for q in self.queues if q.concurrency is not None or q.rate_limit}

    # -- called from other threads -----------------------------------------------------------

    def notify(self, payload: str) -> None:
        """A NOTIFY payload (``queues.wake_payload``) or the listener's connection news."""
        if payload == CONNECTED or payload == DISCONNECTED:
            # Notifications sent while nobody listened are lost: look at every queue now.
            self.listening = payload == CONNECTED
            self.next_poll = 0.0
            self.wake.set()
            return
        suspect = payload.endswith(SUSPECT_MARK)
        queue, at = parse_wake(payload.removesuffix(SUSPECT_MARK))
        if queue not in self.queue_names:
            return
        self.notes[queue] += 1
        if suspect:
            self.suspects.add(queue)
        elif at is None:
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
        self._refresh_definitions(conn)
        stop_deadline: float | None = None
        while True:
            self.wake.clear()
            self._linger()
            self.last_round = time.monotonic()
            try:
                claimed = self._round(conn, claim_more=not stopping.is_set())
            except Exception as exc:
                # Whatever failed, the round's transaction is gone: start from a fresh
                # connection. A failure a retry cannot fix (a value the database refuses) is
                # then confined to the one run it belongs to.
                log.warning("claim round failed ({}); reconnecting", _brief(exc))
                conn = self._reconnect(conn)
                if not is_transient(exc):
                    conn = self._isolate_outcomes(conn)
                continue
            now = time.monotonic()
            if stopping.is_set():
                stop_deadline = stop_deadline or now + grace
                pending = self.unwritten or self.unreleased or self.outcomes
                if (not self.running and not pending) or now >= stop_deadline or halt.is_set():
                    conn.close()
                    return [i for i, r in self.running.items() if not r.abandoned]
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
                except Exception as exc:
                    log.warning("poll failed ({}); reconnecting", _brief(exc))
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
        stay RUNNING under a live worker, beyond the reach of takeover. Runs whose outcome
        waits to be written are known: they are written by the next round, never re-run."""
        conn.close()
        while True:
            time.sleep(random.uniform(0.2, 0.6))
            conn = self._connect()
            try:
                known = set(self.running) | {o.workflow_id for o in self.unwritten}
                known |= {o.workflow_id for o in self.outcomes} | set(self.unreleased)
                unknown = [i for i in lifecycle.owned_runs(conn, self.db, self.worker_id)
                           if i not in known]
                if unknown:
                    logger.bind(component="dispatch").warning(
                        "handing back {} run(s) claimed as the connection broke", len(unknown))
                    lifecycle.handback(conn, self.db, unknown, worker_id=self.worker_id,
                                       now=utcnow())
                self._refresh_definitions(conn)
                self.next_poll = 0.0
                return conn
            except psycopg.Error as exc:
                logger.bind(component="dispatch").warning("reconnect failed ({})", _brief(exc))
                conn.close()

    def _connect(self) -> psycopg.Connection:
        """A dedicated autocommit connection: a poll is one statement, a round one pipeline.
        Each statement is prepared on first use, and no lock is waited for long (see
        ``Database.connect``)."""
        failures = 0
        while True:
            try:
                conn = self.db.connect(autocommit=True, claiming=True)
                return conn
            except Exception as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    logger.bind(component="dispatch").warning(
                        "cannot connect ({}); retrying (try {})", exc, failures + 1)
                time.sleep(random.uniform(0.5, 1.5))

    def _refresh_definitions(self, conn: psycopg.Connection) -> None:
        """Claim by the queues' limits and the live versions as the database holds them.
        During a rolling deploy two releases may declare a queue differently; the last
        declaration is the one every worker applies, so no worker waits for slots that
        another release removed."""
        stored, self.live_versions = claim_settings(conn, self.db, self.queue_names, utcnow(),
                                                    self.app.settings.takeover_timeout)
        refreshed = []
        for queue in self.queues:
            row = stored.get(queue.name)
            if row is None:
                refreshed.append(queue)
                continue
            rate = ((row["rate_limit"], row["rate_period_s"])
                    if row["rate_limit"] is not None else None)
            coded = self.app.queues.get(queue.name, queue)
            effective = dataclasses.replace(
                queue, concurrency=row["concurrency"],
                worker_concurrency=row["worker_concurrency"], rate_limit=rate)
            differs = (coded.concurrency, coded.worker_concurrency, coded.rate_limit) != (
                effective.concurrency, effective.worker_concurrency, effective.rate_limit)
            if differs and queue.name not in self._warned_definitions:
                self._warned_definitions.add(queue.name)
                logger.bind(component="dispatch").warning(
                    "queue {!r} is declared in the database with concurrency={}, "
                    "worker_concurrency={}, rate_limit={} but this worker's code says "
                    "concurrency={}, worker_concurrency={}, rate_limit={}; claiming by the "
                    "database's definition (the last worker to start declared it). Deploy one "
                    "definition to every worker", queue.name, effective.concurrency,
                    effective.worker_concurrency, effective.rate_limit, coded.concurrency,
                    coded.worker_concurrency, coded.rate_limit)
            elif not differs:
                self._warned_definitions.discard(queue.name)
            refreshed.append(effective)
        self.queues = refreshed

    def _poll(self, conn: psycopg.Connection, now: float) -> bool:
        """Look for waiting runs; return whether one is ready to start."""
        self._refresh_definitions(conn)
        period = self.app.settings.poll_interval
        wall = clock.latest()
        found = peek(conn, self.db, self.queue_names, self.names, wall)
        ready = {name for name, waiting in found.items() if waiting.ready}
        self.ready |= ready
        self.suspects = {name for name, waiting in found.items() if waiting.suspects}
        self.blocked = bool(ready)
        if self.listening and not self.blocked and not self.suspects:
            period *= IDLE_POLL_FACTOR
        self.next_poll = now + period * random.uniform(0.8, 1.2)
        self.next_due = self._monotonic_due(
            [w.next_due for w in found.values() if w.next_due is not None], wall, now
        )
        return bool(ready) or bool(self.suspects)

    def _fold_expected(self, now: float) -> None:
        wall = utcnow().timestamp()  # the times in NOTIFYs are on the database clock
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
        if not self.lease.fresh():
            deadlines.append(now + 0.2)  # claim again soon after the lease is renewed
        return max(0.0, min([self.next_poll - now, *[d - now for d in deadlines]]))

    def _capacity(self) -> int:
        return self.concurrency - len(self.running)

    # -- a round -----------------------------------------------------------------------------

    def _take(self) -> None:
        """Move what threads and timeouts reported into the pending lists, freeing the
        capacity of returned threads: this round's claims may use it."""
        seen = {o.workflow_id for o in self.unwritten}
        while self.timeouts:
            outcome = self.timeouts.popleft()
            if outcome.workflow_id not in seen:
                seen.add(outcome.workflow_id)
                self.unwritten.append(outcome)
        while self.outcomes:
            outcome = self.outcomes.popleft()
            running = self.running.get(outcome.workflow_id)
            if running is None or running.token != outcome.token:
                continue
            self._forget(outcome.workflow_id, running)
            self.unreleased.append(outcome.workflow_id)
            if running.abandoned:
                logger.bind(component="run").info(
                    "{} {}: the thread of its cancelled attempt returned after {:.2f}s; its "
                    "capacity is free again", outcome.workflow_id, running.name,
                    time.monotonic() - running.started)
            elif outcome.workflow_id not in seen:
                seen.add(outcome.workflow_id)
                self.unwritten.append(outcome)
                self._log_info[outcome.workflow_id] = running

    def _round(self, conn: psycopg.Connection, claim_more: bool) -> int:
        # Queues whose claim stays in the round: those this worker runs something of, and
        # those with a fleet-wide limit (the round's finishes may free their slots, and a
        # rate-limited claim takes its lock in queue order with the round's other claims).
        kept = {name for name, count in self.per_queue.items() if count > 0} | self.limited
        self._take()
        writes, returned = list(self.unwritten), list(self.unreleased)
        plan = self._plan() if claim_more and self.lease.fresh() else []
        # Any other queue (recovered runs aside: they are claimed alone) has its claim commit
        # on its own first, so the job starts without waiting for the rest of the round (a
        # batch of finishes and claims of the busy queues): a job on an idle queue beside a
        # backlog waits for the round in flight and one short claim, not a full round more.
        # The split costs a commit only in such rounds.
        express = [share for share in plan if not share[2] and share[0].name not in kept]
        claimed = 0
        if express and (writes or returned or len(express) < len(plan)):
            claimed += self._transaction(conn, [], [], express)
            plan = [share for share in plan if share not in express]
        return claimed + self._transaction(conn, writes, returned, plan)

    def _transaction(self, conn: psycopg.Connection, writes: list[Outcome],
                     returned: list[str], plan: list[tuple[Queue, int, bool]]) -> int:
        """Write ``writes``, release ``returned`` and claim by ``plan`` in one transaction
        and one round trip; start what was claimed. Returns how many runs started."""
        notes = Counter(self.notes)  # NOTIFYs seen before the claims are sent
        results: list[tuple[Queue, int, bool, list[dict[str, Any]]]] = []
        if writes or returned or plan:
            started = time.perf_counter()
            now = clock.latest()
            finished = None
            statements = bool(writes or returned) + sum(
                lifecycle.claim_statements(q) for q, _, _ in plan)
            with conn.pipeline() if statements > 1 else contextlib.nullcontext():
                if writes or returned:
                    finished = lifecycle.send_finish(conn, self.db, writes, returned=returned,
                                                     worker_id=self.worker_id, now=now)
                # In queue-name order, whatever the rotation: a rate-limited claim holds
                # its queue's advisory lock until the round commits, and two workers
                # taking two such locks in opposite orders would deadlock.
                cursors = [
                    (queue, want, suspect,
                     lifecycle.send_claim(conn, self.db, queue, want, worker_id=self.worker_id,
                                          names=self.names, now=now, suspect=suspect,
                                          version=self.version,
                                          live_versions=self.live_versions))
                    for queue, want, suspect in sorted(plan, key=lambda share: share[0].name)
                ]
            results = [(queue, want, suspect, cursor.fetchall())
                       for queue, want, suspect, cursor in cursors]
            if finished is not None:
                recorded = {row["id"] for row in finished.fetchall()}
                self._report(writes, recorded)
                self.unwritten, self.unreleased = [], []
                self.expected.extend(o.not_before.timestamp() for o in writes
                                     if o.status == "ENQUEUED" and o.not_before is not None)
            if plan:
                self.metrics.claim_latency.observe(time.perf_counter() - started)
        claimed = 0
        for queue, want, suspect, rows in results:
            if len(rows) < want and self.notes[queue.name] == notes[queue.name]:
                (self.suspects if suspect else self.ready).discard(queue.name)
            for row in rows:
                self._start(queue, row)
            claimed += len(rows)
        return claimed

    def _isolate_outcomes(self, conn: psycopg.Connection) -> psycopg.Connection:
        """A round failed for a reason a retry cannot fix. Write each pending outcome on its
        own; one the database still refuses becomes that run's ``SerializationError``, so a
        single bad value never blocks the other runs or the claims. Returns the connection
        to go on with."""
        for outcome in list(self.unwritten):
            try:
                recorded = lifecycle.finish(conn, self.db, [outcome], worker_id=self.worker_id,
                                            now=utcnow())
            except Exception as exc:
                if is_transient(exc):
                    return conn  # the next round, after a reconnect, writes the rest
                conn = self._fresh(conn)
                failure = SerializationError(
                    f"the outcome of run {outcome.workflow_id} could not be stored: "
                    f"{_brief(exc)}. Return and raise only values JSON (jsonb) can hold")
                outcome = dataclasses.replace(outcome, status="ERROR", output=None,
                                              error=error_json(failure), not_before=None)
                recorded = lifecycle.finish(conn, self.db, [outcome],
                                            worker_id=self.worker_id, now=utcnow())
            self.unwritten = [o for o in self.unwritten if o.workflow_id != outcome.workflow_id]
            self._report([outcome], recorded)
        lifecycle.release(conn, self.db, self.unreleased, worker_id=self.worker_id,
                          now=utcnow())
        self.unreleased = []
        return conn

    def _fresh(self, conn: psycopg.Connection) -> psycopg.Connection:
        """``conn`` if a failed statement left it usable, else a new one."""
        if not conn.closed and not conn.broken:
            return conn
        conn.close()
        return self._connect()

    def _report(self, writes: list[Outcome], recorded: set[str]) -> None:
        """Log what became of each run, once the database has it (or refused it), and tell
        the alarm when each run parked here comes due."""
        for outcome in writes:
            if (self.on_park is not None and outcome.wake_at is not None
                    and outcome.status == "WAITING" and outcome.workflow_id in recorded):
                self.on_park(outcome.wake_at)
            running = self._log_info.pop(outcome.workflow_id, None)
            log_outcome(outcome, running, recorded=outcome.workflow_id in recorded,
                        now=utcnow())
            if running is not None:
                self.metrics.finished(running.queue, running.name, outcome.status,
                                      time.monotonic() - running.started)

    def _plan(self) -> list[tuple[Queue, int, bool]]:
        """Share the free capacity among the ready queues, one unit at a time starting at a
        rotating queue, so that no queue starves another and the shares never add up to more
        than this worker may run.

        While runs recovered from a crashed worker wait, claim nothing new: once this worker
        runs nothing, it claims one of them alone, so a run that crashes its worker is
        charged for it and the runs that happened to share a worker with it are not."""
        if any(r.isolated for r in self.running.values()):
            return []
        if self.suspects:
            if self.running:
                return []
            name = sorted(self.suspects)[0]
            queue = next(q for q in self.queues if q.name == name)
            return [(queue, 1, True)]
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
        return [(self.queues[index], share, False)
                for index, share in shares.items() if share > 0]

    def _start(self, queue: Queue, row: dict[str, Any]) -> None:
        token = str(row["attempt_token"])
        timeout = row["timeout_s"]
        now = time.monotonic()
        self.running[row["id"]] = Running(
            queue.name, token, row["name"], now, now + timeout if timeout else None,
            attempt=row["attempts"], max_attempts=row["max_attempts"],
            isolated=bool(row.get("isolated")),
        )
        self.per_queue[queue.name] += 1
        self.metrics.start(queue.name, row["name"])
        spec = self.app.registry.workflows[row["name"]]

        def task() -> None:
            outcome = Outcome(row["id"], token, "LOST")
            try:
                outcome = execute_claimed(self.db, spec, row, worker_id=self.worker_id,
                                          queue=queue.name)
            finally:
                self._done(outcome)  # whatever happened, the thread and capacity come back

        self.executor.submit(task)

    def _forget(self, workflow_id: str, running: Running) -> None:
        del self.running[workflow_id]
        self.per_queue[running.queue] -= 1
        queue = self.app.queues.get(running.queue)
        if queue is not None and queue.concurrency is not None:
            # The slot it held is free again, and this round's claim may reuse it.
            self.ready.add(running.queue)

    def _expire(self, now: float) -> None:
        """Cancel runs past their timeout. A thread cannot be killed: the run is CANCELLED
        at once (its descendants too, and its late writes are fenced), while the thread keeps
        its capacity and queue slot until it returns, so a queue's limit counts it."""
        for workflow_id, running in list(self.running.items()):
            if running.deadline is not None and now >= running.deadline:
                limit = running.deadline - running.started
                error = error_json(JobTimeout(f"cancelled after its timeout of {limit:g}s"))
                self.timeouts.append(Outcome(workflow_id, running.token, "CANCELLED",
                                             error=error, release=False))
                self._log_info[workflow_id] = running
                running.deadline = None
                running.abandoned = True
                self.wake.set()

    def handback(self, ids: list[str]) -> int:
        """Return unfinished runs to their queues so live workers take them at once."""
        if not ids:
            return 0
        with self.db.connection() as conn:
            return len(lifecycle.handback(conn, self.db, ids, worker_id=self.worker_id,
                                          now=utcnow()))


def _brief(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__

