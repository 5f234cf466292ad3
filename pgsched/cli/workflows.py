"""``pgsched workflows list|show|cancel|resume|retry|fork|versions`` and ``pgsched prune``.

Everything here works from ``--database-url`` and ``--schema`` alone: no user code is
imported. ``resume``, ``retry`` and ``fork`` only write rows; workers that have the code pick
them up. Human output fits an 80-column terminal; ``--json`` prints the documented shapes.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import click

from pgsched import operations
from pgsched.cli.common import cli, database_of, echo_json, json_option
from pgsched.cli.ids import ELLIPSIS, short_ids
from pgsched.clock import utcnow
from pgsched.db import Database
from pgsched.db.migrations import check_version
from pgsched.errors import InvalidOperation, WorkflowNotFound
from pgsched.handles import Handle

WIDTH = 80
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# -- shared by the operating commands (queues.py and schedules.py import these) ---------------


def open_database(ctx: click.Context) -> Database:
    """The database from settings, checked to be at this pgsched's schema version, so a
    missing or outdated schema says `pgsched migrate` instead of failing on a missing table."""
    db = database_of(ctx)
    ctx.call_on_close(db.close)
    check_version(db)
    return db


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``30d`` or ``2w``."""
    match = _DURATION.match(text)
    if not match:
        raise click.BadParameter(
            f"{text!r} is not a duration; write a number and a unit s, m, h, d or w, e.g. 30d"
        )
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_when(text: str) -> datetime:
    """A duration ago (``1h``) or an ISO date/time (UTC unless it says otherwise)."""
    if _DURATION.match(text):
        return utcnow() - parse_duration(text)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a duration (1h, 2d) nor an ISO time (2024-05-01T12:00)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def plain(value: Any) -> Any:
    """JSON-ready data: ISO-8601 times, string UUIDs, nested dicts and lists kept."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def age(when: datetime | None, now: datetime | None = None) -> str:
    """A compact age such as ``45s``, ``12m``, ``3h`` or ``5d`` (``-`` for none)."""
    if when is None:
        return "-"
    return seconds_text(((now or utcnow()) - when).total_seconds())


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0:
        return "in " + seconds_text(-seconds)
    if seconds < 10:
        return f"{seconds:.2f}s" if seconds < 1 else f"{seconds:.1f}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
          shrink: Sequence[Sequence[int]] = (), width: int = WIDTH) -> str:
    """Rows under headers, two spaces apart, fitted into ``width`` columns.

    ``shrink`` lists groups of column indexes allowed to narrow, in order: the widest column
    of the first group narrows first (down to 6 characters), then the next group's.
    """
    cells = [[str(c) if c is not None else "-" for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    for group in shrink:
        while sum(widths) + 2 * (len(widths) - 1) > width:
            candidates = [i for i in group if widths[i] > 6]
            if not candidates:
                break
            widths[max(candidates, key=lambda i: widths[i])] -= 1
    return "\n".join(
        "  ".join(_clip(c, w).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *cells]
    )


def resolve_id(db: Database, given: str) -> str:
    """The run id for ``given``: itself if it exists, else the one run whose id starts with
    it, so the clipped ids of a table (``0190c2d1-…``) can be used as they are shown."""
    try:
        Handle(db, given).status()
        return given
    except WorkflowNotFound:
        pass
    prefix = given.rstrip(ELLIPSIS)
    matches = operations.list_workflows(db, id_prefix=prefix, limit=2) if prefix else []
    if len(matches) == 1:
        return str(matches[0]["id"])
    if len(matches) > 1:
        raise InvalidOperation(
            f"{prefix!r} is the start of more than one run id; give more characters "
            f"(`pgsched workflows list --id-prefix {prefix}`)"
        )
    raise WorkflowNotFound(
        f"no run with id {given!r} or an id starting with it; find runs with "
        "`pgsched workflows list`"
    )


# -- workflows ------------------------------------------------------------------------------


@cli.group("workflows")
def workflows() -> None:
    """Find, inspect, cancel, resume, retry and fork runs."""


def run_filters(command: Callable[..., Any]) -> Callable[..., Any]:
    """The filters of `workflows list`, shared by the bulk cancel, resume and retry."""
    options = [
        click.option("--status", "statuses", multiple=True, metavar="STATUS",
                     type=click.Choice(operations.STATUSES, case_sensitive=False),
                     help="Only runs in this status (repeatable)."),
        click.option("--name", default=None, help="Only runs of this workflow."),
        click.option("--queue", default=None, help="Only runs on this queue."),
        click.option("--since", default=None, metavar="WHEN",
                     help="Created at or after WHEN: a duration ago (1h, 2d) or an ISO time."),
        click.option("--until", default=None, metavar="WHEN", help="Created before WHEN."),
        click.option("--id-prefix", default=None, help="Only runs whose id starts with this."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@workflows.command("list")
@run_filters
@click.option("--limit", type=click.IntRange(1, operations.MAX_LIMIT), default=50,
              show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@json_option
@click.pass_context
def list_command(ctx: click.Context, statuses: tuple[str, ...], name: str | None,
                 queue: str | None, since: str | None, until: str | None,
                 id_prefix: str | None, limit: int, offset: int, as_json: bool) -> None:
    """Runs, newest first."""
    db = open_database(ctx)
    rows = operations.list_workflows(
        db, status=list(statuses) or None, name=name, queue=queue,
        since=parse_when(since) if since else None, until=parse_when(until) if until else None,
        id_prefix=id_prefix, limit=limit, offset=offset,
    )
    if as_json:
        echo_json(plain(rows))
        return
    if not rows:
        click.echo("no runs match")
        return
    now = utcnow()
    shown = short_ids(r["id"] for r in rows)
    click.echo(table(
        ["ID", "NAME", "STATUS", "QUEUE", "TRY", "AGE"],
        [[shown[r["id"]], r["name"], r["status"], r["queue"],
          f"{r['attempts']}/{r['max_attempts']}", age(r["created_at"], now)] for r in rows],
        shrink=[[1, 3]],
    ))
    if len(rows) == limit:
        click.echo(f"(first {limit}; see more with --offset {offset + limit})")


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), default=str)


def _field(label: str, value: Any) -> str:
    text = "-" if value is None or value == "" else str(value)
    return textwrap.fill(text, WIDTH, initial_indent=f"{label:<13}", subsequent_indent=" " * 13,
                         break_long_words=True, replace_whitespace=False)


@workflows.command("show")
@click.argument("workflow_id", metavar="ID")
@json_option
@click.pass_context
def show_command(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """A run: inputs, output or error with its traceback, and each step with its timing."""
    db = open_database(ctx)
    run = operations.get_workflow(db, resolve_id(db, workflow_id))
    if as_json:
        echo_json(plain(run))
        return
    now = utcnow()
    lines = [
        _field("id", run["id"]),
        _field("name", run["name"]),
        _field("status", run["status"]),
        _field("queue", run["queue"]
               + (f" (priority {run['priority']})" if run["priority"] else "")),
        _field("attempts", f"{run['attempts']} of {run['max_attempts']}"),
        _field("created", f"{plain(run['created_at'])} ({age(run['created_at'], now)} ago)"),
        _field("started", plain(run["started_at"])),
        _field("finished", plain(run["finished_at"])),
        _field("duration", seconds_text(run["duration_s"])),
    ]
    if run["status"] == "ENQUEUED" and run["not_before"] > now:
        lines.append(_field("not before", plain(run["not_before"])))
    if run["status"] == "WAITING" and run["parent_id"] is None:
        waits_for = (f"a message on {run['wait_topic']!r}"
                     + ("" if run["wait_run"] == run["id"] else f" to {run['wait_run']}")
                     if run["wait_topic"] else "its wake time")
        lines.append(_field("waiting for", waits_for))
        lines.append(_field("wakes at", plain(run["wake_at"]) if run["wake_at"] else
                            "when the message arrives"))
    for label, key in (("executor", "executor"), ("parent", "parent_id"),
                       ("forked from", "forked_from"), ("schedule", "schedule_name"),
                       ("dedup key", "dedup_key"), ("version", "app_version")):
        if run[key]:
            lines.append(_field(label, run[key]))
    lines.append(_field("inputs", _json_text(run["inputs"])))
    if run["output"] is not None or run["status"] == "SUCCESS":
        lines.append(_field("output", _json_text(run["output"])))
    error = run["error"] or {}
    if error:
        lines.append(_field("error", f"{error.get('type', '')}: {error.get('message', '')}"))
        if error.get("traceback"):
            lines.append("traceback")
            lines.extend("  " + line for line in str(error["traceback"]).rstrip().splitlines())
    click.echo("\n".join(lines))
    if run["steps"]:
        click.echo("\nsteps")
        click.echo(table(
            ["#", "NAME", "KIND", "TRY", "DURATION", "FINISHED"],
            [[s["step_number"], s["name"], s["kind"], s["attempts"],
              seconds_text(s["duration_s"]), f"{age(s['finished_at'], now)} ago"]
             for s in run["steps"]],
            shrink=[[1]],
        ))
    if run["events"]:
        click.echo("\nevents")
        click.echo(table(["KEY", "VALUE", "SET"],
                         [[e["key"], _json_text(e["value"]), f"{age(e['updated_at'], now)} ago"]
                          for e in run["events"]], shrink=[[1]]))
    if run["messages"]:
        click.echo("\nmessages")
        click.echo(table(["TOPIC", "MESSAGE", "SENT", "READ BY STEP"],
                         [[m["topic"], _json_text(m["payload"]), f"{age(m['sent_at'], now)} ago",
                           m["consumed_step"] or "-"] for m in run["messages"]], shrink=[[1]]))
    if run["children"]:
        click.echo("\nchild runs")
        shown = short_ids(c["id"] for c in run["children"])
        click.echo(table(["ID", "NAME", "STATUS"],
                         [[shown[c["id"]], c["name"], c["status"]] for c in run["children"]],
                         shrink=[[1]]))


@workflows.command("versions")
@json_option
@click.pass_context
def versions_command(ctx: click.Context, as_json: bool) -> None:
    """Unfinished runs per code version (App.version) and the live workers of each: a run
    resumes on a worker of the version it started under while one is alive."""
    rows = operations.versions(open_database(ctx))
    if as_json:
        echo_json(plain(rows))
        return
    if not rows:
        click.echo("no unfinished runs and no workers")
        return
    click.echo(table(["VERSION", "ENQUEUED", "RUNNING", "WAITING", "WORKERS"],
                     [[r["version"] or "(not started)", r["enqueued"], r["running"],
                       r["waiting"], r["workers"]] for r in rows]))


@workflows.command("fork")
@click.argument("workflow_id", metavar="ID")
@click.option("--from-step", type=int, required=True, metavar="N",
              help="First step to run again; steps before it are replayed from checkpoints.")
@click.option("--queue", default=None, help="Run the fork on this queue (default: the same).")
@json_option
@click.pass_context
def fork_command(ctx: click.Context, workflow_id: str, from_step: int, queue: str | None,
                 as_json: bool) -> None:
    """Start a new run of ID's workflow with the same inputs that keeps the checkpoints
    before step N and runs step N onwards with the code deployed now."""
    db = open_database(ctx)
    source = resolve_id(db, workflow_id)
    handle = operations.fork(db, source, from_step=from_step, queue=queue)
    run = operations.get_workflow(db, handle.workflow_id)
    if as_json:
        echo_json({"id": run["id"], "forked_from": source, "from_step": from_step,
                   "queue": run["queue"], "status": run["status"],
                   "copied_steps": len(run["steps"])})
        return
    click.echo(f"forked {source} from step {from_step} as {run['id']} on queue {run['queue']}"
               f" ({len(run['steps'])} checkpoint(s) kept)")


@cli.command("prune")
@click.option("--older-than", "older_than", default="30d", show_default=True, metavar="AGE",
              help="Delete runs that finished longer ago than this (s, m, h, d or w).")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Runs deleted per transaction.")
@json_option
@click.pass_context
def prune_command(ctx: click.Context, older_than: str, batch_size: int, as_json: bool) -> None:
    """Delete finished runs (SUCCESS, ERROR, CANCELLED, DEAD) and their steps. Waiting and
    running runs are never touched."""
    age_limit = parse_duration(older_than)
    db = open_database(ctx)
    deleted = operations.prune(db, age_limit, batch_size=batch_size)
    if as_json:
        echo_json({"deleted": deleted, "older_than_s": age_limit.total_seconds()})
        return
    click.echo(f"pruned {deleted} run(s) that finished more than {older_than} ago")
