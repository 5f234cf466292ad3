"""``pgsched schedules [list|show NAME|run NAME|pause NAME|resume NAME]``: cron schedules,
their state, and why one did or did not fire."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

from pgsched import operations
from pgsched.cli.common import cli, echo_json, json_option, settings_of
from pgsched.cli.enqueue import insert_run, waiting_reason
from pgsched.cli.workflows import age, open_database, plain, seconds_text, table
from pgsched.clock import utcnow
from pgsched.db import Database
from pgsched.errors import ConfigurationError

#: A worker wakes for a tick up to 10 s after it (its jitter); later than that is overdue.
OVERDUE_AFTER_S = 10.0
#: A run still waiting this long after its tick is worth a sentence in `schedules show`.
WAITING_AFTER_S = 60.0


def next_text(row: dict[str, Any], now: datetime) -> str:
    """When the schedule fires next, in words: ``in 4m``, ``due now``, ``overdue by 2m``."""
    if row["paused"]:
        return "paused"
    if row["next_tick"] is None:
        return "-"
    ahead = (row["next_tick"] - now).total_seconds()
    if ahead >= 0:
        return "in " + seconds_text(ahead)
    if -ahead <= OVERDUE_AFTER_S:
        return "due now"
    return "overdue by " + seconds_text(-ahead)


@cli.group("schedules", invoke_without_command=True)
@json_option
@click.pass_context
def schedules(ctx: click.Context, as_json: bool) -> None:
    """Cron schedules that workers registered (the default: list them), why one did or did
    not fire, running a tick now, and pausing them."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_command, as_json=as_json)


@schedules.command("list")
@json_option
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """Every schedule: expression, zone, next tick (or how long it is overdue, or paused),
    last tick, and ticks fired, missed (downtime) and skipped (paused or overlap)."""
    db = open_database(ctx)
    rows = operations.list_schedules(db)
    if as_json:
        echo_json(plain(rows))
        return
    if not rows:
        click.echo("no schedules: they appear when a worker whose app defines them starts")
        return
    now = utcnow()
    click.echo(table(
        ["NAME", "CRON", "TZ", "NEXT", "LAST", "FIRED", "MISSED", "SKIPPED"],
        [[r["name"], r["expression"], r["timezone"], next_text(r, now),
          "-" if r["last_tick"] is None else age(r["last_tick"], now) + " ago",
          r["ticks_fired"], r["ticks_missed"], r["ticks_skipped"]] for r in rows],
        shrink=[[0, 2], [1]],
    ))
    if any(next_text(r, now).startswith("overdue") for r in rows):
        click.echo("(overdue: no worker has fired it; `pgsched schedules show NAME` says why)")


def _schedule(db: Database, name: str) -> dict[str, Any]:
    with db.connection() as conn:
        row = conn.execute(db.sql("cli_schedule_show"),
                           {"name": name, "live_s": operations.LIVE_WORKER_SECONDS}).fetchone()
    if row is None:
        raise ConfigurationError(
            f"no schedule named {name!r}; list them with `pgsched schedules` (a schedule "
            "appears once a worker whose app defines it has started)"
        )
    return row


def why(row: dict[str, Any], now: datetime) -> list[str]:
    """The reasons a schedule did or did not fire, most pressing first, in sentences."""
    name = row["name"]
    reasons: list[str] = []
    if row["live_workers"] == 0:
        seen = row["last_seen_at"]
        reasons.append(
            f"no live worker defines it since {plain(seen)} ({age(seen, now)} ago): start a "
            "worker whose app has this schedule" if seen else
            "no live worker defines it: start a worker whose app has this schedule")
    if row["paused"]:
        reasons.append(f"paused: its ticks are skipped, not caught up later; `pgsched "
                       f"schedules resume {name}` lets it fire from its next tick")
    upcoming = next_text(row, now)
    if upcoming.startswith("overdue"):
        reasons.append(f"its next tick, {plain(row['next_tick'])}, is {upcoming}")
    busy = row["last_run_status"] in operations.UNFINISHED
    if row["overlap"] == "skip" and busy:
        reasons.append(
            f"overlap=skip and the previous tick's run {row['last_run_id']} is still "
            f"{row['last_run_status']}: ticks are skipped until it finishes")
    if row["ticks_skipped"]:
        reasons.append(f"{row['ticks_skipped']} tick(s) skipped so far (while paused, or for "
                       "overlap while the previous tick's run was still going)")
    if row["ticks_missed"]:
        reasons.append(f"{row['ticks_missed']} tick(s) missed during downtime (no worker ran "
                       f"when they were due; catch_up={row['catch_up']} ran "
                       + ("none of them)" if row["catch_up"] == "none" else
                          "the latest only)" if row["catch_up"] == "latest" else
                          "those within its window)"))
    if row["last_run_status"] in ("ERROR", "DEAD", "CANCELLED"):
        reasons.append(
            f"its last run {row['last_run_id']} ended {row['last_run_status']}"
            + (f": {row['last_run_error_type']}: {row['last_run_error']}"
               if row["last_run_error"] else "")
            + f"; `pgsched workflows show {row['last_run_id']}`")
    waited = (now - row["last_run_scheduled_at"]).total_seconds() \
        if row["last_run_scheduled_at"] else 0.0
    if row["last_run_status"] == "ENQUEUED" and waited > WAITING_AFTER_S:
        reasons.append(f"its last run {row['last_run_id']} has waited {seconds_text(waited)} "
                       f"to start (queue {row['queue']}: see `pgsched queues`)")
    if not reasons:
        reasons.append(f"fires as expected: next tick {upcoming}"
                       + (f", last run {row['last_run_status']}" if row["last_run_id"] else ""))
    return reasons


