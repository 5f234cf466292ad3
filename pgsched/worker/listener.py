"""The worker's one LISTEN connection: an enqueue anywhere wakes this worker at once.

Besides the queue names that NOTIFY carries, the listener reports its own state to the
dispatcher as two payloads no queue name can take (queue names allow no '<'): the dispatcher
polls often while nobody listens, and looks at every queue once a connection (re)opens,
because notifications sent while it was down are lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
from loguru import logger
from psycopg import sql

from pgsched.db import Database

CONNECTED = "<connected>"
DISCONNECTED = "<disconnected>"


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

    def run(self) -> None:
        log = logger.bind(component="listen")
        delay = 0.5
        while not self.stop.is_set():
            try:
                with self.db.connect(autocommit=True, url=self.url) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.connected.set()
                    self.on_notify(CONNECTED)
                    delay = 0.5
                    while not self.stop.is_set():
                        # Waiting here reads the socket only: an idle worker sends nothing.
                        for note in conn.notifies(timeout=1.0):
                            self.on_notify(note.payload)
            except (psycopg.Error, OSError) as exc:
                self.connected.clear()
                self.on_notify(DISCONNECTED)
                log.warning("LISTEN connection lost ({!r}); polling until it is back", exc)
                self.stop.wait(delay)
                delay = min(delay * 2, 30.0)
