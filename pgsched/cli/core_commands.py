"""``pgsched worker``, ``pgsched migrate`` and ``pgsched db``."""

from __future__ import annotations

import os

import click

from pgsched.cli.common import cli, database_of, echo_json, json_option, settings_of
from pgsched.db import mask_url
from pgsched.db.migrations import current_version, latest_version, migrate


@cli.command()
@click.argument("app_path", metavar="APP")
@click.option("--queues", default=None, help="Comma-separated queues to serve (default: all).")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Runs at once in this worker (default: PGSCHED_CONCURRENCY, 8).")
@click.option("--health-port", type=click.IntRange(0, 65535), default=None,
              envvar="PGSCHED_HEALTH_PORT",
              help="Serve /healthz, /readyz and /metrics on this port.")
@click.option("--health-host", default=None, envvar="PGSCHED_HEALTH_HOST",
              help="Address the health server binds (default: PGSCHED_HEALTH_HOST, else "
                   "127.0.0.1; 0.0.0.0 in a pod, so the kubelet can reach it).")
@click.pass_context
def worker(ctx: click.Context, app_path: str, queues: str | None, concurrency: int | None,
           health_port: int | None, health_host: str | None) -> None:
    """Run a worker for APP (module:attr or a path to a .py file) until SIGTERM/SIGINT."""
    from pgsched.loader import load_app
    from pgsched.worker import Worker

    if health_host:  # read by the app's settings, like every option of the root command
        os.environ["PGSCHED_HEALTH_HOST"] = health_host
    app = load_app(app_path)
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    Worker(app, queues=names, concurrency=concurrency, health_port=health_port).run()


@cli.command("migrate")
@click.pass_context
def migrate_command(ctx: click.Context) -> None:
    """Create or upgrade the schema (safe to run from many processes at once)."""
    db = database_of(ctx)
    applied = migrate(db)
    click.echo(f"schema {db.schema} at version {latest_version()}"
               + (f" (applied {', '.join(map(str, applied))})" if applied else " (up to date)"))


@cli.command("db")
@json_option
@click.pass_context
def db_command(ctx: click.Context, as_json: bool) -> None:
    """Which database this is, its schema version, and the embedded data directory."""
    from pgsched.db.embedded import default_data_dir

    settings = settings_of(ctx)
    db = database_of(ctx)
    with db.connection() as conn:
        version = current_version(conn, db.schema)
        server = conn.execute("SHOW server_version").fetchone()["server_version"]
    info = {
        "url": mask_url(db.url),
        "embedded": settings.database_url is None,
        "data_dir": (settings.data_dir or str(default_data_dir()))
        if settings.database_url is None else None,
        "server_version": server,
        "schema": db.schema,
        "schema_version": version,
        "expected_version": latest_version(),
    }
    if as_json:
        echo_json(info)
        return
    for key, value in info.items():
        click.echo(f"{key:<17}{value if value is not None else '-'}")
