"""The ``pgsched`` command. The core knows nothing of it; each command group is a module."""

from __future__ import annotations

import sys

import click

from pgsched.cli import core_commands  # noqa: F401  (registers worker, migrate, db)
from pgsched.cli.common import cli
from pgsched.errors import PgschedError


def _register_optional_groups() -> None:
    from importlib import import_module

    for module in ("workflows", "queues", "schedules", "bench"):
        try:
            import_module(f"pgsched.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"pgsched.cli.{module}":
                raise


_register_optional_groups()


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PgschedError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
