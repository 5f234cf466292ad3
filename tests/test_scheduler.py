"""The scheduler against a real database, driven with frozen time (no sleeps).

Each ``Scheduler`` instance plays one worker's schedule loop; ``pgsched.testing`` helpers run
passes and execute the runs in-process exactly as a worker would.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

import pgsched
from pgsched.clock import utcnow
from pgsched.errors import InvalidSchedule, UnknownQueue
from pgsched.scheduler import Scheduler
from pgsched.testing import advance, run_scheduler, run_until_idle
from tests.conftest import ROOT

UTC = timezone.utc
START = "2026-03-29 00:00:00"
#: At most this many ticks per catch-up transaction (pgsched.scheduler.CATCH_UP_BATCH).
CATCH_UP_BATCH = 500


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def cron_app(make_app: Callable[..., pgsched.App], expression: str, **options: Any
             ) -> tuple[pgsched.App, list[datetime]]:
    """An app with one schedule ``job`` whose runs record the ``scheduled_at`` they got."""
    app = make_app("cron")
    received: list[datetime] = []

    @app.cron(expression, name="job", **options)
    def job(scheduled_at: datetime) -> str:
        received.append(scheduled_at)
        return scheduled_at.isoformat()

    app.ensure_schema()
    return app, received


def schedule_row(sql: Callable[..., list[tuple]], name: str = "job") -> dict[str, Any]:
    rows = sql(
        "SELECT paused, last_tick, next_tick, ticks_fired, ticks_collapsed, ticks_missed, "
        "ticks_skipped, last_lateness_s FROM schedules WHERE name = %s", (name,)
    )
    keys = ("paused", "last_tick", "next_tick", "fired", "collapsed", "missed", "skipped",
            "lateness")
    return dict(zip(keys, rows[0], strict=True))


def run_ticks(sql: Callable[..., list[tuple]]) -> list[datetime]:
    return [r[0] for r in sql("SELECT scheduled_at FROM workflows ORDER BY scheduled_at")]


def pause(app: pgsched.App, paused: bool) -> None:
    with app.db.connection() as conn:
        conn.execute(app.db.sql("schedule_pause"),
                     {"name": "job", "paused": paused, "now": utcnow()})


def test_every_5_minutes_over_2_hours_runs_24_ticks_with_their_scheduled_at(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    app, received = cron_app(make_app, "*/5 * * * *", tz="Europe/Berlin")
    with freeze_time(START, tz_offset=0) as frozen:
        runs = advance(frozen, app, until=timedelta(hours=2) - timedelta(seconds=1))
    expected = [utc(2026, 3, 29) + timedelta(minutes=5 * i) for i in range(24)]
    assert received == expected
    berlin = ZoneInfo("Europe/Berlin")  # received in the schedule's zone (as its UTC offset)
    assert [at.utcoffset() for at in received] == [e.astimezone(berlin).utcoffset()
                                                   for e in expected]
    assert received[-1].isoformat() == "2026-03-29T03:55:00+02:00"  # after spring forward
    assert [r["status"] for r in runs] == ["SUCCESS"] * 24
    assert [r["output"] for r in runs] == [at.astimezone(berlin).isoformat() for at in expected]
    assert run_ticks(sql) == expected
    assert sql("SELECT count(*) FROM workflows WHERE id LIKE 'cron:job:%%'")[0][0] == 24
    assert schedule_row(sql)["fired"] == 24


def test_seconds_schedule_fires_each_second_tick_once_with_1s_steps(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    app, received = cron_app(make_app, "*/10 * * * * *")
    with freeze_time(START, tz_offset=0) as frozen:
        advance(frozen, app, until=timedelta(minutes=1), step=1)
    assert received == [utc(2026, 3, 29, 0, 0, s) for s in (0, 10, 20, 30, 40, 50)] + [
        utc(2026, 3, 29, 0, 1)
    ]
    assert schedule_row(sql)["collapsed"] == 0


@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        ("Europe/Berlin", "2026-03-28 00:00:00",
         [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]),
        ("America/New_York", "2026-03-07 00:00:00",
         [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 30), utc(2026, 3, 9, 6, 30)]),
        ("Europe/Berlin", "2026-10-24 00:00:00",
         [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]),
        ("America/New_York", "2026-10-31 00:00:00",
         [utc(2026, 10, 31, 6, 30), utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 7, 30)]),
    ],
)
def test_daily_0230_runs_once_per_day_across_dst(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]],
    zone: str, start: str, expected: list[datetime],
) -> None:
    app, received = cron_app(make_app, "30 2 * * *", tz=zone)
    with freeze_time(start, tz_offset=0) as frozen:
        advance(frozen, app, until=timedelta(days=3))
    # Compared as UTC instants: PEP 495 makes an ambiguous wall time unequal to other zones'.
    assert [at.astimezone(timezone.utc) for at in received] == expected
    ids = [r[0] for r in sql("SELECT id FROM workflows ORDER BY scheduled_at")]
    assert len(set(ids)) == 3


def test_catch_up_latest_runs_the_most_recent_missed_tick_once(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    app, _ = cron_app(make_app, "*/5 * * * *")
    worker = Scheduler(app)
    with freeze_time(START, tz_offset=0) as frozen:
        worker.run_pass()
        frozen.move_to("2026-03-29 01:02:00")  # the process was suspended for an hour
        result = worker.run_pass()
    assert len(result["job"].fired) == 1
    assert run_ticks(sql) == [utc(2026, 3, 29), utc(2026, 3, 29, 1)]
    row = schedule_row(sql)
    assert (row["fired"], row["missed"], row["lateness"]) == (2, 11, 120.0)
    assert row["last_tick"] == utc(2026, 3, 29, 1)


def test_catch_up_all_runs_every_missed_tick_within_the_window(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    app, received = cron_app(make_app, "*/5 * * * *", catch_up="all")
    with freeze_time(START, tz_offset=0) as frozen:
        run_scheduler(app)
        frozen.move_to("2026-03-29 01:02:00")
        assert len(run_scheduler(app)) == 12
        run_until_idle(app)
        # a bounded window: after 5 hours down, only the last 30 minutes are replayed
        app.schedules["job"] = dataclasses.replace(
            app.schedules["job"], catch_up_window=timedelta(minutes=30))
        frozen.move_to("2026-03-29 06:02:00")
        run_scheduler(app)
        run_until_idle(app)
    assert received[:13] == [utc(2026, 3, 29) + timedelta(minutes=5 * i) for i in range(13)]
    assert received[13:] == [utc(2026, 3, 29, 5, 35) + timedelta(minutes=5 * i)
                             for i in range(6)]
    assert schedule_row(sql)["missed"] == 60 - 6


def test_catch_up_none_runs_nothing_missed_but_the_on_time_tick(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    app, _ = cron_app(make_app, "*/5 * * * *", catch_up="none")
    with freeze_time(START, tz_offset=0) as frozen:
        run_scheduler(app)
        frozen.move_to("2026-03-29 01:02:00")
        assert run_scheduler(app) == []
        frozen.move_to("2026-03-29 01:05:20")  # 20 s late: within the jitter grace
        assert run_scheduler(app) == ["cron:job:2026-03-29T01:05:00Z"]
    assert run_ticks(sql) == [utc(2026, 3, 29), utc(2026, 3, 29, 1, 5)]
    assert schedule_row(sql)["missed"] == 12


def test_overlap_skip_skips_a_tick_while_the_previous_run_is_running(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    app = make_app("cron")
    fired_while_running: list[list[str]] = []
    clock: dict[str, Any] = {}

    @app.cron("* * * * *", name="job", overlap="skip")
    def job(scheduled_at: datetime) -> None:
        if scheduled_at == utc(2026, 3, 29):
            clock["frozen"].tick(60)  # the run is still going when the next tick comes
            fired_while_running.append(run_scheduler(app))

    with freeze_time(START, tz_offset=0) as frozen:
        clock["frozen"] = frozen
        advance(frozen, app, until=timedelta(minutes=3))
    assert fired_while_running == [[]]
    assert sql("SELECT status FROM workflows WHERE id = 'cron:job:2026-03-29T00:00:00Z'") == [
        ("SUCCESS",)
    ]
    assert run_ticks(sql) == [utc(2026, 3, 29), utc(2026, 3, 29, 0, 2), utc(2026, 3, 29, 0, 3)]
    assert schedule_row(sql)["skipped"] == 1


def test_overlap_allow_inserts_the_next_tick_while_one_waits(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    app, _ = cron_app(make_app, "* * * * *")
    with freeze_time(START, tz_offset=0) as frozen:
        run_scheduler(app)
        frozen.tick(60)
        assert run_scheduler(app) == ["cron:job:2026-03-29T00:01:00Z"]
    assert sql("SELECT count(*) FROM workflows WHERE status = 'ENQUEUED'") == [(2,)]


def test_pause_and_resume_apply_to_every_worker_at_the_next_tick(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    app, _ = cron_app(make_app, "* * * * *")
    workers = [Scheduler(app), Scheduler(app)]
    with freeze_time(START, tz_offset=0) as frozen:
        for worker in workers:
            worker.run_pass()
        pause(app, True)
        for _ in range(3):
            frozen.tick(60)
            for worker in workers:
                assert worker.run_pass()["job"].fired == []
        assert schedule_row(sql)["paused"] is True
        frozen.tick(30)
        pause(app, False)
        frozen.tick(30)
        fired = [w.run_pass()["job"].fired for w in workers]
    assert sorted(fired) == [[], ["cron:job:2026-03-29T00:04:00Z"]]  # no backlog burst
    assert run_ticks(sql) == [utc(2026, 3, 29), utc(2026, 3, 29, 0, 4)]
    assert schedule_row(sql)["skipped"] == 3


def test_two_workers_at_the_same_instant_insert_once_and_count_a_collapse(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    app, _ = cron_app(make_app, "*/5 * * * *")
    first, second = Scheduler(app), Scheduler(app)
    with freeze_time("2026-03-29 00:01:00", tz_offset=0) as frozen:
        first.next_wakeup(utcnow())
        second.next_wakeup(utcnow())
        frozen.move_to("2026-03-29 00:05:00")
        a, b = first.run_pass()["job"], second.run_pass()["job"]
    assert (a.fired, a.collapsed) == (["cron:job:2026-03-29T00:05:00Z"], 0)
    assert (b.fired, b.collapsed) == ([], 1)
    row = schedule_row(sql)
    assert (row["fired"], row["collapsed"]) == (1, 1)
    assert sql("SELECT count(*) FROM workflows") == [(1,)]


def test_high_water_mark_stops_a_slow_clock_and_pruned_history_from_repeating_ticks(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    app, _ = cron_app(make_app, "*/5 * * * *", catch_up="all")
    with freeze_time("2026-03-29 00:05:00", tz_offset=0):
        run_scheduler(app)
        run_until_idle(app)
    slow = Scheduler(app)
    assert slow.run_pass(utc(2026, 3, 29, 0, 4, 58))["job"].fired == []  # 2 s behind
    assert slow.run_pass(utc(2026, 3, 29, 0, 5))["job"].fired == []
    sql("DELETE FROM workflows")  # pruned
    assert Scheduler(app).run_pass(utc(2026, 3, 29, 0, 5))["job"].fired == []
    assert Scheduler(app).run_pass(utc(2026, 3, 29, 0, 10))["job"].fired == [
        "cron:job:2026-03-29T00:10:00Z"
    ]
    assert run_ticks(sql) == [utc(2026, 3, 29, 0, 10)]
    # the mark never moves back, even when a pass reports an older tick
    assert schedule_row(sql)["last_tick"] == utc(2026, 3, 29, 0, 10)


def test_changed_expression_in_a_new_deploy_neither_duplicates_nor_backfills(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    old, _ = cron_app(make_app, "*/5 * * * *")
    new, received = cron_app(make_app, "*/10 * * * *")
    with freeze_time(START, tz_offset=0) as frozen:
        advance(frozen, old, until=timedelta(minutes=10))
        frozen.move_to("2026-03-29 00:17:00")  # deploy: the 00:15 tick of */5 never ran
        assert run_scheduler(new) == []
        frozen.move_to("2026-03-29 00:20:00")
        assert run_scheduler(new) == ["cron:job:2026-03-29T00:20:00Z"]
        run_until_idle(new)
    assert run_ticks(sql) == [utc(2026, 3, 29, 0, m) for m in (0, 5, 10, 20)]
    assert received == [utc(2026, 3, 29, 0, 20)]
    assert sql("SELECT expression FROM schedules") == [("*/10 * * * *",)]


def test_changed_expression_keeps_a_tick_due_under_both_that_was_in_its_jitter_window(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    """A deploy lands at 11:00:03 while the old workers wait out the 11:00 tick's jitter:
    11:00 is due under the old hourly and the new half-hourly expression, so it runs once.
    The new expression's own ticks from before the deploy (10:30) are not backfilled."""
    old, _ = cron_app(make_app, "0 * * * *")
    new, received = cron_app(make_app, "*/30 * * * *")
    old_worker = Scheduler(old)
    with freeze_time("2026-03-29 10:00:00", tz_offset=0) as frozen:
        assert old_worker.run_pass()["job"].fired == ["cron:job:2026-03-29T10:00:00Z"]
        frozen.move_to("2026-03-29 11:00:03")
        deploy = Scheduler(new)
        deploy.register(utcnow())
        frozen.move_to("2026-03-29 11:00:05")  # the old worker's jitter is over
        assert old_worker.run_pass()["job"].fired == ["cron:job:2026-03-29T11:00:00Z"]
        assert deploy.run_pass()["job"].fired == []
        frozen.move_to("2026-03-29 11:30:01")
        assert deploy.run_pass()["job"].fired == ["cron:job:2026-03-29T11:30:00Z"]
        run_until_idle(new)
    assert run_ticks(sql) == [utc(2026, 3, 29, 10), utc(2026, 3, 29, 11),
                              utc(2026, 3, 29, 11, 30)]
    row = schedule_row(sql)
    assert (row["fired"], row["missed"], row["skipped"]) == (3, 0, 0)
    # no tick in UTC is the second pass through a repeated hour
    assert len(received) == 3 and {t.fold for t in received} == {0}


