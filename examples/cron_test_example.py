"""How to test cron workflows with frozen time: a complete pytest file.

It shows: importing ``pgsched.testing`` before freezing time (so a database wait can never
hang), driving the clock with ``advance`` (scheduler pass + in-process execution at each due
instant), a single pass with ``run_scheduler`` + ``run_until_idle``, asserting which ticks ran
with which ``scheduled_at``, and what a paused schedule does. No sleeps, no worker process.

Run it: `pytest examples/cron_test_example.py`
With no PGSCHED_DATABASE_URL pgsched starts its embedded server; set the URL (and
PGSCHED_SCHEMA to pick a schema) to test against your own PostgreSQL.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from freezegun import freeze_time

import pgsched
from pgsched.testing import advance, run_scheduler, run_until_idle  # before freeze_time()

# --- the application under test -------------------------------------------------------------

app = pgsched.App("billing")
reports = app.queue("reports", concurrency=1)
sent: list[datetime] = []


@app.cron("0 2 * * *", tz="Europe/Berlin", name="nightly-invoices")
def nightly_invoices(scheduled_at: datetime) -> int:
    sent.append(scheduled_at)
    return scheduled_at.day


@app.cron("*/15 * * * *", name="refresh-dashboard", queue="reports")
def refresh_dashboard(scheduled_at: datetime) -> str:
    return f"refreshed for {scheduled_at:%H:%M}"


# --- fixtures: a clean slate per test --------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_tables() -> Iterator[None]:
    """Runs and schedule state are rows: empty them so each test starts from nothing."""
    app.ensure_schema()
    with app.db.connection() as conn:
        conn.execute(psycopg.sql.SQL("TRUNCATE {}, {} CASCADE").format(
            psycopg.sql.Identifier(app.db.schema, "workflows"),
            psycopg.sql.Identifier(app.db.schema, "schedules")))
    sent.clear()
    yield
    app.close()


# --- the tests -----------------------------------------------------------------------------


def test_invoices_run_once_a_night_even_on_the_dst_night() -> None:
    with freeze_time("2026-03-27 12:00", tz_offset=0) as frozen:
        advance(frozen, app, until=timedelta(days=3))
    # 02:00 does not exist on 2026-03-29 in Berlin: the run is shifted to 03:00 CEST
    assert [at.isoformat() for at in sent] == [
        "2026-03-28T02:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:00:00+02:00",
    ]


def test_dashboard_refreshes_every_quarter_hour_on_its_queue() -> None:
    with freeze_time("2026-06-01 09:00", tz_offset=0) as frozen:
        runs = advance(frozen, app, until=timedelta(hours=1), queues=["reports"])
    assert [(r["queue"], r["output"]) for r in runs] == [
        ("reports", "refreshed for 09:00"),
        ("reports", "refreshed for 09:15"),
        ("reports", "refreshed for 09:30"),
        ("reports", "refreshed for 09:45"),
        ("reports", "refreshed for 10:00"),
    ]


def test_after_downtime_only_the_latest_missed_tick_runs() -> None:
    with freeze_time("2026-06-01 09:00", tz_offset=0) as frozen:
        run_scheduler(app)
        run_until_idle(app)
        frozen.move_to("2026-06-01 11:05")  # nothing ran for two hours
        fired = run_scheduler(app)
        runs = run_until_idle(app, queues=["reports"])
    assert fired == ["cron:refresh-dashboard:2026-06-01T11:00:00Z"]
    assert [r["scheduled_at"] for r in runs] == [datetime(2026, 6, 1, 11, tzinfo=timezone.utc)]


def test_a_paused_schedule_skips_its_ticks() -> None:
    with freeze_time("2026-06-01 09:00", tz_offset=0) as frozen:
        run_scheduler(app)
        with app.db.connection() as conn:  # what `pgsched schedules pause` does
            conn.execute(app.db.sql("schedule_pause"), {
                "name": "refresh-dashboard", "paused": True, "now": datetime.now(timezone.utc)})
        frozen.move_to("2026-06-01 10:00")
        assert run_scheduler(app) == []


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q", *sys.argv[1:]]))
