"""A worker's lease on the runs it claimed: its heartbeat.

Other workers take a worker's runs over once its heartbeat is older than the takeover
timeout on the database clock. So a worker claims only while it can prove a recent
heartbeat: measured from when the last successful heartbeat was *sent*, on this process's
monotonic clock, with a margin for the statement's own delay. A worker that was paused
(SIGSTOP), cut off or starved stops claiming at once, and claims again only after its
heartbeat (which re-registers it if it was declared dead) succeeds.
"""

from __future__ import annotations

import threading
import time

#: Claim only while the last heartbeat is younger than this share of the takeover timeout.
MARGIN = 0.75


class Lease:
    def __init__(self, takeover_timeout: float | None) -> None:
        """``None``: a lease that never lapses, for in-process runners that no other
        worker can take runs from (``pgsched.testing``) and for driving a dispatcher by hand."""
        self.limit = None if takeover_timeout is None else takeover_timeout * MARGIN
        self._sent_at: float | None = None
        self._lock = threading.Lock()

    def renewed(self, sent_at: float) -> None:
        """A heartbeat sent at ``sent_at`` (``time.monotonic()``) succeeded."""
        with self._lock:
            if self._sent_at is None or sent_at > self._sent_at:
                self._sent_at = sent_at

    def lost(self) -> None:
        """The database no longer knows this worker: claim nothing until it re-registers."""
        with self._lock:
            self._sent_at = None

    def age(self) -> float | None:
        """Seconds since the last successful heartbeat was sent (None: none since a loss)."""
        sent = self._sent_at
        return None if sent is None else time.monotonic() - sent

    def fresh(self) -> bool:
        if self.limit is None:
            return True
        age = self.age()
        return age is not None and age < self.limit
