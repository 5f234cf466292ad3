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
    under_load = result["latency_under_load_ms"]
    assert set(under_load) == {"p50", "p99", "samples"} and under_load["samples"] >= 0
    beside_cpu = result["latency_beside_cpu_ms"]
    assert set(beside_cpu) == {"same_worker", "own_worker"} and result["cpu_job_ms"] > 0
    for placement, measured in beside_cpu.items():
        assert measured["samples"] == 5, placement  # the CPU-bound backlog never ran dry
        assert measured["p50"] <= measured["p99"], placement
    assert "scaling" not in result
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


def test_soak_reports_each_slice_and_the_tables_at_the_end(env, database_url) -> None:
    """``--soak`` at a tiny N: every slice drains, with a claim p99 from the worker's own
    histogram, and the end state of the three tables is reported; the schema is dropped."""
    proc = subprocess.run(
        [sys.executable, "-m", "pgsched", "bench", "--soak", "30", "--slice", "10",
         "--concurrency", "2", "--json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["soak"] == 30 and result["slice"] == 10
    assert result["autovacuum"]["autovacuum"] in ("on", "off")
    assert [(s["from"], s["to"]) for s in result["slices"]] == [(0, 10), (10, 20), (20, 30)]
    for part in result["slices"]:
        assert part["drain_per_s"] > 0 and part["enqueue_per_s"] > 0
        assert part["claims"] >= 1 and part["claim_p99_ms"] > 0 and part["claim_mean_ms"] > 0
        assert part["table_bytes"] > 0 and part["index_bytes"] > 0 and part["dead_tuples"] >= 0
    assert result["last_vs_first"] == (result["slices"][-1]["drain_per_s"]
                                       / result["slices"][0]["drain_per_s"])
    assert set(result["tables"]) == {"workflows", "steps", "queue_slots"}
    for row in result["tables"].values():
        assert {"live_tuples", "dead_tuples", "autovacuums", "table_bytes",
                "index_bytes"} <= set(row)
    assert result["tables"]["workflows"]["table_bytes"] > 0
    with psycopg.connect(database_url) as conn:
        left = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s",
                            (result["schema"],)).fetchone()[0]
    assert left == 0, "the soak must drop its throwaway schema"


def run_scaling(env, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "pgsched", "bench", "--jobs", "40", "--concurrency", "2",
         "--latency-samples", "5", "--idle-seconds", "1", "--producers", "2",
         "--workers", "2", "--rounds", "2", *extra, "--json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)["scaling"]


def test_bench_scales_producers_and_workers_round_by_round(env) -> None:
    """``--producers 2 --workers 2 --rounds 2``: each round has 1 and 2 producer processes
    beside pgbench -c 1 and -c 2, drains by 1 and 2 worker processes, and drains a queue
    whose fleet-wide limit is half of the 2 workers' capacity, which is never exceeded; the
    summary is the median and range of the rounds."""
    scaling = run_scaling(env)
    assert scaling["producers"] == 2 and scaling["workers"] == [1, 2]
    assert len(scaling["rounds"]) == 2 and scaling["compare"] is None
    keys = {"producers_1_per_s", "producers_2_per_s", "drain_1_workers_per_s",
            "drain_2_workers_per_s", "drain_2_workers_limited_per_s", "limited_max_running",
            "limited_snapshots", "limited_concurrency"}
    for row in scaling["rounds"]:
        assert set(row) == {"ceiling", "pgsched"}
        assert set(row["pgsched"]) == keys
        # A snapshot may fall between runs, so the most seen RUNNING may be 0 at this size.
        assert all(value > 0 for key, value in row["pgsched"].items()
                   if key != "limited_max_running")
        assert row["pgsched"]["limited_concurrency"] == 2  # 2 workers x concurrency 2, halved
        assert 0 <= row["pgsched"]["limited_max_running"] <= 2
        assert set(row["ceiling"]) == {"pgbench_c1", "pgbench_c2", "pgbench_enqueue_c1",
                                       "pgbench_enqueue_c2"}
        if shutil.which("pgbench"):  # each script ran (a script pgbench refuses gives None)
            assert all(value > 0 for value in row["ceiling"].values())
    for key in keys:
        values = [row["pgsched"][key] for row in scaling["rounds"]]
        summary = scaling["summary"]["pgsched"][key]
        assert (summary["min"], summary["max"]) == (min(values), max(values))
        assert summary["median"] == pytest.approx(sum(values) / 2)


def test_bench_compares_with_pgqueuer_when_installed(env) -> None:
    pytest.importorskip("pgqueuer")
    pytest.importorskip("asyncpg")
    scaling = run_scaling(env, "--compare", "pgqueuer")
    keys = {"producers_1_per_s", "producers_2_per_s", "drain_1_workers_per_s",
            "drain_2_workers_per_s", "single_enqueue_per_s", "start_p50_ms", "start_p99_ms"}
    for row in scaling["rounds"]:
        assert set(row["pgqueuer"]) == keys
        assert set(row["pgsched"]) == keys | {"drain_2_workers_limited_per_s",
                                              "limited_max_running", "limited_snapshots",
                                              "limited_concurrency"}
        assert all(value > 0 for value in row["pgqueuer"].values())


def test_compare_without_pgqueuer_says_what_to_install(env, tmp_path) -> None:
    """With pgqueuer not importable, ``--compare pgqueuer`` fails with the pip command."""
    blocker = tmp_path / "pgqueuer.py"
    blocker.write_text("raise ImportError('not installed here')\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pgsched", "bench", "--jobs", "10", "--concurrency", "1",
         "--latency-samples", "5", "--idle-seconds", "1", "--compare", "pgqueuer"],
        env={**env, "PYTHONPATH": f"{tmp_path}:{env['PYTHONPATH']}"}, cwd=ROOT,
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode != 0
    assert "pip install 'pgsched[bench]'" in proc.stderr
