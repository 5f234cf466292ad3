"""Named SQL statements, one ``.sql`` file each, loaded with importlib.resources.

Files write ``{schema}`` where the schema goes; it is filled in once as a quoted identifier
(``psycopg.sql.Identifier``), never by string formatting, and every value is a ``%(name)s``
parameter. Rendering once per schema yields a stable query text, which psycopg prepares
server-side after a few executions.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from psycopg import sql


@cache
def _text(folder: str, name: str) -> str:
    return (resources.files("pgsched") / "sql" / folder / f"{name}.sql").read_text("utf-8")


@cache
def render(folder: str, name: str, schema: str) -> str:
    composed = sql.SQL(_text(folder, name)).format(schema=sql.Identifier(schema))  # type: ignore[arg-type]
    return composed.as_string(None)


def query(name: str, schema: str) -> str:
    return render("queries", name, schema)


def migration_names() -> list[str]:
    folder = resources.files("pgsched") / "sql" / "migrations"
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".sql"))
