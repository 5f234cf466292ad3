"""The fleet's connection footprint in ``pgsched workers``: the most each worker may open by
the README's formula, the fleet total, and what each holds now in ``pg_stat_activity``, with
two real workers busy enough to fill their pools."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

import pgsched.cli  # noqa: F401  (registers every command group)
from pgsched.cli.common import cli
from tests.conftest import Workers
from tests.throwaway import free_port
from tests.waiting import wait_for

#: Connections a worker opens outside its pool in this test: the claim loop, the heartbeat
#: and LISTEN (no health port is served).
DEDICATED = 3
#: Pool connections the worker keeps beside its jobs' (takeover, cron, prune loops).
POOL_LOOPS = 4


@pytest.fixture
def run_cli(database_url: str, schema: str, env: dict[str, str]) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        result = CliRunner().invoke(cli, ["--database-url", database_url, "--schema", schema,
                                          *args])
        assert result.exit_code == 0, result.output
        return result
    return run


def test_workers_shows_each_workers_maximum_and_what_it_holds_now(
        load_app_module, workers: Workers, sql, env: dict[str, str], run_cli) -> None:
    footprint = load_app_module("footprint_app.py")
    footprint.app.migrate()
    pool_size = int(env["PGSCHED_POOL_SIZE"])
    concurrencies = (2, 6)
    for concurrency in concurrencies:
        workers.start("footprint_app.py", "--concurrency", str(concurrency))
    workers.wait_registered(sql, 2)
    # The README's formula: max(PGSCHED_POOL_SIZE, concurrency + 4) pooled + dedicated ones.
    expected = {c: max(pool_size, c + POOL_LOOPS) + DEDICATED for c in concurrencies}
    assert expected == {2: 9, 6: 13}  # the pool size (4) wins for neither: concurrency + 4

    # Enough long jobs to keep every slot of both workers holding a pooled connection.
    handles = [footprint.app.start(footprint.busy, 1.5) for _ in range(2 * sum(concurrencies))]
    peak: dict[int, int] = {c: 0 for c in concurrencies}

    def sample_until_drained() -> bool:
        rows = json.loads(run_cli("workers", "--json").output)
        assert {r["concurrency"]: r["max_connections"] for r in rows} == expected
        for row in rows:
            # Never above the maximum, at any moment of the drain.
            assert row["connections"] <= row["max_connections"], row
            peak[row["concurrency"]] = max(peak[row["concurrency"]], row["connections"])
        return all(h.status() == "SUCCESS" for h in handles)

    wait_for(sample_until_drained, 90, interval=0.2, what="the jobs to finish",
             logs=workers.logs)
    # The count is real: busy, each worker held every slot's transaction step, the claim
    # loop, the heartbeat and LISTEN at once.
    assert all(peak[c] >= c + DEDICATED for c in concurrencies), peak

    text = run_cli("workers").output
    header = text.splitlines()[0].split()
    assert header == ["WORKER", "APP", "VERSION", "QUEUES", "RUN", "CONNS", "HEARTBEAT",
                      "STATE"]
    footer = next(line for line in text.splitlines() if line.startswith("connections:"))
    assert f"at most {sum(expected.values())} for 2 live worker(s)" in footer
    assert f"max(PGSCHED_POOL_SIZE, concurrency + {POOL_LOOPS})" in footer
    # The CLI's own session is one of pgsched's other sessions in the database.
    assert "pgsched-cli" in text


def test_each_worker_publishes_its_own_maximum_and_gone_workers_are_forgotten(
        load_app_module, workers: Workers, sql, env: dict[str, str], run_cli) -> None:
    """A worker serving a health port has one connection more (named pgsched-health) than
    one that does not, in the same fleet; a worker that left loses its entry when the next
    one starts."""
    footprint = load_app_module("footprint_app.py")
    footprint.app.migrate()
    pool_size = int(env["PGSCHED_POOL_SIZE"])
    plain = workers.start("footprint_app.py", "--concurrency", "2")
    workers.wait_registered(sql, 1)
    workers.start("footprint_app.py", "--concurrency", "2", "--health-port", str(free_port()))
    workers.wait_registered(sql, 2)
    rows = json.loads(run_cli("workers", "--json").output)
    assert [(r["pid"], r["dedicated_connections"], r["max_connections"]) for r in rows] == [
        (plain.pid, DEDICATED, max(pool_size, 2 + POOL_LOOPS) + DEDICATED),
        (rows[1]["pid"], DEDICATED + 1, max(pool_size, 2 + POOL_LOOPS) + DEDICATED + 1),
    ]
    wait_for(lambda: "pgsched-health" in run_cli("workers").output, 30,
             what="the health check's session", logs=workers.logs)

    plain.terminate()  # deregisters
    plain.wait(30)
    workers.start("footprint_app.py", "--concurrency", "2")
    wait_for(lambda: sql("SELECT count(*) FROM workers")[0][0] == 2, 30,
             what="the third worker", logs=workers.logs)
    wait_for(lambda: len(sql("SELECT name FROM fleet_settings "
                             "WHERE name LIKE 'connections/%%'")) == 2, 30,
             what="the entries of the two live workers only", logs=workers.logs)
    assert sorted(name for (name,) in sql("SELECT name FROM fleet_settings "
                                          "WHERE name LIKE 'connections/%%'")) == sorted(
        f"connections/{worker_id}" for (worker_id,) in sql("SELECT id FROM workers"))


def test_a_worker_declared_dead_publishes_again_when_it_registers_again(
        load_app_module, workers: Workers, sql, run_cli) -> None:
    """Takeover removes a silent worker's row and the next registration anywhere prunes its
    entry; when the worker comes back it registers again, and publishes again with it."""
    footprint = load_app_module("footprint_app.py")
    footprint.app.migrate()
    workers.start("footprint_app.py", "--concurrency", "2")
    workers.wait_registered(sql, 1)
    (worker_id,) = sql("SELECT id FROM workers")[0]
    # What a takeover does to its row and the next registration to its entry, in one
    # statement: as two, the worker's heartbeat could register and publish again between
    # them and the second would delete the fresh entry.
    sql("WITH gone AS (DELETE FROM workers WHERE id = %s) "
        "DELETE FROM fleet_settings WHERE name = %s", (worker_id, f"connections/{worker_id}"))
    wait_for(lambda: sql("SELECT count(*) FROM fleet_settings WHERE name = %s",
                         (f"connections/{worker_id}",))[0][0] == 1, 30,
             what="the worker to register and publish again", logs=workers.logs)
    (row,) = json.loads(run_cli("workers", "--json").output)
    assert row["id"] == worker_id and row["max_connections"] is not None


def test_a_worker_that_published_nothing_shows_an_unknown_maximum(
        make_app, sql, run_cli) -> None:
    """A worker row from a release that published no maximum (inserted here as one would
    be): its maximum is unknown, never guessed, and the total says how many are."""
    make_app().migrate()
    sql("INSERT INTO workers (id, hostname, pid, app, queues, workflows, concurrency) "
        "VALUES ('old:1:abc', 'old', 1, 'legacy', '{default}', '{}', 4)")
    (row,) = json.loads(run_cli("workers", "--json").output)
    assert (row["connections"], row["max_connections"]) == (0, None)
    text = run_cli("workers").output
    assert "0/?" in text
    assert "at most 0 for 1 live worker(s)" in text
    assert "1 of them (an older release) published no maximum" in text
