"""``pgsched bench`` runs end to end on a tiny load and reports every number it promises.
No timing is asserted: the numbers depend on the machine."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pgsched.bench import REFERENCE_CEILING, TARGETS
from tests.conftest import ROOT


def test_bench_reports_every_measurement_and_cleans_up(env, database_url) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pgsched", "bench", "--jobs", "40", "--concurrency", "2",
         "--latency-samples", "5", "--idle-seconds", "1", "--json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["jobs"] == 40 and result["concurrency"] == 2
    assert set(result["server"]) == {"server_version", "fsync", "synchronous_commit"}
    for key in ("single_enqueue_per_s", "batch_enqueue_per_s", "drain_per_s",
                "idle_statements_per_s", "statements_per_job"):
        assert isinstance(result[key], float) and result[key] >= 0, key
    assert result["drain_per_s"] > 0 and result["statements_per_job"] > 0
    assert set(result["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    ceiling = result["ceiling"]
    assert ceiling["tool"] in ("pgbench", "psycopg") and ceiling["per_s"] > 0
    assert ceiling["per_s"] == sum(ceiling["samples"]) / 2 and ceiling["psycopg_per_s"] > 0
    for key, ratio in result["versus_ceiling"].items():
        assert ratio == result[key] / ceiling["per_s"], key
        assert result["scaled_targets"][key] == pytest.approx(
            TARGETS[key] * ceiling["per_s"] / REFERENCE_CEILING), key
    with psycopg.connect(database_url) as conn:
        left = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s",
                            (result["schema"],)).fetchone()[0]
    assert left == 0, "the bench must drop its throwaway schema"


def test_bench_from_a_folder_holding_a_pgsched_directory(env, tmp_path) -> None:
    """Run from a clone's parent, the folder's `pgsched/` must not shadow the installed package
    in the bench's worker subprocess (it crashed with FileNotFoundError before)."""
    shadow = tmp_path / "pgsched"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the folder shadowed the package')\n")
    proc = subprocess.run(
        [shutil.which("pgsched", path=str(Path(sys.executable).parent)) or "pgsched", "bench",
         "--jobs", "10", "--concurrency", "1", "--latency-samples", "5", "--idle-seconds", "1",
         "--json"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["drain_per_s"] > 0
