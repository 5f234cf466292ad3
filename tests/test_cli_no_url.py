"""Every ``pgsched`` command completes on a fresh machine with no database URL: the embedded
server in a fresh HOME, each command its own process, as an operator types it.

A command that hangs fails on its timeout; the walk over the command tree at the end makes a
new command fail this test until it is exercised here.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import click
import pytest

import pgsched
import pgsched.cli  # noqa: F401  (registers every command group)
from pgsched.cli.common import cli
from tests.conftest import APPS
from tests.test_readme import User, fresh_user
from tests.waiting import wait_for

TIMEOUT = 120


def leaf_commands(group: click.Group, prefix: str = "") -> set[str]:
    """``schedules show``, ``workflows list``, ...: every command a user can run."""
    found: set[str] = set()
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found |= leaf_commands(command, path + " ")
        else:
            found.add(path)
    return found


class Operator:
    """Runs ``pgsched ...`` lines and remembers which commands it ran."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.ran: set[str] = set()
        self.paths = leaf_commands(cli)

    def _note(self, line: str) -> None:
        words = line.split()[1:]
        for size in (2, 1):
            if " ".join(words[:size]) in self.paths:
                self.ran.add(" ".join(words[:size]))
                return

    def text(self, line: str) -> str:
        self._note(line)
        return self.user.run(line, timeout=TIMEOUT)

    def json(self, line: str) -> Any:
        self._note(line)
        return json.loads(self.user.complete(line + " --json", timeout=TIMEOUT).stdout)


def _dashboard_serves(op: Operator, run_id: str) -> None:
    """``pgsched dashboard`` serves the runs list from the embedded server, then stops cleanly
    on SIGTERM."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc, log = op.user.start(f"pgsched dashboard --port {port}", "dashboard")
    op.ran.add("dashboard")

    def runs_page() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/runs", timeout=5) as page:
                return page.read().decode()
        except OSError:
            return ""

    assert run_id in wait_for(runs_page, TIMEOUT, interval=0.2, what="the dashboard to serve",
                              logs=log.read_text)
    op.user.stop(proc, log)


@pytest.fixture
def operator() -> Iterator[Operator]:
    person = fresh_user()
    shutil.copy(APPS / "cli_app.py", person.project / "cli_app.py")
    yield Operator(person)
    person.close()


@pytest.mark.timeout(600)
def test_every_command_completes_with_no_url(operator: Operator) -> None:
    op = operator
    assert op.text("pgsched --version").strip() == f"pgsched {pgsched.__version__}"
    assert "workflows" in op.text("pgsched --help")
    assert op.json("pgsched db")["embedded"] is True
    assert "schema pgsched at version" in op.text("pgsched migrate")

    worker, log = op.user.start("pgsched worker cli_app.py", "worker")
    op.user.background.append((worker, log))
    op.ran.add("worker")
    wait_for(lambda: op.json("pgsched workers"), TIMEOUT, interval=0.5,
             what="the worker to register", logs=log.read_text)
    assert "emails" in op.text("pgsched workers")
    assert "emails" in op.text("pgsched queues")

    assert "new_year_report" in op.text("pgsched schedules list")
    assert "why" in op.text("pgsched schedules show new_year_report")
    manual = op.json("pgsched schedules run new_year_report")["id"]
    op.text("pgsched schedules pause new_year_report")
    op.text("pgsched schedules resume new_year_report")

    op.text("pgsched enqueue emails add --args '[1, 2]' --workflow-id sum-1")
    for run_id in ("sum-1", manual):
        wait_for(lambda run_id=run_id: op.json(f"pgsched workflows show {run_id}")["status"]
                 == "SUCCESS", TIMEOUT, interval=0.5, what=f"{run_id} to succeed",
                 logs=log.read_text)
    assert "sum-1" in op.text("pgsched workflows list")
    _dashboard_serves(op, "sum-1")
    assert op.json("pgsched workflows fork sum-1 --from-step 1")["forked_from"] == "sum-1"
    assert [r["workers"] for r in op.json("pgsched workflows versions") if r["version"]] == [1]

    op.text("pgsched enqueue emails boom --args '[\"no\"]' --workflow-id boom-1")
    wait_for(lambda: op.json("pgsched workflows show boom-1")["status"] == "DEAD", TIMEOUT,
             interval=0.5, what="boom-1 to die", logs=log.read_text)
    assert op.json("pgsched workflows retry --status DEAD --yes")[0]["id"] == "boom-1"
    op.text("pgsched enqueue emails nap --args '[0]' --delay 1h --workflow-id later-1")
    assert "cancelled later-1" in op.text("pgsched workflows cancel later-1")
    assert "resumed later-1" in op.text("pgsched workflows resume later-1")
    assert "pruned 0 run(s)" in op.text("pgsched prune --older-than 30d")
    assert op.json("pgsched bench --jobs 10 --concurrency 1 --latency-samples 5 "
                   "--idle-seconds 1")["drain_per_s"] > 0

    # Commands log as the worker does, as JSON lines with PGSCHED_LOG_JSON.
    json_logs = dict(op.user.env, PGSCHED_LOG_JSON="true")
    done = subprocess.run("pgsched queues", shell=True, cwd=op.user.project, env=json_logs,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stderr.splitlines()[0])["record"]
    assert record["message"].startswith("embedded PostgreSQL running")
    assert record["extra"]["component"] == "db"

    assert op.ran == op.paths, f"commands not exercised: {sorted(op.paths - op.ran)}"
