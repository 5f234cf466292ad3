"""Named SQL statements, one ``.sql`` file each, loaded with importlib.resources.

Files write ``{schema}`` where the schema goes; it is filled in once as a quoted identifier
(``psycopg.sql.Identifier``), never by string formatting, and every value is a ``%(name)s``
parameter. Rendering once per schema yields a stable query text, which psycopg prepares
server-side after a few executions.

The files' comment lines are for their readers; the rendered text drops them and starts
with one naming the file instead (what ``pg_stat_activity`` and ``pg_stat_statements`` show).
That keeps the hot statements short: psycopg converts a query of over 4,096 characters anew
on every execution (its cache skips longer ones), which cost a drain a tenth of its worker's
CPU when the comments of ``finish.sql`` pushed it past that length.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from psycopg import sql


@cache
def _text(folder: str, name: str) -> str:
    return (resources.files("pgsched") / "sql" / folder / f"{name}.sql").read_text("utf-8")


def _code(text: str) -> str:
    """``text`` without its whole-line ``--`` comments and blank lines."""
    return "\n".join(line for line in text.splitlines()
                     if line.strip() and not line.lstrip().startswith("--"))


@cache
def render(folder: str, name: str, schema: str) -> str:
    text = f"-- pgsched {folder}/{name}.sql\n{_code(_text(folder, name))}"
    composed = sql.SQL(text).format(schema=sql.Identifier(schema))  # type: ignore[arg-type]
    return composed.as_string(None)


def query(name: str, schema: str) -> str:
    return render("queries", name, schema)


def migration_names() -> list[str]:
    folder = resources.files("pgsched") / "sql" / "migrations"
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".sql"))
