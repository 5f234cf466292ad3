"""Periodic retention: deletes finished runs older than ``PGSCHED_PRUNE_OLDER_THAN`` seconds.

Every worker runs this loop, but each batch first takes a transaction-scoped advisory lock
with ``pg_try_advisory_xact_lock``: while one worker prunes, the others skip their round
instead of competing for the same rows.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from loguru import logger

from pgsched.clock import utcnow
from pgsched.operations import prune_batch
from pgsched.worker.loops import jittered

if TYPE_CHECKING:
    from pgsched.app import App

#: Rounds are about an hour apart: retention is measured in days, so an hour of slack is
#: invisible, and a jittered hour keeps the fleet from pruning in lockstep.
INTERVAL_S = 3600.0
BATCH_SIZE = 1000
#: Batches per round before yielding to the loop thread (so a stopping worker is not held
#: up by a large backlog); the next round follows almost at once.
BATCHES_PER_ROUND = 50


class Pruner:
    name = "prune"
    max_backoff = 60.0

    def __init__(self, app: App, older_than_seconds: float) -> None:
        self.app = app
        self.older_than = timedelta(seconds=older_than_seconds)

    def run_once(self) -> float:
        cutoff = utcnow() - self.older_than
        total = 0
        for _ in range(BATCHES_PER_ROUND):
            deleted = prune_batch(self.app.db, cutoff, BATCH_SIZE, exclusive=True)
            if deleted is None:
                logger.bind(component=self.name).debug("another worker is pruning; skipping")
                return jittered(INTERVAL_S)
            total += deleted
            if deleted < BATCH_SIZE:
                break
        else:
            logger.bind(component=self.name).info("pruned {} run(s); more to go", total)
            return 1.0
        if total:
            logger.bind(component=self.name).info(
                "pruned {} run(s) finished before {}", total, cutoff
            )
        return jittered(INTERVAL_S)
