"""The frozen-time testing example in examples/ is a real pytest file that passes."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_cron_test_example_passes(env: dict[str, str], tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(ROOT / "examples" / "cron_test_example.py")],
        cwd=ROOT, env={**env, "PGSCHED_DATABASE_URL": env["PGSCHED_DATABASE_URL"],
                       "PGSCHED_SCHEMA": env["PGSCHED_SCHEMA"],
                       # Its own temp root: a nested session resets the shared one to 0700.
                       "PYTEST_DEBUG_TEMPROOT": str(tmp_path)},
        capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "4 passed" in done.stdout
