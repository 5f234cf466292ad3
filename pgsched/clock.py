"""The one clock that scheduling decisions read: the database's, as seen from this process.

Every time that two processes compare — a run's not-before time, a rate-limit window, a cron
tick's due time and high-water mark — comes from ``utcnow()`` and is passed into SQL as a
parameter. ``utcnow()`` is this machine's clock corrected by its measured offset to the
database clock, so a worker whose clock is 20 s fast neither runs a tick early nor starts a
delayed job before its time, and one that is slow neither drops ticks nor holds jobs back.
The offset is measured on every heartbeat, and by a process with no heartbeat on its first
pooled connection and again once its last sample is a minute old (``stale``), from the
database's ``clock_timestamp()`` and the local time halfway through the round trip.

A sample's round trip bounds its error, and on a busy worker a heartbeat's round trip is
inflated by the GIL and the run queue, not by the network. So, as NTP's clock filter does,
the offset comes from the best of the last few samples, not from the newest: one slow
heartbeat neither moves the offset nor widens the margin claims add (``latest``). A sample
that cannot be true together with the best one (their error bounds do not overlap) means a
clock was stepped; it replaces the history at once.

Under freezegun the frozen time is used as it is, with no offset: a test drives the clock.
Liveness (heartbeats, takeover) compares times on the database clock directly, in SQL.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from loguru import logger

#: The real class, kept in a tuple: freezegun swaps module attributes that are ``datetime``
#: for its own class while time is frozen, but not values inside containers.
_REAL = (datetime,)

#: Above this, a worker's clock is worth a warning: fix NTP on that machine.
WARN_OFFSET = timedelta(seconds=1)
#: Samples whose round trip took longer say little about the offset.
MAX_ROUND_TRIP = 0.25

#: Never trust an offset to better than this, however fast the sample's round trip.
MIN_UNCERTAINTY = timedelta(milliseconds=2)
#: Samples the offset is chosen from: at a 5 s heartbeat, the last 40 seconds.
SAMPLES = 8
#: A process with no heartbeat (one that only enqueues) measures again on its next pooled
#: connection once its last sample is this old, so a clock stepped after its pool opened is
#: followed within a minute, at once for a step larger than this.
REFRESH = timedelta(seconds=60)
#: How fast two machines' clocks may drift apart (quartz is within 100 ppm): a sample's error
#: bound grows by this much per second of its age.
DRIFT = 1e-4


@dataclass(frozen=True)
class Sample:
    """One measurement: the database clock was ``offset`` ahead, give or take ``error``
    (half the round trip), at the local time ``at``."""

    offset: timedelta
    error: timedelta
    at: datetime

    def error_at(self, now: datetime) -> timedelta:
        """The error bound at local time ``now``, the drift since the sample included."""
        return self.error + abs(now - self.at) * DRIFT


_offset = timedelta(0)
_uncertainty = MIN_UNCERTAINTY
_samples: deque[Sample] = deque(maxlen=SAMPLES)
_observed_at: datetime | None = None  # local time of the last sample, kept or not
_warned = False
_lock = threading.Lock()


def local_now() -> datetime:
    """This machine's clock (the frozen time under freezegun): every read of it in pgsched
    goes through here."""
    return datetime.now(timezone.utc)


def utcnow() -> datetime:
    """Now on the database clock (the frozen time under freezegun)."""
    now = local_now()
    if type(now) is not _REAL[0]:  # freezegun's FakeDatetime: the test owns time
        return now
    return now + _offset


def latest() -> datetime:
    """The latest time the database clock may show now, given how well the offset is known.

    Claims compare due times with this: a run enqueued for "now" carries the enqueuer's
    estimate of the database time, and a worker whose own estimate is a millisecond behind
    would otherwise find nothing due, right after the NOTIFY that announced the run."""
    now = utcnow()
    return now if type(now) is not _REAL[0] else now + _uncertainty


def stale() -> bool:
    """Whether to measure before the next statement: no sample yet, or the last one is older
    than ``REFRESH`` by this machine's clock (never under freezegun)."""
    now = local_now()
    return type(now) is _REAL[0] and (_observed_at is None or abs(now - _observed_at) > REFRESH)


def _frozen() -> bool:
    return type(local_now()) is not _REAL[0]


def offset() -> timedelta:
    """How far the database clock is ahead of this machine's (negative: behind)."""
    return _offset


def measure(conn: Any) -> timedelta | None:
    """Measure the offset to the database clock on ``conn`` and use it from now on.

    Returns the offset in use after it (see ``observe``), or None when the round trip was too
    slow to tell (or time is frozen, when no offset applies)."""
    if _frozen():
        return None
    sent = local_now()
    row = conn.execute("SELECT clock_timestamp() AS db_now").fetchone()
    received = local_now()
    db_now = row["db_now"] if isinstance(row, dict) else row[0]
    return observe(db_now, sent, received)


def observe(db_now: datetime, sent: datetime, received: datetime) -> timedelta | None:
    """Take one sample: the database said ``db_now`` between the local times ``sent`` and
    ``received`` (both read with ``local_now``).

    Returns the offset in use after it, or None when the round trip was too slow to tell."""
    global _offset, _uncertainty, _observed_at, _warned
    if _frozen():
        return None
    _observed_at = received  # a slow sample too: a slow network is not measured every time
    trip = received - sent
    if trip > timedelta(seconds=MAX_ROUND_TRIP):
        return None
    sample = Sample(offset=db_now - (sent + trip / 2), error=trip / 2, at=sent + trip / 2)
    with _lock:
        if _samples:
            best = _best(received)
            if abs(sample.offset - best.offset) > sample.error + best.error_at(received):
                _samples.clear()  # both cannot be true: a clock was stepped
        _samples.append(sample)
        best = _best(received)
        _offset = best.offset
        _uncertainty = max(MIN_UNCERTAINTY, best.error_at(received)) * 2
        off = abs(_offset) > WARN_OFFSET
        if off and not _warned:
            logger.bind(component="clock").warning(
                "this machine's clock is {:+.3f}s off the database's; pgsched uses the "
                "database's time for schedules, delays and rate limits, but fix the clock "
                "(NTP) on this machine", -_offset.total_seconds())
        _warned = off
        return _offset


def _best(now: datetime) -> Sample:
    """The kept sample with the smallest error bound at local time ``now``."""
    return min(_samples, key=lambda sample: sample.error_at(now))
