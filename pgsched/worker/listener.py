"""The worker's one LISTEN connection: an enqueue anywhere wakes this worker at once."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
from loguru import logger
from psycopg import sql

from pgsched.db import Database


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
                    delay = 0.5
                    while not self.stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self.on_notify(note.payload)
            except (psycopg.Error, OSError) as exc:
                self.connected.clear()
                log.warning("LISTEN connection lost ({!r}); polling until it is back", exc)
                self.stop.wait(delay)
                delay = min(delay * 2, 30.0)
