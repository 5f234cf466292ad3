"""The operating commands: workflows, queues, schedules and prune, from a URL and a schema
alone (no app is imported), with human output that fits 80 columns and stable ``--json``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta

import pytest
from click.testing import CliRunner, Result

import pgsched
import pgsched.cli  # noqa: F401  (registers every command group)
from pgsched.cli.common import cli
from pgsched.errors import InvalidOperation, SchemaOutdated, WorkflowNotFound
from tests.conftest import ROOT
from tests.test_operations import NOW, insert_run, insert_steps

SQL = Callable[..., list[tuple]]
LONG_NAME = "a_workflow_with_a_really_long_descriptive_name_for_testing_widths"

LIST_KEYS = {"id", "name", "status", "queue", "priority", "attempts", "max_attempts",
             "parent_id", "forked_from", "schedule_name", "scheduled_at", "executor",
             "error_type", "not_before", "created_at", "started_at", "finished_at", "updated_at"}
STEP_KEYS = {"step_number", "name", "kind", "output", "error", "attempts", "child_id",
             "started_at", "finished_at", "duration_s"}
QUEUE_KEYS = {"queue", "waiting", "scheduled", "running", "concurrency", "worker_concurrency",
              "rate_limit", "rate_period_s", "slots_held", "oldest_waiting_s",
              "finished_last_minute", "failed_last_minute", "workers"}


@pytest.fixture
def run_cli(database_url: str, schema: str, env: dict[str, str]) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--database-url", database_url, "--schema", schema,
                                        *args])
    return run


@pytest.fixture
def migrated(make_app: Callable[..., pgsched.App], sql: SQL) -> None:
    make_app("cli-test").migrate()
    error = {"type": "ValueError", "message": "bad input",
             "traceback": "Traceback (most recent call last):\n  ...\nValueError: bad input\n"}
    insert_run(sql, "0190c2d1-aaaa-7000-8000-000000000001", "SUCCESS", name=LONG_NAME,
               queue="emails", created=NOW - timedelta(hours=2))
    insert_steps(sql, "0190c2d1-aaaa-7000-8000-000000000001", 3)
    insert_run(sql, "failed-1", "ERROR", name="charge", error=error,
               created=NOW - timedelta(hours=1))
    insert_run(sql, "dead-1", "DEAD", name="charge", created=NOW - timedelta(minutes=30))
    insert_run(sql, "waiting-1", "ENQUEUED", name="charge", queue="emails")


def _fits(text: str) -> None:
    assert text.strip(), "no output"
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert too_wide == []


def test_workflows_list_table_and_json(migrated: None, run_cli) -> None:
    result = run_cli("workflows", "list")
    assert result.exit_code == 0, result.output
    _fits(result.output)
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "QUEUE", "TRY", "AGE"]
    assert [line.split()[0] for line in lines[1:]][:3] == ["waiting-1", "dead-1", "failed-1"]
    # Ids are cut to the shortest prefix that tells the rows shown apart, and work as ids.
    assert "0190c2d1…" in result.output
    assert run_cli("workflows", "show", "0190c2d1…").exit_code == 0

    result = run_cli("workflows", "list", "--status", "error", "--status", "DEAD", "--json")
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == ["dead-1", "failed-1"]
    assert set(rows[0]) == LIST_KEYS
    assert rows[1]["error_type"] == "ValueError" and "T" in rows[1]["created_at"]

    assert [r["id"] for r in json.loads(run_cli(
        "workflows", "list", "--since", "45m", "--name", "charge", "--json").output)] == [
        "waiting-1", "dead-1"]
    assert [r["id"] for r in json.loads(run_cli(
        "workflows", "list", "--queue", "emails", "--limit", "1", "--json").output)] == [
        "waiting-1"]
    assert run_cli("workflows", "list", "--status", "nope").exit_code == 2
    assert "neither a duration" in run_cli("workflows", "list", "--since", "yesterday").output


def test_workflows_show_table_and_json(migrated: None, run_cli) -> None:
    result = run_cli("workflows", "show", "failed-1")
    assert result.exit_code == 0, result.output
    _fits(result.output)
    assert "ValueError: bad input" in result.output and "Traceback" in result.output

    result = run_cli("workflows", "show", "0190c2d1-aaaa-7000-8000-000000000001")
    _fits(result.output)
    assert "steps" in result.output and "step_3" in result.output and "0.30s" in result.output

    run = json.loads(run_cli("workflows", "show", "0190c2d1-aaaa", "--json").output)
    assert run["id"] == "0190c2d1-aaaa-7000-8000-000000000001"  # a unique prefix is enough
    assert set(run) == LIST_KEYS - {"error_type"} | {
        "dedup_key", "inputs", "output", "error", "timeout_s", "duration_s", "steps", "children",
        "wake_at", "wait_run", "wait_topic", "app_version", "events", "messages"}
    assert [s["step_number"] for s in run["steps"]] == [1, 2, 3]
    assert set(run["steps"][0]) == STEP_KEYS

    missing = run_cli("workflows", "show", "nope")
    assert isinstance(missing.exception, WorkflowNotFound)


def test_cancel_resume_retry_many_ids(migrated: None, run_cli, sql: SQL) -> None:
    result = run_cli("workflows", "cancel", "waiting-1", "nope", "failed-1")
    assert result.exit_code == 2
    assert "cancelled waiting-1 (now CANCELLED)" in result.output
    assert "no run with id 'nope'" in result.output
    assert "already finished as ERROR" in result.output

    result = run_cli("workflows", "resume", "waiting-1", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == [
        {"id": "waiting-1", "ok": True, "status": "ENQUEUED", "error": None}]

    result = run_cli("workflows", "retry", "failed-1", "dead-1", "--json")
    assert [r["status"] for r in json.loads(result.output)] == ["ENQUEUED", "ENQUEUED"]
    result = run_cli("workflows", "retry", "waiting-1", "--json")
    assert result.exit_code == 2
    (failure,) = json.loads(result.output)
    assert failure["ok"] is False and "not stopped" in failure["error"]
    assert dict(sql("SELECT id, status FROM workflows WHERE id <> "
                    "'0190c2d1-aaaa-7000-8000-000000000001'")) == {
        "waiting-1": "ENQUEUED", "failed-1": "ENQUEUED", "dead-1": "ENQUEUED"}


def test_fork(migrated: None, run_cli) -> None:
    source = "0190c2d1-aaaa-7000-8000-000000000001"
    result = run_cli("workflows", "fork", source, "--from-step", "2", "--json")
    assert result.exit_code == 0, result.output
    forked = json.loads(result.output)
    assert set(forked) == {"id", "forked_from", "from_step", "queue", "status", "copied_steps"}
    assert forked["forked_from"] == source and forked["copied_steps"] == 1
    assert forked["queue"] == "emails" and forked["status"] == "ENQUEUED"

    text = run_cli("workflows", "fork", source, "--from-step", "4").output
    assert f"forked {source} from step 4 as {source}-fork-" in text
    bad = run_cli("workflows", "fork", source, "--from-step", "5")
    assert isinstance(bad.exception, InvalidOperation)
    assert "between 1 and 4" in str(bad.exception)


def test_queues_table_and_json(migrated: None, run_cli, sql: SQL) -> None:
    sql("INSERT INTO queues (name, concurrency, worker_concurrency, rate_limit, rate_period_s, "
        "updated_at) VALUES ('emails', 5, 2, 100, 60, now())")
    result = run_cli("queues")
    assert result.exit_code == 0, result.output
    _fits(result.output)
    header, *rows = result.output.splitlines()
    assert header.split()[:4] == ["QUEUE", "WAIT", "LATER", "RUN"]
    emails = next(r for r in rows if r.startswith("emails"))
    assert "5/2 r100/60s" in emails

    stats = json.loads(run_cli("queues", "--json").output)
    assert {s["queue"] for s in stats} == {"emails"}  # default has no recent or active runs
    assert all(set(s) == QUEUE_KEYS for s in stats)
    assert next(s for s in stats if s["queue"] == "emails")["waiting"] == 1


def test_schedules_list_pause_resume(migrated: None, run_cli, sql: SQL) -> None:
    assert "no schedules" in run_cli("schedules").output
    sql("INSERT INTO schedules (name, expression, timezone, queue, catch_up, overlap, "
        "next_tick, created_at, updated_at) VALUES ('nightly_report_for_all_the_customers', "
        "'0 3 * * *', 'Europe/Berlin', 'default', 'latest', 'allow', now() + interval '2 hours', "
        "now(), now())")
    result = run_cli("schedules")
    _fits(result.output)
    assert "nightly_report" in result.output and "in 1h" in result.output
    assert run_cli("schedules", "pause", "nightly_report_for_all_the_customers").exit_code == 0
    listed = json.loads(run_cli("schedules", "list", "--json").output)
    assert listed[0]["paused"] is True and listed[0]["expression"] == "0 3 * * *"
    assert run_cli("schedules", "resume", "nightly_report_for_all_the_customers").exit_code == 0
    assert sql("SELECT paused FROM schedules") == [(False,)]
    unknown = run_cli("schedules", "pause", "nope")
    assert "no schedule named 'nope'" in str(unknown.exception)


def test_prune_command(migrated: None, run_cli, sql: SQL) -> None:
    insert_run(sql, "ancient", "SUCCESS", created=NOW - timedelta(days=60))
    result = run_cli("prune", "--older-than", "30d", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"deleted": 1, "older_than_s": 30 * 86400.0}
    assert "pruned 0 run(s)" in run_cli("prune", "--older-than", "1w").output
    assert "not a duration" in run_cli("prune", "--older-than", "30 days").output
    assert sql("SELECT count(*) FROM workflows WHERE id = 'ancient'") == [(0,)]


def test_an_unmigrated_schema_says_to_migrate(run_cli) -> None:
    result = run_cli("workflows", "list")
    assert isinstance(result.exception, SchemaOutdated)
    assert "pgsched migrate" in str(result.exception)


def test_errors_print_cleanly_from_the_real_entry_point(
    migrated: None, env: dict[str, str]
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pgsched", "workflows", "fork", "failed-1", "--from-step", "9"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: run failed-1 recorded 0 step")
    assert "Traceback" not in proc.stderr
