"""The worker's log line for each run, the first place a user looks to see what happened.

One line per outcome, written once the database holds it: INFO for a success or a park
(WAITING: what the run waits for, until when), WARNING for a
retry (with when it will run) or a cancel, ERROR with the traceback for ERROR and DEAD. Each
line carries the run's id, workflow name, queue, outcome, duration and attempt, as text and
as fields in JSON logs.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from loguru import logger

from pgsched.lifecycle import Outcome

if TYPE_CHECKING:
    from pgsched.worker.dispatcher import Running

NOT_OWNED = ("this attempt no longer owns the run (cancelled, timed out or taken over by "
             "another worker)")


def log_outcome(outcome: Outcome, running: Running | None, *, recorded: bool,
                now: datetime) -> None:
    name = running.name if running else "?"
    fields: dict[str, Any] = {"run_id": outcome.workflow_id, "workflow": name,
                              "status": outcome.status}
    head = f"{outcome.workflow_id} {name}"
    tail = ""
    if running is not None:
        fields.update(queue=running.queue, attempt=running.attempt,
                      max_attempts=running.max_attempts,
                      duration_s=round(time.monotonic() - running.started, 3))
        tail = (f" {fields['duration_s']:.2f}s attempt {running.attempt}/{running.max_attempts}"
                f" queue {running.queue}")
    log = logger.bind(component="run", **fields)
    if outcome.status == "LOST":
        log.warning("{} stopped: {}; nothing recorded", head, NOT_OWNED)
        return
    if not recorded:
        log.warning("{} {}{}: not recorded, {}", head, outcome.status, tail, NOT_OWNED)
        return
    error = json.loads(outcome.error) if outcome.error else {}
    reason = f"{error.get('type', '')}: {error.get('message', '')}".strip(": ")
    if outcome.status == "SUCCESS":
        log.info("{} SUCCESS{}", head, tail)
    elif outcome.status == "ENQUEUED":
        when = ""
        if outcome.not_before is not None:
            wait = max(0.0, (outcome.not_before - now).total_seconds())
            when = f"; retrying at {outcome.not_before:%H:%M:%S} UTC (in {wait:.1f}s)"
        log.warning("{} failed{}: {}{}", head, tail, reason, when)
    elif outcome.status == "WAITING":
        waits = (f"for a message on {outcome.wait_topic!r}" if outcome.wait_topic
                 else "asleep")
        until = (f" until {outcome.wake_at:%Y-%m-%d %H:%M:%S} UTC" if outcome.wake_at
                 else "")
        log.info("{} WAITING{}: parked {}{}; no worker holds it meanwhile", head, tail,
                 waits, until)
    elif outcome.status == "CANCELLED":
        log.warning("{} CANCELLED{}: {}", head, tail, reason)
    else:
        log.error("{} {}{}: {}\n{}", head, outcome.status, tail, reason,
                  error.get("traceback", "").rstrip())
