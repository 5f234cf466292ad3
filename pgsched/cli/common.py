"""The root command group and what every command shares: settings and a database handle."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from pgsched import __version__
from pgsched.db import Database
from pgsched.settings import Settings, load_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="pgsched",
                      message="%(prog)s %(version)s")
@click.option(
    "--database-url",
    envvar="PGSCHED_DATABASE_URL",
    default=None,
    help="PostgreSQL URL (default: PGSCHED_DATABASE_URL, else the embedded server).",
)
@click.option(
    "--schema", envvar="PGSCHED_SCHEMA", default=None, help="Schema name (default pgsched)."
)
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, schema: str | None) -> None:
    """pgsched: cron schedules, queued jobs and durable workflows on PostgreSQL alone."""
    # Options become the environment the settings (and a loaded app) read, so there is one
    # source of configuration whether a value came from a flag, the environment or .env.
    if database_url:
        os.environ["PGSCHED_DATABASE_URL"] = database_url
    if schema:
        os.environ["PGSCHED_SCHEMA"] = schema


def settings_of(ctx: click.Context) -> Settings:
    return load_settings()


def database_of(ctx: click.Context) -> Database:
    """A database handle built from settings alone: operating needs no user code."""
    settings = settings_of(ctx)
    return Database(
        settings.database_url, settings.schema_name, data_dir=settings.data_dir, pool_size=2,
        pooler=settings.pooler, application_name="pgsched-cli",
    )


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
