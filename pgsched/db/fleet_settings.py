"""Settings published to the database, where SQL (the operator views) can read them.

Only what SQL needs goes here; everything else stays in each process's ``PGSCHED_*``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgsched.clock import utcnow

if TYPE_CHECKING:
    from pgsched.db.database import Database
    from pgsched.settings import Settings


def publish(db: Database, settings: Settings) -> None:
    """Store this worker's takeover timeout for the ``stuck_runs`` and ``waiting_for_worker``
    views. A fleet shares one value; if workers disagree, the last one started wins."""
    with db.connection() as conn:
        conn.execute(db.sql("fleet_setting_upsert"),
                     {"name": "takeover_timeout_s", "value": repr(settings.takeover_timeout),
                      "now": utcnow()})
