"""``pgsched workers``: the worker processes, what they serve, whether they are alive, and
the connections they hold against the most they may open."""

from __future__ import annotations

import click

from pgsched import operations
from pgsched.cli.common import cli, echo_json, json_option
from pgsched.cli.workflows import open_database, plain, seconds_text, table
from pgsched.worker.process import POOL_LOOPS


@cli.command("workers")
@click.option("--all", "show_all", is_flag=True,
              help=f"Also workers silent for over {operations.LIVE_WORKER_SECONDS:g}s "
                   "(dead, or cut off from the database).")
@json_option
@click.pass_context
def workers_command(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """Live workers: host and pid, app, queues served, concurrency, runs they hold now,
    connections open now (by their application_name) of the most each may open, heartbeat
    age (on the database clock) and whether they are stopping; then the fleet's connection
    total and pgsched's other sessions on the server."""
    db = open_database(ctx)
    with db.connection() as conn:
        rows = conn.execute(db.sql("cli_workers"),
                            {"live_s": operations.LIVE_WORKER_SECONDS,
                             "all": show_all}).fetchall()
        others = [] if as_json else conn.execute(db.sql("cli_connections")).fetchall()
    if as_json:
        echo_json(plain(rows))
        return
    if not rows:
        click.echo("no live workers: start one with `pgsched worker APP`")
        return
    click.echo(table(
        ["WORKER", "APP", "VERSION", "QUEUES", "RUN", "CONNS", "HEARTBEAT", "STATE"],
        [[r["id"], r["app"], r["version"] or "?", ",".join(r["queues"]),
          f"{r['running']}/{r['concurrency']}",
          f"{r['connections']}/{r['max_connections'] or '?'}",
          seconds_text(r["heartbeat_age_s"]) + " ago",
          "stopping" if r["stopping"] else "live" if r["live"] else "silent"] for r in rows],
        shrink=[[3, 1], [0]],
    ))
    live = [r for r in rows if r["live"]]
    unknown = sum(1 for r in live if r["max_connections"] is None)
    click.echo(
        f"\nconnections: {sum(r['connections'] for r in live)} open now, at most "
        f"{sum(r['max_connections'] or 0 for r in live)} for {len(live)} live worker(s) "
        f"(each: its pool, max(PGSCHED_POOL_SIZE, concurrency + {POOL_LOOPS}), plus the claim "
        "loop, heartbeat, LISTEN and health check it runs)"
        + (f"; {unknown} of them (an older release) published no maximum" if unknown else ""))
    if others:
        click.echo("other pgsched sessions now: " + ", ".join(
            f"{o['application_name']} {o['connections']}" for o in others))
