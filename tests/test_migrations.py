"""Migrations: concurrent, idempotent, in any schema name."""

from __future__ import annotations

import subprocess
import sys

import psycopg

from pgsched.db.migrations import latest_version


def test_eight_processes_migrating_at_once_all_succeed_once(env, sql):
    procs = [
        subprocess.Popen([sys.executable, "-m", "pgsched", "migrate"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    results = [(p.wait(60), p.stderr.read()) for p in procs]
    assert [code for code, _ in results] == [0] * 8, results
    versions = sql("SELECT version FROM schema_migrations ORDER BY version")
    assert versions == [(v,) for v in range(1, latest_version() + 1)]


def test_migrate_is_idempotent_and_the_schema_name_is_quoted(make_app, database_url):
    app = make_app(PGSCHED_SCHEMA="jobs_for_test")
    try:
        first = app.migrate()
        assert first == list(range(1, latest_version() + 1))
        assert app.migrate() == []
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute('DROP SCHEMA IF EXISTS "jobs_for_test" CASCADE')
