"""The ``pgsched`` command. The core knows nothing of it; each command group is a module."""

from __future__ import annotations

import sys

import click

# Importing each command module registers its commands on the root group.
from pgsched.cli import (  # noqa: F401
    bench,
    bulk,
    core_commands,
    dashboard,
    enqueue,
    queues,
    schedules,
    workers,
    workflows,
)
from pgsched.cli.common import cli
from pgsched.errors import PgschedError
from pgsched.logs import configure_logging


def main() -> None:
    """The ``pgsched`` process: logs as a worker does, then runs the command."""
    try:
        # Every command logs in the worker's format (JSON with PGSCHED_LOG_JSON), so one log
        # pipeline reads both.
        configure_logging()
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PgschedError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
