"""``pgsched schedules [list|pause NAME|resume NAME]``: cron schedules and their state."""

from __future__ import annotations

import click

from pgsched import operations
from pgsched.cli.common import cli, echo_json, json_option
from pgsched.cli.workflows import age, open_database, plain, table
from pgsched.clock import utcnow


@cli.group("schedules", invoke_without_command=True)
@json_option
@click.pass_context
def schedules(ctx: click.Context, as_json: bool) -> None:
    """Cron schedules that workers registered (the default: list them), and pausing them."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_command, as_json=as_json)


@schedules.command("list")
@json_option
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """Every schedule: expression, zone, paused, next and last tick, ticks fired."""
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
        ["NAME", "CRON", "TZ", "PAUSED", "NEXT", "LAST", "FIRED"],
        [[r["name"], r["expression"], r["timezone"], "yes" if r["paused"] else "no",
          "-" if r["next_tick"] is None else "in " + age(now, r["next_tick"]),
          "-" if r["last_tick"] is None else age(r["last_tick"], now) + " ago",
          r["ticks_fired"]] for r in rows],
        shrink=[[0, 2], [1]],
    ))


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
