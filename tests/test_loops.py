"""The worker's background loops, driven one pass at a time on a real database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from freezegun import freeze_time

from pgsched.worker.dispatcher import IDLE_POLL_FACTOR
from pgsched.worker.loops import Alarm, Takeover
from pgsched.worker.metrics import WorkerMetrics
from tests.test_operations import insert_run

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def test_takeover_frees_slots_that_no_running_code_holds(make_app, sql) -> None:
    """Every transition releases its own slot; the repair catches what a crash between two
    releases (or an older pgsched) left behind, and leaves a slot whose run still runs."""
    app = make_app("repair")
    app.migrate()
    sql("INSERT INTO queues (name, concurrency, updated_at) VALUES ('q', 3, now())")
    sql("INSERT INTO queue_slots (queue, slot, holder) VALUES ('q', 0, 'stale'), "
        "('q', 1, 'live'), ('q', 2, 'zombie')")
    sql("INSERT INTO workers (id, hostname, pid, app, queues, workflows, concurrency) "
        "VALUES ('w-live', 'h', 1, 'repair', '{q}', '{wf}', 1)")
    insert_run(sql, "stale", "SUCCESS", queue="q")
    insert_run(sql, "live", "RUNNING", queue="q", executor="w-live")
    # Cancelled while its thread still ran on a live worker: the slot stays until it returns.
    insert_run(sql, "zombie", "CANCELLED", queue="q", executor="w-live")

    Takeover(app, "w-self", 30.0, WorkerMetrics())._release_stranded_slots()

    assert sql("SELECT slot, holder FROM queue_slots ORDER BY slot") == [
        (0, None), (1, "live"), (2, "zombie")]


def test_an_idle_alarm_sleeps_ten_poll_intervals_unless_told_of_a_sooner_park(
        make_app, sql) -> None:
    """Probing once per poll interval cost every idle worker a statement a second. The
    alarm now sleeps until the next parked run it knows of, at most ten intervals, and the
    dispatcher tells it of each run this worker parks."""
    app = make_app("alarm")
    app.migrate()
    alarm = Alarm(app, interval=1.0)
    with freeze_time(NOW) as frozen:
        idle = alarm.run_once()
        assert 0.9 * IDLE_POLL_FACTOR <= idle <= 1.1 * IDLE_POLL_FACTOR
        assert not alarm.wakeup.is_set()

        # A park due after the alarm would ring anyway changes nothing...
        alarm.expect(NOW + timedelta(seconds=60))
        assert not alarm.wakeup.is_set()
        # ...a sooner one ends the wait, and the next pass sleeps exactly until it.
        alarm.expect(NOW + timedelta(seconds=2))
        assert alarm.wakeup.is_set()
        alarm.wakeup.clear()
        assert alarm.run_once() == 2.0

        # A run parked by another worker is found by the probe, and waited for.
        frozen.tick(timedelta(seconds=2))
        insert_run(sql, "other", "ENQUEUED")
        sql("UPDATE workflows SET status = 'WAITING', wake_at = %s WHERE id = 'other'",
            (NOW + timedelta(seconds=5),))
        assert alarm.run_once() == 3.0
        frozen.tick(timedelta(seconds=3))
        # Woken; nothing is parked any more, so it sleeps the long idle wait again.
        assert 0.9 * IDLE_POLL_FACTOR <= alarm.run_once() <= 1.1 * IDLE_POLL_FACTOR
        assert sql("SELECT status FROM workflows WHERE id = 'other'") == [("ENQUEUED",)]
