"""A bounded pool of daemon threads for running workflow code.

Daemon threads, unlike ``ThreadPoolExecutor``'s, never keep a stopping worker alive: work
still running after the grace period is handed back in the database and the process exits.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class Executor:
    def __init__(self, size: int) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        for index in range(size):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        threading.Thread(target=self._work, name=f"pgsched-run-{index}", daemon=True).start()

    def _work(self) -> None:
        while True:
            self._tasks.get()()

    def submit(self, task: Callable[[], None]) -> None:
        self._tasks.put(task)

    def replace_stuck_thread(self) -> None:
        """Add a thread for one that is stuck in a run this worker abandoned (timed out)."""
        self._spawn(-1)
