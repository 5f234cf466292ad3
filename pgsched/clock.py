"""The one clock that scheduling decisions read.

Every not-before time, backoff, tick and jitter comes from ``utcnow()`` and is passed into SQL
as a parameter, so freezegun controls all of them in tests. Liveness mechanics (heartbeats,
takeover) deliberately use the database clock instead: they compare times written by
different machines and must keep running while a test freezes Python's clock.
"""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
