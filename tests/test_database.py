"""The database layer on the default path: no URL, so the embedded server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

OPEN_WITHOUT_URL = """
import sys
from pgsched.db import Database

db = Database(None, "pgsched", data_dir=sys.argv[1])
with db.connection() as conn:
    print(conn.execute("select 41 + 1 as n").fetchone()["n"])
db.close()
"""


def test_a_pool_opens_on_the_embedded_server_without_a_url(tmp_path: Path) -> None:
    """Opening the pool starts the embedded server first; this hung forever when both took
    one non-reentrant lock (every command but ``worker`` deadlocked with no URL)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", OPEN_WITHOUT_URL, str(tmp_path / "pgdata")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "42"
