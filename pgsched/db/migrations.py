"""Versioned schema migrations, applied under a transaction-scoped advisory lock.

Ten workers starting at once all call ``migrate``; the lock makes one of them apply the
pending files and the others wait, then find nothing to do. There is no path that migrates
without the lock.
"""

from __future__ import annotations

import psycopg
from loguru import logger
from psycopg import sql

from pgsched.db.database import Database
from pgsched.db.sqlfiles import migration_names, render
from pgsched.errors import SchemaOutdated

_LOCK_NAMESPACE = "pgsched.migrate:"


def latest_version() -> int:
    return int(migration_names()[-1].split("_", 1)[0])


def _lock(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_LOCK_NAMESPACE + schema,)
    )


def current_version(conn: psycopg.Connection, schema: str) -> int:
    """0 when the schema has never been migrated. Expects a dict_row connection."""
    table = conn.execute(
        "SELECT to_regclass(format('%%I.schema_migrations', %s::text)) AS t", (schema,)
    ).fetchone()
    if table is None or table["t"] is None:
        return 0
    found = conn.execute(
        sql.SQL("SELECT coalesce(max(version), 0) AS v FROM {}.schema_migrations").format(
            sql.Identifier(schema)
        )
    ).fetchone()
    return int(found["v"]) if found else 0


def migrate(db: Database) -> list[int]:
    """Apply pending migrations; return the versions this call applied."""
    log = logger.bind(component="migrate")
    applied: list[int] = []
    with db.connect() as conn:
        with conn.transaction():
            _lock(conn, db.schema)
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(db.schema))
            )
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.schema_migrations ("
                    "version integer PRIMARY KEY, name text NOT NULL, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(sql.Identifier(db.schema))
            )
            version = current_version(conn, db.schema)
            if version > latest_version():
                raise SchemaOutdated(
                    f"schema {db.schema!r} is at version {version} but this pgsched knows only "
                    f"up to {latest_version()}; upgrade pgsched on this machine"
                )
            for name in migration_names():
                number = int(name.split("_", 1)[0])
                if number <= version:
                    continue
                conn.execute(render("migrations", name, db.schema))
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.schema_migrations (version, name) VALUES (%s, %s)"
                    ).format(sql.Identifier(db.schema)),
                    (number, name),
                )
                applied.append(number)
    if applied:
        log.info("schema {} migrated to version {}", db.schema, applied[-1])
    return applied


def check_version(db: Database) -> int:
    """Raise unless the schema is exactly at the version this code expects."""
    with db.connection() as conn:
        version = current_version(conn, db.schema)
    if version != latest_version():
        raise SchemaOutdated(
            f"schema {db.schema!r} is at version {version}, this pgsched expects "
            f"{latest_version()}; run `pgsched migrate`"
        )
    return version
