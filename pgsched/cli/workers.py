"""``pgsched workers``: the worker processes, what they serve and whether they are alive."""

from __future__ import annotations

import click

from pgsched import operations
from pgsched.cli.common import cli, echo_json, json_option
from pgsched.cli.workflows import open_database, plain, seconds_text, table


@cli.command("workers")
@click.option("--all", "show_all", is_flag=True,
              help=f"Also workers silent for over {operations.LIVE_WORKER_SECONDS:g}s "
                   "(dead, or cut off from the database).")
@json_option
@click.pass_context
def workers_command(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """Live workers: host and pid, app, queues served, concurrency, runs they hold now,
    heartbeat age (on the database clock) and whether they are stopping."""
    db = open_database(ctx)
    with db.connection() as conn:
        rows = conn.execute(db.sql("cli_workers"),
                            {"live_s": operations.LIVE_WORKER_SECONDS,
                             "all": show_all}).fetchall()
    if as_json:
        echo_json(plain(rows))
        return
    if not rows:
        click.echo("no live workers: start one with `pgsched worker APP`")
        return
    click.echo(table(
        ["WORKER", "APP", "VERSION", "QUEUES", "RUN", "HEARTBEAT", "STATE"],
        [[r["id"], r["app"], r["version"] or "?", ",".join(r["queues"]),
          f"{r['running']}/{r['concurrency']}",
          seconds_text(r["heartbeat_age_s"]) + " ago",
          "stopping" if r["stopping"] else "live" if r["live"] else "silent"] for r in rows],
        shrink=[[3, 1], [0]],
    ))