def test_changed_expression_in_the_jitter_window_fires_the_shared_tick_on_the_new_worker(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    """The same deploy when only new workers are left: the new release's first pass fires
    the pending 11:00 tick (late, within its jitter) instead of starting after it."""
    old, _ = cron_app(make_app, "0 * * * *")
    new, _ = cron_app(make_app, "*/20 * * * *")
    with freeze_time("2026-03-29 10:00:00", tz_offset=0) as frozen:
        run_scheduler(old)
        frozen.move_to("2026-03-29 11:00:03")
        assert run_scheduler(new) == ["cron:job:2026-03-29T11:00:00Z"]
    assert schedule_row(sql)["missed"] == 0


def test_catch_up_all_inserts_every_tick_of_a_day_in_short_batches_and_counts_the_rest(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    """An every-10-s schedule down for two days: the one-day window holds 8,640 ticks and
    each is inserted; the 8,640 before the window are counted missed. Each transaction (a
    row's xmin) inserts at most CATCH_UP_BATCH ticks, so the schedule's row is never locked
    for long."""
    app, _ = cron_app(make_app, "*/10 * * * * *", catch_up="all")
    with freeze_time(START, tz_offset=0) as frozen:
        run_scheduler(app)
        frozen.move_to("2026-03-31 00:00:05")
        fired = run_scheduler(app)
    assert len(fired) == 8640 and len(set(fired)) == 8640
    assert sql("SELECT count(*), min(scheduled_at), max(scheduled_at) FROM workflows "
               "WHERE scheduled_at > %s", (utc(2026, 3, 29),)) == [
        (8640, utc(2026, 3, 30, 0, 0, 10), utc(2026, 3, 31))]
    per_transaction = [n for (n,) in sql(
        "SELECT count(*) FROM workflows WHERE scheduled_at > %s GROUP BY xmin::text",
        (utc(2026, 3, 29),))]
    assert max(per_transaction) <= CATCH_UP_BATCH
    assert len(per_transaction) == -(-8640 // CATCH_UP_BATCH)
    row = schedule_row(sql)
    assert (row["fired"], row["missed"], row["skipped"]) == (8641, 8640, 0)
    assert row["last_tick"] == utc(2026, 3, 31)


def test_removed_schedule_stops_firing_and_the_status_query_says_why(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    old, _ = cron_app(make_app, "*/5 * * * *")
    new = make_app("cron")

    @new.cron("0 * * * *", name="other")
    def other(scheduled_at: datetime) -> None: ...

    with freeze_time(START, tz_offset=0) as frozen:
        advance(frozen, old, until=timedelta(minutes=5))
        frozen.move_to("2026-03-29 01:00:00")
        assert run_scheduler(new) == ["cron:other:2026-03-29T01:00:00Z"]
        with new.db.connection() as conn:
            status = {
                row["name"]: row
                for row in conn.execute(new.db.sql("schedule_status"),
                                        {"name": None, "now": utcnow()})
            }
    assert run_ticks(sql)[-1] == utc(2026, 3, 29, 1)
    assert sql("SELECT count(*) FROM workflows WHERE schedule_name = 'job'") == [(2,)]
    assert status["job"]["verdict"].startswith("overdue")
    assert status["job"]["last_run_status"] == "SUCCESS"
    assert status["other"]["verdict"].startswith("waiting")


def test_status_query_explains_pause_and_failure(
    make_app: Callable[..., pgsched.App]
) -> None:
    app = make_app("cron")

    @app.cron("* * * * *", name="job", max_attempts=1)
    def job(scheduled_at: datetime) -> None:
        raise RuntimeError("disk full")

    def verdict() -> str:
        with app.db.connection() as conn:
            return str(conn.execute(app.db.sql("schedule_status"),
                                    {"name": "job", "now": utcnow()}).fetchone()["verdict"])

    with freeze_time(START, tz_offset=0):
        runs = advance_once(app)
        assert runs[0]["status"] == "DEAD"
        assert verdict() == "failed: the last run ended DEAD: disk full"
        pause(app, True)
        assert verdict().startswith("paused")


def advance_once(app: pgsched.App) -> list[dict[str, Any]]:
    run_scheduler(app)
    return run_until_idle(app)


def test_schedule_on_a_named_queue_runs_there(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    app = make_app("cron")
    app.queue("reports", concurrency=1)

    @app.cron("0 * * * *", name="job", queue="reports")
    def job(scheduled_at: datetime) -> None: ...

    with freeze_time(START, tz_offset=0):
        run_scheduler(app)
        assert run_until_idle(app, queues=["default"]) == []
        runs = run_until_idle(app, queues=["reports"])
    assert [(r["queue"], r["status"]) for r in runs] == [("reports", "SUCCESS")]


def test_unknown_queue_fails_at_worker_start_and_bad_expressions_at_decoration(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    app = make_app("cron")

    @app.cron("0 * * * *", name="job", queue="nightly")
    def job(scheduled_at: datetime) -> None: ...

    app.ensure_schema()
    with pytest.raises(UnknownQueue, match="app.queue\\('nightly'"):
        Scheduler(app).register(utcnow())
    assert sql("SELECT count(*) FROM schedules") == [(0,)]
    with pytest.raises(InvalidSchedule, match="field 2 \\(hour\\) '24'"):
        app.cron("0 24 * * *")(lambda scheduled_at: None)
    with pytest.raises(InvalidSchedule, match="Europe/Berln"):
        app.cron("0 * * * *", tz="Europe/Berln")(lambda scheduled_at: None)


def test_in_process_runs_belong_to_a_registered_pseudo_worker(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]]
) -> None:
    app = make_app("cron")
    seen: list[tuple] = []

    @app.cron("0 * * * *", name="job")
    def job(scheduled_at: datetime) -> None:
        seen.extend(sql("SELECT w.executor, k.id FROM workflows w JOIN workers k "
                        "ON k.id = w.executor WHERE w.status = 'RUNNING'"))

    with freeze_time(START, tz_offset=0):
        advance_once(app)
    assert len(seen) == 1 and seen[0][0].startswith("testing:")
    assert sql("SELECT count(*) FROM workers") == [(0,)]


def test_a_failing_run_is_retried_when_frozen_time_reaches_its_backoff(
    make_app: Callable[..., pgsched.App]
) -> None:
    app = make_app("cron")
    attempts: list[datetime] = []

    @app.cron("0 * * * *", name="job", max_attempts=3)
    def job(scheduled_at: datetime) -> str:
        attempts.append(utcnow())
        if len(attempts) < 3:
            raise RuntimeError("flaky")
        return "ok"

    with freeze_time(START, tz_offset=0) as frozen:
        runs = advance(frozen, app, until=timedelta(minutes=30))
    assert [r["status"] for r in runs] == ["ENQUEUED", "ENQUEUED", "SUCCESS"]
    assert attempts[0] == utc(2026, 3, 29) and attempts[1] > attempts[0]


HANG_SCENARIO = """
import socket, sys
from datetime import datetime
from freezegun import freeze_time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)  # accepts TCP, never answers: a database that hangs
url = f"postgresql://nobody@127.0.0.1:{listener.getsockname()[1]}/db"
if sys.argv[1] == "helpers":
    import pgsched.testing
import pgsched
from pgsched.errors import ConfigurationError, DatabaseUnavailable
app = pgsched.App("frozen", database_url=url)

@app.cron("* * * * *", name="job")
def job(scheduled_at: datetime) -> None: ...

with freeze_time("2026-03-29 00:00:00", tz_offset=0):
    try:
        if sys.argv[1] == "late-import":
            from pgsched.testing import run_scheduler
            run_scheduler(app)
        elif sys.argv[1] == "helpers":
            pgsched.testing.run_until_idle(app)
        else:
            from pgsched.scheduler import Scheduler
            Scheduler(app).run_pass()
    except (DatabaseUnavailable, ConfigurationError) as exc:
        print(type(exc).__name__)
"""


def run_scenario(mode: str, timeout: float) -> tuple[str, float]:
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(HANG_SCENARIO), mode],
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "HUNG", time.monotonic() - started
    return done.stdout.strip() or done.stderr[-500:], time.monotonic() - started


def test_a_frozen_time_test_cannot_hang_on_an_unresponsive_database() -> None:
    """With pgsched.testing imported, a connect timeout still expires under freezegun, and a
    freeze started before the import is refused at once. Without it (the control), the very
    same scenario hangs: the test would catch a regression."""
    outcome, elapsed = run_scenario("helpers", timeout=30)
    assert outcome == "DatabaseUnavailable" and elapsed < 25
    assert run_scenario("late-import", timeout=30)[0] == "ConfigurationError"
    assert run_scenario("plain", timeout=8)[0] == "HUNG"


def test_cron_function_receives_its_tick_in_the_schedule_zone(make_app):
    from pgsched.testing import run_scheduler, run_until_idle

    app = make_app("zone")
    seen = []

    @app.cron("30 2 * * *", tz="Europe/Berlin")
    def nightly(scheduled_at: datetime) -> None:
        seen.append(scheduled_at)

    app.migrate()
    with freeze_time("2026-10-24 12:00", tz_offset=0) as frozen:
        run_scheduler(app)
        frozen.move_to("2026-10-25 00:30:00")
        run_scheduler(app)
        run_until_idle(app)
    assert [(t.isoformat(), str(t.tzinfo)) for t in seen] == [
        ("2026-10-25T02:30:00+02:00", "Europe/Berlin")
    ]
