"""Named statements as the server and psycopg receive them."""

from __future__ import annotations

from importlib import resources

from psycopg import _queries

from pgsched.db.sqlfiles import _code, query, render

QUERY_NAMES = sorted(p.name[:-4] for p in (resources.files("pgsched") / "sql" / "queries")
                     .iterdir() if p.name.endswith(".sql"))


def test_every_statement_fits_psycopgs_query_cache() -> None:
    """psycopg converts a longer query anew on every execution (its cache skips it): the
    finish of a drain's every round paid that while its comments made it 5,455 characters."""
    limit = _queries.MAX_CACHED_STATEMENT_LENGTH
    schema = "s" * 63  # the longest name PostgreSQL allows
    lengths = {name: len(query(name, schema)) for name in QUERY_NAMES}
    assert len(lengths) > 50
    assert {name: n for name, n in lengths.items() if n > limit} == {}


def test_a_statement_names_its_file_and_drops_its_comment_lines() -> None:
    text = query("finish", "s")
    lines = text.splitlines()
    assert lines[0] == "-- pgsched queries/finish.sql"
    assert not [line for line in lines[1:] if line.lstrip().startswith("--") or not line.strip()]
    assert '"s".workflows' in text


def test_only_whole_comment_lines_go() -> None:
    """A ``--`` inside a line (a string literal, a trailing note) is the server's to read."""
    assert _code("-- why\nSELECT '--x' AS a -- note\n\n  -- more\nFROM t") == (
        "SELECT '--x' AS a -- note\nFROM t")


def test_migrations_render_with_their_name() -> None:
    assert render("migrations", "0001_initial", "s").startswith(
        "-- pgsched migrations/0001_initial.sql\n")
