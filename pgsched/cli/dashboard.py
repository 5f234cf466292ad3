"""``pgsched dashboard``: the web dashboard, from the same settings as every other command."""

from __future__ import annotations

import signal

import click

from pgsched.cli.common import cli
from pgsched.cli.workflows import open_database


@cli.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Only this machine can reach the default; put anything "
                   "wider behind your own authentication.")
@click.option("--port", default=8188, show_default=True, type=click.IntRange(0, 65535))
@click.option("--allow-actions", is_flag=True,
              help="Allow cancel, resume, retry and schedule pause/resume from the page; each "
                   "needs the token in PGSCHED_DASHBOARD_TOKEN.")
@click.pass_context
def dashboard_command(ctx: click.Context, host: str, port: int, allow_actions: bool) -> None:
    """Serve the web dashboard: runs, run details, queues, schedules and workers.
    Read-only unless --allow-actions. Needs `pip install 'pgsched[dashboard]'`."""
    try:
        import uvicorn

        from pgsched.dashboard import create_app
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs the dashboard extra ({exc.name} is missing): "
            "pip install 'pgsched[dashboard]'"
        ) from None
    db = open_database(ctx)
    app = create_app(db, allow_actions=allow_actions)
    click.echo(f"pgsched dashboard on http://{host}:{port}/ "
               f"({'actions enabled' if allow_actions else 'read-only'})")
    # uvicorn shuts down gracefully on SIGTERM or Ctrl-C, then raises the signal again to the
    # handler it found; a no-op one lets the command end normally (exit 0), as a worker does.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    uvicorn.run(app, host=host, port=port, log_level="warning")
