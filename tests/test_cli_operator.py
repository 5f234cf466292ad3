"""Operator commands against a real worker: workers, enqueue, schedules run/show and bulk
retry/cancel; and the schedules table under frozen time."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner, Result
from freezegun import freeze_time

import pgsched
import pgsched.cli  # noqa: F401  (registers every command group)
import pgsched.testing  # noqa: F401  (keeps the database off the frozen clock)
from pgsched.cli.common import cli
from pgsched.cli.ids import short_ids
from pgsched.handles import Handle
from tests.waiting import wait_for

SQL = Callable[..., list[tuple]]
FROZEN = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def run_cli(database_url: str, schema: str, env: dict[str, str]) -> Callable[..., Result]:
    def run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, ["--database-url", database_url, "--schema", schema,
                                        *args], input=input)
    return run


def _schedule(sql: SQL, name: str, *, next_tick: datetime, paused: bool = False,
              missed: int = 0, skipped: int = 0, overlap: str = "allow",
              seen: datetime | None = None) -> None:
    sql("INSERT INTO schedules (name, expression, timezone, queue, catch_up, overlap, paused, "
        "next_tick, ticks_fired, ticks_missed, ticks_skipped, last_seen_at, created_at, "
        "updated_at) VALUES (%s, '*/5 * * * *', 'UTC', 'default', 'latest', %s, %s, %s, 3, %s, "
        "%s, %s, %s, %s)",
        (name, overlap, paused, next_tick, missed, skipped, seen, FROZEN - timedelta(days=1),
         FROZEN - timedelta(days=1)))


def test_schedules_table_says_overdue_under_frozen_time(make_app, run_cli, sql: SQL) -> None:
    make_app("cli").migrate()
    _schedule(sql, "late", next_tick=FROZEN - timedelta(minutes=2), missed=4, skipped=2)
    _schedule(sql, "jittered", next_tick=FROZEN - timedelta(seconds=5))
    _schedule(sql, "soon", next_tick=FROZEN + timedelta(minutes=2))
    _schedule(sql, "held", next_tick=FROZEN - timedelta(hours=1), paused=True)
    with freeze_time(FROZEN):
        result = run_cli("schedules")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines()[1:5]}
    header = result.output.splitlines()[0].split()
    assert header == ["NAME", "CRON", "TZ", "NEXT", "LAST", "FIRED", "MISSED", "SKIPPED"]
    assert "overdue by 2m" in rows["late"] and "in in" not in result.output
    assert rows["late"].split()[-3:] == ["3", "4", "2"]  # fired, missed, skipped
    assert "due now" in rows["jittered"]   # within a worker's wake-up jitter
    assert "in 2m" in rows["soon"]
    assert "paused" in rows["held"] and "overdue" not in rows["held"]
    assert "`pgsched schedules show NAME` says why" in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines())


def test_schedules_show_says_why_it_did_not_fire(make_app, run_cli, sql: SQL) -> None:
    make_app("cli").migrate()
    _schedule(sql, "late", next_tick=FROZEN - timedelta(minutes=2), missed=4, skipped=2,
              paused=True, overlap="skip", seen=FROZEN - timedelta(minutes=7))
    sql("INSERT INTO workflows (id, name, status, queue, inputs, max_attempts, not_before, "
        "scheduled_at, schedule_name, created_at, updated_at) VALUES ('cron:late:1', 'late', "
        "'RUNNING', 'default', '{}', 3, %s, %s, 'late', %s, %s)", (FROZEN,) * 4)
    with freeze_time(FROZEN):
        result = run_cli("schedules", "show", "late")
        data = json.loads(run_cli("schedules", "show", "late", "--json").stdout)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "no live worker defines it since 2026-06-01T11:53:00+00:00 (7m ago)" in text
    assert "paused: its ticks are skipped" in text
    assert "overlap=skip and the previous tick's run cron:late:1 is still RUNNING" in text
    assert "2 tick(s) skipped so far" in text
    assert "4 tick(s) missed during downtime" in text
    assert data["why"] and data["name"] == "late" and data["live_workers"] == 0
    unknown = run_cli("schedules", "show", "nope")
    assert "no schedule named 'nope'" in str(unknown.exception)


def test_short_ids_tell_apart_uuid7s_made_in_one_millisecond() -> None:
    ids = ["0190c2d1-aaaa-7001-8000-000000000001", "0190c2d1-aaaa-7002-8000-000000000002",
           "order-42", "order-42-fork-1a2b3c4d"]
    shown = short_ids(ids)
    assert shown["0190c2d1-aaaa-7001-8000-000000000001"] == "0190c2d1-aaaa-7001…"
    assert shown["order-42"] == "order-42"
    assert len(set(shown.values())) == len(ids)
    assert all(i.startswith(s.rstrip("…")) for i, s in shown.items())


def test_operator_commands_with_a_live_worker(make_app, workers, sql: SQL, run_cli) -> None:
    db = make_app("cli").db
    make_app("cli").migrate()
    workers.start("cli_app.py")
    workers.wait_registered(sql, 1)

    listed = json.loads(run_cli("workers", "--json").stdout)
    assert len(listed) == 1 and listed[0]["live"] is True
    assert set(listed[0]["queues"]) == {"default", "emails"} and listed[0]["running"] == 0
    assert listed[0]["heartbeat_age_s"] < 30
    assert listed[0]["version"] == pgsched.__version__
    table = run_cli("workers").output
    assert "emails" in table and "live" in table and "0/8" in table
    assert pgsched.__version__ in table

    done = run_cli("enqueue", "emails", "add", "--args", "[2, 3]", "--workflow-id", "sum-1")
    assert done.exit_code == 0, done.output
    assert "enqueued sum-1 (add on queue emails)" in done.output
    assert Handle(db, "sum-1").result(timeout=30) == 5
    assert "not JSON" in run_cli("enqueue", "emails", "add", "--args", "[2,").output
    nowhere = run_cli("enqueue", "nowhere", "add")
    assert "no worker has declared queue 'nowhere'" in str(nowhere.exception)
    orphan = run_cli("enqueue", "emails", "not_deployed")
    assert "no live worker has workflow 'not_deployed'" in orphan.output

    started = run_cli("schedules", "run", "new_year_report", "--json")
    assert started.exit_code == 0, started.output
    run_id = json.loads(started.stdout)["id"]
    assert run_id.startswith("cron:new_year_report:manual:")
    assert Handle(db, run_id).result(timeout=30).startswith("report for ")
    assert sql("SELECT ticks_fired FROM schedules") == [(0,)]  # its timetable is untouched
    assert "fires as expected" in run_cli("schedules", "show", "new_year_report").output

    for n in range(3):
        run_cli("enqueue", "emails", "boom", "--args", f'["no {n}"]')
    wait_for(lambda: sql("SELECT count(*) FROM workflows WHERE status = 'DEAD'") == [(3,)],
             30, what="3 dead runs", logs=workers.logs)
    refused = run_cli("workflows", "retry", "--status", "DEAD", "--queue", "emails",
                      "--since", "1h", input="n\n")
    assert refused.exit_code == 1
    assert "3 run(s) match" in refused.output and "nothing changed" in refused.output
    assert sql("SELECT count(*) FROM workflows WHERE status = 'DEAD'") == [(3,)]
    retried = run_cli("workflows", "retry", "--status", "DEAD", "--queue", "emails",
                      "--since", "1h", input="y\n")
    assert retried.exit_code == 0, retried.output
    assert "retried 3 of 3 run(s)" in retried.output
    wrong = run_cli("workflows", "retry", "--status", "SUCCESS", "--yes")
    assert "retry applies to ERROR, DEAD runs, not SUCCESS" in wrong.output
    assert "give run ids, or filters" in run_cli("workflows", "cancel").output

    for n in range(2):
        run_cli("enqueue", "emails", "add", "--args", f"[{n}, 1]", "--delay", "1h")
    cancelled = run_cli("workflows", "cancel", "--queue", "emails", "--status", "ENQUEUED",
                        "--name", "add", "--yes", "--json")
    assert cancelled.exit_code == 0, cancelled.output
    assert [r["status"] for r in json.loads(cancelled.stdout)] == ["CANCELLED"] * 2

    listing = run_cli("workflows", "list").output
    prefixes = re.findall(r"^(\S+…)", listing, re.M)
    assert prefixes, listing
    assert run_cli("workflows", "show", prefixes[0]).exit_code == 0
