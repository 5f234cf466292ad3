"""The README's first command: a worker on the example app, on a fresh embedded server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_worker_runs_the_example_on_the_embedded_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGSCHED_")}
    env["PGSCHED_DATA_DIR"] = str(tmp_path / "pgdata")
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgsched", "worker", "examples/quickstart.py"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "fulfilled" in log.read_text(), 60, what="an order to be fulfilled",
                 logs=log.read_text)
        text = log.read_text()
        assert "embedded PostgreSQL running" in text
        assert text.count("sending 'digest") >= 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert "stopped" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "pgdata" / "PG_VERSION").exists()
