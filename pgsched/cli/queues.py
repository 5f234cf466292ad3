"""``pgsched queues``: what each queue is doing right now."""

from __future__ import annotations

from typing import Any

import click

from pgsched import operations
from pgsched.cli.common import cli, echo_json, json_option
from pgsched.cli.workflows import open_database, plain, seconds_text, table


def _limits(row: dict[str, Any]) -> str:
    """``fleet/worker`` concurrency, ``-`` for no limit, plus ``r`` and the rate if any."""
    text = f"{row['concurrency'] or '-'}/{row['worker_concurrency'] or '-'}"
    if row["rate_limit"]:
        text += f" r{row['rate_limit']}/{row['rate_period_s']:g}s"
    return text


@cli.command("queues")
@json_option
@click.pass_context
def queues_command(ctx: click.Context, as_json: bool) -> None:
    """Per queue: runs waiting (ready now), scheduled for later and running; limits
    (fleet/worker concurrency); age of the oldest waiting run; runs finished in the last
    minute; live workers serving it."""
    db = open_database(ctx)
    rows = operations.queue_stats(db)
    if as_json:
        echo_json(plain(rows))
        return
    if not rows:
        click.echo("no queues yet: start a worker, or enqueue a run")
        return
    click.echo(table(
        ["QUEUE", "WAIT", "LATER", "RUN", "LIMITS", "OLDEST", "DONE/MIN", "FAIL/MIN", "WORKERS"],
        [[r["queue"], r["waiting"], r["scheduled"], r["running"], _limits(r),
          seconds_text(r["oldest_waiting_s"]), r["finished_last_minute"],
          r["failed_last_minute"], r["workers"]] for r in rows],
        shrink=[[0], [4]],
    ))
