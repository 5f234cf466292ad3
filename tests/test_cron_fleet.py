"""The fleet test, in real time (the one cron test allowed real seconds).

Six worker processes run one every-second schedule for about 20 s. They start one after the
other, and one is SIGKILLed and restarted halfway. Every second from the moment the last
worker joined to the end must have run exactly once: counted from the function's own side
effect (a table without a unique constraint), not from run ids, which the primary key makes
unique anyway.

The schedule uses ``catch_up="all"``, so a tick that no worker reached in time (a loaded CI
machine) is still inserted late rather than reported missed: the test is about once-only and
no gaps in the fleet, not about wake-up latency, which it reports instead.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import timedelta

import pgsched
from tests.conftest import Workers
from tests.waiting import wait_for

WORKERS = 6
WINDOW = 20.0


def db_now(sql: Callable[..., list[tuple]]) -> object:
    return sql("SELECT clock_timestamp()")[0][0]


def test_every_second_runs_exactly_once_across_six_workers_with_a_kill(
    make_app: Callable[..., pgsched.App], sql: Callable[..., list[tuple]], workers: Workers
) -> None:
    make_app("setup").migrate()
    sql("CREATE TABLE fleet_ticks (scheduled_at timestamptz NOT NULL, pid integer NOT NULL)")
    env = {"PGSCHED_POOL_SIZE": "2", "PGSCHED_CONCURRENCY": "4"}
    procs = []
    for index in range(WORKERS):
        procs.append(workers.start("cron_fleet.py", env=env))
        workers.wait_registered(sql, index + 1)
        if index < WORKERS - 1:  # let the fleet tick a little before the next one joins
            seen = sql("SELECT count(*) FROM fleet_ticks")[0][0]
            wait_for(lambda s=seen: sql("SELECT count(*) FROM fleet_ticks")[0][0] > s, 15,
                     what="a tick to run", logs=workers.logs)
    start = db_now(sql)

    wait_for(lambda: (db_now(sql) - start).total_seconds() >= WINDOW / 2, WINDOW,
             what="half of the window")
    victim = procs[2]
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    workers.start("cron_fleet.py", env=env)
    wait_for(lambda: (db_now(sql) - start).total_seconds() >= WINDOW, WINDOW * 2,
             what="the end of the window")
    end = db_now(sql)

    first = start.replace(microsecond=0) + timedelta(seconds=1)
    expected = [first + timedelta(seconds=i)
                for i in range(int((end - first).total_seconds()) + 1)]
    last = expected[-1]

    def all_ran() -> bool:
        return sql("SELECT count(DISTINCT scheduled_at) FROM fleet_ticks "
                   "WHERE scheduled_at BETWEEN %s AND %s", (first, last))[0][0] == len(expected)

    wait_for(all_ran, 30, what="every tick of the window to run", logs=workers.logs)
    rows = sql("SELECT scheduled_at, count(*) FROM fleet_ticks WHERE scheduled_at "
               "BETWEEN %s AND %s GROUP BY 1 ORDER BY 1", (first, last))
    duplicates = [(at, n) for at, n in rows if n != 1]
    gaps = sorted(set(expected) - {at for at, _ in rows})
    assert (duplicates, gaps) == ([], []), workers.logs()
    assert [at for at, _ in rows] == expected

    runs = sql("SELECT count(*), count(*) FILTER (WHERE status = 'SUCCESS'), "
               "count(DISTINCT id) FROM workflows WHERE scheduled_at BETWEEN %s AND %s",
               (first, last))[0]
    assert runs == (len(expected),) * 3
    counters = sql("SELECT ticks_collapsed, ticks_missed FROM schedules")[0]
    pids = sql("SELECT count(DISTINCT pid) FROM fleet_ticks WHERE scheduled_at "
               "BETWEEN %s AND %s", (first, last))[0][0]
    late = sql("SELECT max(extract(epoch FROM started_at - scheduled_at)) FROM workflows "
               "WHERE scheduled_at BETWEEN %s AND %s", (first, last))[0][0]
    print(f"fleet: {len(expected)} ticks expected, {len(rows)} ran, 0 duplicates, 0 gaps; "
          f"{counters[0]} collapsed wake-ups, {counters[1]} missed, {pids} executing "
          f"processes, max start delay {late:.2f}s")
    assert counters[0] > 0  # several workers really competed for the same ticks
    assert pids > 1
