"""Waking idle workers after an enqueue has committed, without serializing the enqueues.

PostgreSQL serializes the commits of transactions that sent a NOTIFY: ``PreCommit_Notify``
takes a database-wide lock and holds it until the commit is durable, so a NOTIFY inside
every enqueue's transaction makes concurrent producers take turns at the WAL flush (measured
with pgsched's own statement: 8 clients ran the insert-and-notify statement at 1,333-1,470/s
and the same insert without the notify at 3,749-4,202/s). A transaction that sends a NOTIFY
and writes nothing else has an XID but no WAL of its own, so it commits without waiting for
a flush and holds that lock for microseconds only.

So an enqueue on a pooled connection inserts its row (its own durable commit, which can
share a WAL flush with other producers), and then hands the queue to this process's
``Waker``. The NOTIFY goes out in a write-free transaction of its own (the thread uses a
connection of its own: borrowing from the pool made the producer's next enqueue wait while
the pool grew, measured up to 0.5 s on a busy machine; it closes after ``IDLE_CLOSE`` idle):

* at once, if nothing was sent for the last ``WINDOW`` seconds: then the enqueue itself
  sends it on the connection that committed the insert, one more short round trip and no
  hand-off to the thread (``Waker.lead``), so an idle queue's job starts as fast as before;
* otherwise the thread sends it at the end of the window, one NOTIFY naming every queue
  that got runs meanwhile (a trailing notify: nothing enqueued is left unannounced, and a
  busy producer sends at most one NOTIFY statement per window instead of one per job).

Every NOTIFY leaves after the commit of each run it announces, so a worker that hears it
finds the row. At interpreter exit the pending wake-ups are flushed (a script that enqueues
and exits still wakes the fleet); a process killed between the insert and the flush leaves
its runs to the workers' periodic poll, the same fallback as a lost LISTEN connection.

An enqueue inside the caller's transaction (``conn=``) cannot use this: only the caller
knows when it commits, so its NOTIFY stays in that transaction (``enqueue.sql``).

Like the connection pool's own threads, this thread belongs to the producer process; it is
started on the first enqueue, is a daemon, and is started again in a forked child.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

import psycopg
from loguru import logger

if TYPE_CHECKING:
    from pgsched.db import Database

#: The shortest spacing of two NOTIFY statements from one process: the longest a wake-up
#: waits behind the previous one. Short enough to stay under a start-latency target of a few
#: milliseconds, long enough that a producer enqueueing thousands of jobs a second sends a
#: couple of hundred NOTIFYs, not thousands (each wakes every listening worker).
WINDOW = 0.005

#: A waker idle this long closes its connection (it reconnects on the next enqueue).
IDLE_CLOSE = 60.0

#: How long interpreter exit waits for the last wake-ups to be sent.
EXIT_FLUSH_TIMEOUT = 2.0


class Waker:
    """Sends the NOTIFYs of one database's committed enqueues from one thread."""

    def __init__(self, db: Database, window: float = WINDOW) -> None:
        self.db = db
        self.window = window
        self._cond = threading.Condition()
        #: queue -> what to announce: None (a run startable now) and/or the Unix time its
        #: earliest delayed run may start.
        self._pending: dict[str, frozenset[float | None]] = {}
        self._sending = False
        self._closed = False
        #: When the last NOTIFY left (time.monotonic), from the thread or a caller.
        self._last = float("-inf")
        self._thread = threading.Thread(target=self._run, name="pgsched-wake", daemon=True)
        self._thread.start()

    def lead(self) -> bool:
        """Whether the caller should send its wake-up itself, at once, on the connection that
        committed its insert: true for the first wake-up after a quiet window, which so
        costs one short round trip instead of a hand-off to the thread (start latency on an
        idle queue). A caller told so that then fails to send hands the wake-up to ``wake``.
        """
        now = time.monotonic()
        with self._cond:
            if self._pending or self._sending or now - self._last < self.window:
                return False
            self._last = now
            return True

    def wake(self, queue: str, at: float | None) -> None:
        """Announce that ``queue`` got a run (startable at Unix time ``at``, None: now) whose
        insert has committed; the thread sends it when the window since the last NOTIFY
        ends. Never blocks on the database."""
        with self._cond:
            if at is None:
                self._pending[queue] = self._pending.get(queue, frozenset()) | {None}
            else:
                # Of a queue's delayed runs only the earliest is announced: the poll a worker
                # makes at that time finds when the next one is due.
                known = self._pending.get(queue, frozenset())
                due = [t for t in known if t is not None]
                if not due or at < due[0]:
                    self._pending[queue] = frozenset({t for t in known if t is None} | {at})
            self._cond.notify()

    def flush(self, timeout: float) -> bool:
        """Wait until every wake-up handed over so far was sent; False on timeout."""
        # Condition.wait_for keeps time on threading's clock, which freezegun leaves alone.
        with self._cond:
            self._cond.notify()
            return self._cond.wait_for(
                lambda: not (self._pending or self._sending) or not self._thread.is_alive(),
                timeout) and not self._pending

    def close(self, timeout: float = EXIT_FLUSH_TIMEOUT) -> None:
        """Send what is pending, then stop the thread."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        with contextlib.suppress(Exception):  # connect now, while the first insert runs
            conn = self.db.connect(autocommit=True)
        try:
            while True:
                with self._cond:
                    if not self._pending and not self._closed and conn is not None:
                        # Idle: give the connection back to the server after a while.
                        if not self._cond.wait(IDLE_CLOSE) and not self._pending:
                            conn.close()
                            conn = None
                    while not self._pending and not self._closed:
                        self._cond.wait()
                    if not self._pending:
                        return
                    early = self._last + self.window - time.monotonic()
                if early > 0 and not self._closed:
                    # The window: what is enqueued meanwhile goes out in this one NOTIFY.
                    time.sleep(early)
                with self._cond:
                    batch, self._pending = self._pending, {}
                    self._sending = True
                try:
                    conn = self._send(conn, batch)
                finally:
                    with self._cond:
                        self._last = time.monotonic()
                        self._sending = False
                        self._cond.notify_all()
        finally:
            if conn is not None:
                conn.close()

    def _send(self, conn: psycopg.Connection | None,
              batch: dict[str, frozenset[float | None]]) -> psycopg.Connection | None:
        """Send one NOTIFY statement for ``batch``; returns the connection to keep."""
        from pgsched.queues import wake_payload_at

        payloads = sorted(wake_payload_at(queue, at) for queue, times in batch.items()
                          for at in times)
        for attempt in range(3):
            try:
                if conn is None or conn.closed:
                    conn = self.db.connect(autocommit=True)
                conn.execute(self.db.sql("wake"),
                             {"channel": self.db.channel, "payloads": payloads})
                return conn
            except Exception as exc:  # the workers' poll is the fallback; keep the thread
                if conn is not None:
                    conn.close()
                conn = None
                if attempt == 2:
                    logger.bind(component="enqueue").warning(
                        "could not wake the workers of queue(s) {} ({}: {}); they find the "
                        "run(s) at their next poll", ", ".join(sorted(batch)),
                        type(exc).__name__, str(exc).strip().splitlines()[:1])
                    return None
                time.sleep(0.05 * (attempt + 1))
        return None


_wakers: weakref.WeakKeyDictionary[Database, tuple[int, Waker]] = weakref.WeakKeyDictionary()
_registered: weakref.WeakSet[Database] = weakref.WeakSet()
_lock = threading.Lock()


def waker_for(db: Database) -> Waker:
    """This process's waker for ``db`` (a forked child gets its own: threads do not fork)."""
    pid = os.getpid()
    entry = _wakers.get(db)
    if entry is not None and entry[0] == pid:
        return entry[1]
    with _lock:
        entry = _wakers.get(db)
        if entry is None or entry[0] != pid:
            if db not in _registered:
                _registered.add(db)
                db.before_close.append(lambda: close_waker(db))
            entry = (pid, Waker(db))
            _wakers[db] = entry
        return entry[1]


def close_waker(db: Database) -> None:
    """Flush and stop ``db``'s waker, before its pool closes (``Database.close``)."""
    with _lock:
        entry = _wakers.pop(db, None)
    if entry is not None and entry[0] == os.getpid():
        entry[1].close()


@atexit.register
def _flush_at_exit() -> None:
    """A script that enqueues and exits still wakes the workers."""
    for pid, waker in list(_wakers.values()):
        if pid == os.getpid():
            waker.flush(EXIT_FLUSH_TIMEOUT)