@schedules.command("show")
@click.argument("name")
@json_option
@click.pass_context
def show_command(ctx: click.Context, name: str, as_json: bool) -> None:
    """One schedule and, in words, why it did or did not fire: no worker defines it,
    paused, skipped for overlap, missed during downtime, its last run failed."""
    row = _schedule(open_database(ctx), name)
    now = utcnow()
    reasons = why(row, now)
    if as_json:
        echo_json({**plain(row), "why": reasons})
        return
    fields = [
        ("name", row["name"]),
        ("cron", f"{row['expression']} ({row['timezone']})"),
        ("queue", row["queue"]),
        ("policies", f"catch_up={row['catch_up']} overlap={row['overlap']}"),
        ("next tick", f"{plain(row['next_tick'])} ({next_text(row, now)})"
         if row["next_tick"] else next_text(row, now)),
        ("last tick", f"{plain(row['last_tick'])} ({age(row['last_tick'], now)} ago)"
         if row["last_tick"] else "-"),
        ("ticks", f"fired {row['ticks_fired']}, collapsed {row['ticks_collapsed']}, "
                  f"missed {row['ticks_missed']}, skipped {row['ticks_skipped']}"),
        ("last lateness", seconds_text(row["last_lateness_s"])),
        ("last run", f"{row['last_run_id']} {row['last_run_status']}"
         if row["last_run_id"] else "-"),
        ("live workers", row["live_workers"]),
    ]
    for label, value in fields:
        click.echo(f"{label:<14}{value}")
    click.echo("\nwhy")
    for reason in reasons:
        click.echo(f"- {reason}")


@schedules.command("run")
@click.argument("name")
@json_option
@click.pass_context
def run_command(ctx: click.Context, name: str, as_json: bool) -> None:
    """Run NAME once now, outside its timetable: one run on the schedule's queue, with
    scheduled_at = now. Its ticks and counters are left as they are."""
    db = open_database(ctx)
    row = _schedule(db, name)
    now = utcnow()
    run_id = insert_run(
        db, name=name, queue=row["queue"], args=[],
        kwargs={"scheduled_at": now.astimezone(ZoneInfo(row["timezone"]))},
        max_attempts=row["last_run_max_attempts"] or settings_of(ctx).max_attempts,
        workflow_id=f"cron:{name}:manual:{now.strftime('%Y-%m-%dT%H:%M:%S.%f')}Z",
        schedule_name=name, now=now,
    )
    reason = waiting_reason(db, name, row["queue"])
    if as_json:
        echo_json({"id": run_id, "schedule": name, "queue": row["queue"],
                   "waiting_for_worker": reason})
        return
    click.echo(f"started {run_id} on queue {row['queue']}"
               + (" (the schedule stays paused)" if row["paused"] else ""))
    if reason:
        click.echo(f"warning: {reason}", err=True)


@schedules.command("pause")
@click.argument("name")
@click.pass_context
def pause_command(ctx: click.Context, name: str) -> None:
    """Stop NAME from firing, fleet-wide; ticks while paused are skipped, not caught up."""
    operations.set_schedule_paused(open_database(ctx), name, True)
    click.echo(f"paused schedule {name}")


@schedules.command("resume")
@click.argument("name")
@click.pass_context
def resume_command(ctx: click.Context, name: str) -> None:
    """Let NAME fire again from its next tick."""
    operations.set_schedule_paused(open_database(ctx), name, False)
    click.echo(f"resumed schedule {name}")
