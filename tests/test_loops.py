"""The worker's background loops, driven one pass at a time on a real database."""

from __future__ import annotations

from pgsched.worker.loops import Takeover
from pgsched.worker.metrics import WorkerMetrics
from tests.test_operations import insert_run


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
