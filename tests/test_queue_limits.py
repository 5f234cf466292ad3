"""Queue limits hold fleet-wide with several real worker processes claiming at once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from tests.waiting import wait_for


def test_concurrency_is_exact_across_four_workers(env, sql, workers, load_app_module) -> None:
    module = load_app_module("queue_app.py")
    module.app.migrate()
    sql("CREATE TABLE spans (job int PRIMARY KEY, pid int, started timestamptz, "
        "ended timestamptz)")
    for _ in range(4):
        workers.start("queue_app.py", "--queues", "limited", "--concurrency", "4")
    workers.wait_registered(sql, 4)
    module.limited.enqueue_many([(module.span, (i, 0.25), {}) for i in range(60)])
    wait_for(lambda: sql("SELECT count(*) FROM spans WHERE ended IS NOT NULL")[0][0] == 60,
             90, what="60 spans to end", logs=workers.logs)
    wait_for(lambda: sql("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")[0][0] == 60,
             30, what="60 runs to succeed", logs=workers.logs)

    spans = sql("SELECT pid, started, ended FROM spans")
    events = sorted([(s, 1, pid) for pid, s, _ in spans] + [(e, -1, pid) for pid, _, e in spans],
                    key=lambda event: (event[0], event[1]))  # an end before a start at a tie
    fleet, per_worker, peak, worker_peak = 0, Counter(), 0, 0
    for _, delta, pid in events:
        fleet += delta
        per_worker[pid] += delta
        peak = max(peak, fleet)
        worker_peak = max(worker_peak, per_worker[pid])
    assert peak == 3, f"fleet-wide overlap peaked at {peak}, the limit is 3"
    assert worker_peak <= 2, f"one worker ran {worker_peak} at once, worker_concurrency is 2"
    assert len({pid for pid, _, _ in spans}) >= 2, "the work should spread over workers"
    assert sql("SELECT count(*) FROM queue_slots WHERE holder IS NOT NULL")[0][0] == 0


def test_rate_limit_holds_in_every_window(env, sql, workers, load_app_module) -> None:
    """Starts are measured as ``workflows.started_at``: the claim time the limiter counts,
    written in the claiming transaction. A job's own clock reading is not the right measure:
    it adds the claim's commit and the hand-off to a thread, which differ per job, so two
    runs claimed just over a window apart can read their clocks just under one apart."""
    module = load_app_module("queue_app.py")
    module.app.migrate()
    sql("CREATE TABLE log (label text, pid int, at timestamptz DEFAULT clock_timestamp())")
    for _ in range(3):
        workers.start("queue_app.py", "--queues", "rated", "--concurrency", "4")
    workers.wait_registered(sql, 3)
    module.rated.enqueue_many([(module.tick, (i,), {}) for i in range(30)])
    wait_for(lambda: sql("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")[0][0] == 30,
             60, what="30 rate-limited runs", logs=workers.logs)

    starts = sorted(row[0] for row in sql("SELECT started_at FROM workflows"))
    window = timedelta(seconds=2)
    worst = max(sum(1 for t in starts if first <= t < first + window) for first in starts)
    assert worst <= 5, f"{worst} starts inside one 2 s window; the limit is 5"
    assert worst == 5, "the limiter should let a full window's worth start"
    assert len({row[0] for row in sql("SELECT pid FROM log")}) >= 2
