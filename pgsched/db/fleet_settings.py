"""Settings published to the database, where SQL (the operator views, ``pgsched workers``)
can read them.

Only what SQL needs goes here; everything else stays in each process's ``PGSCHED_*``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pgsched.clock import utcnow

if TYPE_CHECKING:
    import psycopg

    from pgsched.db.database import Database
    from pgsched.settings import Settings


def publish(db: Database, settings: Settings) -> None:
    """Store this worker's takeover timeout for the ``stuck_runs`` and ``waiting_for_worker``
    views. A fleet shares one value; if workers disagree, the last one started wins."""
    with db.connection() as conn:
        conn.execute(db.sql("fleet_setting_upsert"),
                     {"name": "takeover_timeout_s", "value": repr(settings.takeover_timeout),
                      "now": utcnow()})


def publish_connections(conn: psycopg.Connection, db: Database, worker_id: str, *,
                        pool: int, dedicated: int) -> None:
    """Store the most connections this worker may open, its pool's size and those it opens
    outside the pool, under ``connections/<worker id>`` for ``pgsched workers``: only the
    worker knows its own settings. Written with its registration, on the same connection,
    so a worker that registers again after being declared dead publishes again; entries of
    workers that are gone are removed, so there are never more than the workers' rows."""
    conn.execute(db.sql("fleet_setting_upsert"),
                 {"name": f"connections/{worker_id}",
                  "value": json.dumps({"pool": pool, "dedicated": dedicated}),
                  "now": utcnow()})
    conn.execute(db.sql("fleet_connections_prune"))
