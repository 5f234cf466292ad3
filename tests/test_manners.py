"""pgsched's manners on a database it shares with the application: its sessions say who they
are in ``pg_stat_activity``, the claim loop never waits long for a lock, and nothing pgsched
sets limits the user's own transaction steps."""

from __future__ import annotations

import psycopg

from pgsched.db.database import CLAIM_LOCK_TIMEOUT_MS
from tests.conftest import Workers
from tests.waiting import wait_for


def test_a_workers_connections_carry_its_id_in_pg_stat_activity(
        make_app, workers: Workers, sql) -> None:
    make_app().migrate()
    workers.start("core_app.py")
    workers.wait_registered(sql, 1)
    worker_id = sql("SELECT id FROM workers")[0][0]

    def sessions() -> int:
        return sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                   (worker_id,))[0][0]

    # The claim loop, the heartbeat, the pool's first connection and the listener at least.
    wait_for(lambda: sessions() >= 4, 30, what="the worker's sessions", logs=workers.logs)


def test_client_sessions_are_named_pgsched(make_app) -> None:
    app = make_app()
    with app.db.connection() as conn:
        assert conn.execute("SHOW application_name").fetchone() == {"application_name":
                                                                     "pgsched"}


def test_only_the_claim_loop_gets_a_lock_timeout(make_app, database_url: str) -> None:
    """A transaction step runs on a pooled connection: no lock_timeout, no statement_timeout
    from pgsched. The claim loop's connection gives up on a lock after a few seconds."""
    app = make_app()
    with app.db.connection() as conn:
        row = conn.execute("SELECT current_setting('lock_timeout') AS lock, "
                           "current_setting('statement_timeout') AS statement").fetchone()
    assert row == {"lock": "0", "statement": "0"}
    with app.db.connect(claiming=True) as conn:
        assert conn.execute("SHOW lock_timeout").fetchone() == {
            "lock_timeout": f"{CLAIM_LOCK_TIMEOUT_MS // 1000}s"}


def test_the_claim_loop_keeps_the_urls_own_options(make_app, database_url: str) -> None:
    joiner = "&" if "?" in database_url else "?"
    url = f"{database_url}{joiner}options=-c%20statement_timeout%3D7000"
    app = make_app(database_url=url)
    with app.db.connect(claiming=True) as conn:
        row = conn.execute("SELECT current_setting('lock_timeout') AS lock, "
                           "current_setting('statement_timeout') AS statement").fetchone()
    assert row == {"lock": f"{CLAIM_LOCK_TIMEOUT_MS // 1000}s", "statement": "7s"}


def test_a_claim_round_gives_up_on_a_held_lock_and_claims_after_it(
        load_app_module, workers: Workers, sql, database_url: str, schema: str) -> None:
    """An operator's open transaction holding pgsched's table: the worker's round fails with
    a lock timeout (and retries) instead of queueing behind it for as long as it lasts."""
    core = load_app_module("core_app.py")
    core.app.migrate()
    sql("CREATE TABLE calls (name text, detail text, pid int, at timestamptz)")
    handle = core.app.start(core.once, "after")
    with psycopg.connect(database_url) as blocker:
        # Reads go on (the worker sees the run), row locks and updates wait.
        blocker.execute(f'LOCK TABLE "{schema}".workflows IN EXCLUSIVE MODE')
        workers.start("core_app.py")
        wait_for(lambda: "lock timeout" in workers.logs(), 6 * CLAIM_LOCK_TIMEOUT_MS / 1000,
                 what="the claim round to give up on the lock", logs=workers.logs)
        blocker.rollback()
    assert handle.result(timeout=30) == "ran:after"
