"""``pgsched workflows cancel|resume|retry``: by id, or in bulk by the filters of ``list``.

A bulk change lists the matching top-level runs first (child workflows follow their parent),
prints the count and asks before it changes anything; ``--yes`` skips the question. Each run
goes through the same single-run operation as an id given by hand, so every run is reported
on its own and one that changed state meanwhile is refused, not overwritten.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from pgsched import operations
from pgsched.cli.common import echo_json, json_option
from pgsched.cli.ids import short_ids
from pgsched.cli.workflows import open_database, parse_when, resolve_id, run_filters, workflows
from pgsched.db import Database
from pgsched.errors import PgschedError
from pgsched.handles import Handle


def _apply(ctx: click.Context, ids: Sequence[str], verb: str,
           operation: Callable[[Database, str], object], as_json: bool) -> None:
    """Apply an operation to each id; report every id, and exit 2 if any failed."""
    db = open_database(ctx)
    results: list[dict[str, Any]] = []
    for given in ids:
        try:
            workflow_id = resolve_id(db, given)
            operation(db, workflow_id)
            status = Handle(db, workflow_id).status()
            results.append({"id": workflow_id, "ok": True, "status": status, "error": None})
            if not as_json:
                click.echo(f"{verb} {workflow_id} (now {status})")
        except PgschedError as exc:
            results.append({"id": given, "ok": False, "status": None, "error": str(exc)})
            if not as_json:
                click.echo(f"error: {exc}", err=True)
    if as_json:
        echo_json(results)
    elif len(results) > 1:
        click.echo(f"{verb} {sum(r['ok'] for r in results)} of {len(results)} run(s)")
    if not all(r["ok"] for r in results):
        sys.exit(2)


def _matching(ctx: click.Context, verb: str, applies_to: tuple[str, ...],
              filters: dict[str, Any]) -> list[str]:
    """Every top-level run the filters match, among those the operation applies to. Child
    workflows are left out: they follow their parent (and refuse to be operated alone)."""
    statuses = [s.upper() for s in filters["statuses"]] or list(applies_to)
    wrong = [s for s in statuses if s not in applies_to]
    if wrong:
        raise click.BadParameter(
            f"{verb} applies to {', '.join(applies_to)} runs, not {', '.join(wrong)}",
            param_hint="--status")
    db = open_database(ctx)
    query = {
        "status": statuses, "name": filters["name"], "queue": filters["queue"],
        "since": parse_when(filters["since"]) if filters["since"] else None,
        "until": parse_when(filters["until"]) if filters["until"] else None,
        "id_prefix": filters["id_prefix"],
    }
    ids: list[str] = []
    offset = 0
    while True:
        page = operations.list_workflows(db, **query, limit=operations.MAX_LIMIT,
                                         offset=offset)
        ids.extend(str(r["id"]) for r in page if r["parent_id"] is None)
        offset += len(page)
        if len(page) < operations.MAX_LIMIT:
            return ids


def _bulk(ctx: click.Context, ids: tuple[str, ...], name: str, verb: str,
          applies_to: tuple[str, ...], operation: Callable[[Database, str], object],
          as_json: bool, yes: bool, filters: dict[str, Any]) -> None:
    """IDs as given, or every run the filters match after a count and a confirmation."""
    filtered = any(value for value in filters.values())
    if ids and filtered:
        raise click.UsageError("give run ids or filters, not both")
    if ids:
        _apply(ctx, ids, verb, operation, as_json)
        return
    if not filtered:
        raise click.UsageError(
            f"give run ids, or filters such as --status, --queue and --since to {name} every "
            "run they match (see `pgsched workflows list` with the same filters)")
    matched = _matching(ctx, name, applies_to, filters)
    if not matched:
        if as_json:
            echo_json([])
        else:
            click.echo("no runs match")
        return
    if not yes:
        shown = short_ids(matched[:5])
        click.echo(f"{len(matched)} run(s) match: "
                   + ", ".join(shown[i] for i in matched[:5])
                   + (", ..." if len(matched) > 5 else ""), err=True)
        if not click.confirm(f"{name} all {len(matched)}?", err=True):
            click.echo("nothing changed (pass --yes to skip this question)", err=True)
            sys.exit(1)
    _apply(ctx, matched, verb, operation, as_json)


def bulk_command(name: str, verb: str, applies_to: tuple[str, ...],
                 operation: Callable[[Database, str], object], doc: str) -> None:
    """``workflows cancel|resume|retry``: by id, or in bulk by the filters of ``list``."""

    @workflows.command(name, help=doc)
    @click.argument("ids", metavar="[ID...]", nargs=-1)
    @run_filters
    @click.option("--yes", "-y", is_flag=True, help="Do not ask before a bulk change.")
    @json_option
    @click.pass_context
    def command(ctx: click.Context, ids: tuple[str, ...], yes: bool, as_json: bool,
                **filters: Any) -> None:
        _bulk(ctx, ids, name, verb, applies_to, operation, as_json, yes, filters)


_BULK_HELP = (" With filters instead of ids (the same as `workflows list`: --status, --name,"
              " --queue, --since, --until, --id-prefix) it applies to every matching run of"
              " the statuses it applies to, after printing the count and asking (--yes skips"
              " the question).")
bulk_command(
    "cancel", "cancelled", ("ENQUEUED", "RUNNING"), operations.cancel,
    "Cancel waiting or running runs (and their child workflows). A running run stops at its "
    "next step boundary; its queue slot is freed at once." + _BULK_HELP)
bulk_command(
    "resume", "resumed", ("CANCELLED",), operations.resume,
    "Put CANCELLED runs back on their queues; each continues from its last checkpoint."
    + _BULK_HELP)
bulk_command(
    "retry", "retried", ("ERROR", "DEAD"), operations.retry,
    "Put failed (ERROR) or dead-lettered (DEAD) runs back on their queues; each continues "
    "from its last checkpoint with a fresh count of attempts." + _BULK_HELP)
