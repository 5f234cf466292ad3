"""A bounded pool of daemon threads for running workflow code.

Daemon threads, unlike ``ThreadPoolExecutor``'s, never keep a stopping worker alive: work
still running after the grace period is handed back in the database and the process exits.
A thread outlives anything a task raises, ``BaseException`` included (``sys.exit()`` in a
job would otherwise end the thread and shrink the pool for good).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from loguru import logger


class Executor:
    def __init__(self, size: int) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        for index in range(size):
            threading.Thread(target=self._work, name=f"pgsched-run-{index}", daemon=True).start()

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            try:
                task()
            except BaseException:  # noqa: B036 - the thread must survive its task
                logger.bind(component="executor").exception("a run's thread raised")

    def submit(self, task: Callable[[], None]) -> None:
        self._tasks.put(task)
