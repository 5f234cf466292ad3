"""The worker's one LISTEN connection: an enqueue anywhere wakes this worker at once.

Besides the queue names that NOTIFY carries, the listener reports its own state to the
dispatcher as two payloads no queue name can take (queue names allow no '<'): the dispatcher
polls often while nobody listens, and looks at every queue once a connection (re)opens,
because notifications sent while it was down are lost.

The thread never gives up: whatever ends a connection (a restart, a full server, a half-open
socket that TCP keepalives expose), it reconnects with a backoff capped at ``MAX_BACKOFF``.
``last_alive`` tells the health server the loop still turns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from loguru import logger
from psycopg import sql

from pgsched.db import Database

CONNECTED = "<connected>"
DISCONNECTED = "<disconnected>"

#: The longest pause between two reconnects: start latency recovers within it.
MAX_BACKOFF = 5.0


class Listener(threading.Thread):
    def __init__(
        self,
        db: Database,
        channel: str,
        on_notify: Callable[[str], None],
        stop: threading.Event,
        url: str | None = None,
    ) -> None:
        super().__init__(name="pgsched-listen", daemon=True)
        self.db = db
        self.channel = channel
        self.on_notify = on_notify
        self.stop = stop
        self.url = url
        self.connected = threading.Event()
        self.last_alive = time.monotonic()
        self.failures = 0

    def run(self) -> None:
        log = logger.bind(component="listen")
        delay = 0.25
        while not self.stop.is_set():
            try:
                with self.db.connect(autocommit=True, url=self.url) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.connected.set()
                    self.on_notify(CONNECTED)
                    if self.failures:
                        log.info("LISTEN connection is back after {} failure(s)", self.failures)
                    self.failures = 0
                    delay = 0.25
                    while not self.stop.is_set():
                        self.last_alive = time.monotonic()
                        # Waiting here reads the socket only: an idle worker sends nothing.
                        for note in conn.notifies(timeout=1.0):
                            self.on_notify(note.payload)
            except Exception as exc:
                self.connected.clear()
                self.on_notify(DISCONNECTED)
                if self.stop.is_set():
                    return  # the worker is stopping and closed the server under us
                self.failures += 1
                if self.failures == 1 or self.failures % 20 == 0:
                    log.warning("LISTEN connection lost ({}: {}); polling until it is back "
                                "(failure {})", type(exc).__name__,
                                str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                                self.failures)
                self.last_alive = time.monotonic()
                self.stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
        self.connected.clear()
