"""Failover to a promoted streaming replica in the middle of a drain (issue 15, part 1).

A primary and a synchronous streaming replica (``pg_basebackup -R``) from the server binaries
on the machine; three workers drain jobs of a transaction step and a plain step, two more run
an every-second cron, all with a multi-host URL and ``target_session_attrs=read-write``. When
a share of the drain has finished, the primary is stopped with ``-m immediate`` (a crash) and
the replica promoted. The workers must find the new primary by themselves; every run ends
SUCCESS, no transaction step commits twice, and no cron tick runs twice.

Synchronous replication (``synchronous_standby_names = '*'``) is what makes a commit the
worker was told about survive the failover; see the README's "High availability". The
last test shows what an asynchronous replica can lose (an expected failure).
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.fault_rig import TERMINAL, WORKER_ROLE, FaultDb, figures
from tests.throwaway import Throwaway, retrying
from tests.waiting import wait_for

SETTINGS = {
    "PGSCHED_HEARTBEAT_INTERVAL": "1",
    "PGSCHED_TAKEOVER_TIMEOUT": "10",
    "PGSCHED_POOL_SIZE": "8",
}


@contextmanager
def streaming_replica(primary: Throwaway, *, via_port: int | None = None,
                      synchronous: bool = True) -> Iterator[Throwaway]:
    """A hot standby of ``primary`` on its own port, made synchronous once it streams.
    ``via_port``: it streams through that port (a proxy the test can cut)."""
    replica = Throwaway(Path(tempfile.mkdtemp(prefix="pgsched-replica-")))
    try:
        replica.socket_dir.mkdir(parents=True)
        if replica.user is not None:
            entry = pwd.getpwnam(replica.user)
            for path in (replica.root, replica.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        replica._check("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port),
                       "-U", "postgres", "-D", str(replica.data), "-R", "-X", "stream",
                       "-c", "fast", "--no-sync")
        with open(replica.data / "postgresql.conf", "a") as conf:
            conf.write(f"port = '{replica.port}'\n"
                       f"unix_socket_directories = '{replica.socket_dir}'\n")
        if via_port is not None:  # after the -R line in the auto file: this one wins
            with open(replica.data / "postgresql.auto.conf", "a") as conf:
                conf.write(f"primary_conninfo = 'host=127.0.0.1 port={via_port} "
                           "user=postgres'\nwal_retrieve_retry_interval = '200ms'\n")
        replica.start()
        if not synchronous:
            wait_for(lambda: retrying(primary.url, "SELECT count(*) FROM pg_stat_replication "
                                      "WHERE state = 'streaming'")[0][0] == 1, 30,
                     what="the replica to stream", logs=replica.log)
            yield replica
            return
        retrying(primary.url, "ALTER SYSTEM SET synchronous_standby_names = '*'")
        retrying(primary.url, "SELECT pg_reload_conf()")
        wait_for(lambda: retrying(primary.url, "SELECT count(*) FROM pg_stat_replication "
                                  "WHERE sync_state = 'sync'")[0][0] == 1, 30,
                 what="the replica to stream synchronously", logs=replica.log)
        yield replica
    finally:
        replica.destroy()
        shutil.rmtree(replica.root, ignore_errors=True)


def failover_drain(throwaway, workers, load_app_module, monkeypatch,  # type: ignore[no-untyped-def]
                   *, jobs: int, timeout: float) -> None:
    fault = throwaway()
    primary = fault.server
    with ExitStack() as stack:
        replica = stack.enter_context(streaming_replica(primary))
        both = f"127.0.0.1:{primary.port},127.0.0.1:{replica.port}"

        def url(user: str) -> str:
            return f"postgresql://{user}@{both}/postgres?target_session_attrs=read-write"

        monkeypatch.setenv("PGSCHED_DATABASE_URL", url("postgres"))
        module = fault.load_app(load_app_module)
        fault.sql("CREATE TABLE fleet_ticks (scheduled_at timestamptz NOT NULL, pid int)")
        module.drain.enqueue_many([(module.drain_job, (job, 0.0, job % 7 == 0), {})
                                   for job in range(jobs)])
        env = {"PGSCHED_DATABASE_URL": url(WORKER_ROLE), "FAULT_RECORD_URL": url("postgres"),
               **SETTINGS}
        for _ in range(3):
            workers.start("fault_app.py", "--queues", "drain", "--concurrency", "4", env=env)
        for _ in range(2):
            workers.start("cron_fleet.py", env=env)
        started = time.monotonic()
        new = FaultDb(replica, fault.schema, stack)

        def finished(db: FaultDb) -> int:
            return db.sql("SELECT count(*) FROM workflows WHERE status = ANY(%s) "
                          "AND name = 'drain_job'", (list(TERMINAL),))[0][0]

        wait_for(lambda: finished(fault) >= 0.3 * jobs, timeout, what="30% of the drain",
                 logs=workers.logs)
        wait_for(lambda: fault.sql("SELECT count(*) FROM fleet_ticks")[0][0] >= 2, timeout,
                 what="cron ticks before the failover", logs=workers.logs)
        primary.stop("immediate")
        replica._check("pg_ctl", "promote", "-D", str(replica.data), "-w")
        promoted = time.monotonic()
        (promoted_at,) = new.sql("SELECT clock_timestamp()")[0]
        wait_for(lambda: finished(new) == jobs, timeout, what="every run to finish",
                 interval=0.25, logs=lambda: f"{new.statuses()}\n{workers.logs()}")
        (first_after,) = new.sql("SELECT min(finished_at) FROM workflows "
                                 "WHERE finished_at > %s AND name = 'drain_job'",
                                 (promoted_at,))[0]
        # Cron keeps going on the new primary too.
        last_tick = new.sql("SELECT max(scheduled_at) FROM fleet_ticks")[0][0]
        wait_for(lambda: new.sql("SELECT max(scheduled_at) FROM fleet_ticks")[0][0]
                 > last_tick, 30, what="a cron tick after the failover", logs=workers.logs)
        result = figures(new, jobs, time.monotonic() - started)
        # The figures count the drain's runs, not the cron's (which have no effects row).
        result.statuses = dict(new.sql("SELECT status, count(*) FROM workflows "
                                       "WHERE name = 'drain_job' GROUP BY status"))
        (result.runs_without_effect,) = new.sql(
            "SELECT count(*)::int FROM workflows w WHERE w.name = 'drain_job' AND NOT EXISTS "
            "(SELECT 1 FROM effects e WHERE e.job = (w.inputs->'args'->>0)::int)")[0]
        twice = new.sql("SELECT scheduled_at, count(*) FROM fleet_ticks GROUP BY 1 "
                        "HAVING count(*) > 1")
        ticks, first, last = new.sql("SELECT count(*), min(scheduled_at), max(scheduled_at) "
                                     "FROM fleet_ticks")[0]
        missed = new.sql("SELECT ticks_missed FROM schedules")[0][0]
        seconds = int((last - first).total_seconds()) + 1
        print(f"\n[failover] {result.line()}; first run finished on the new primary "
              f"{(first_after - promoted_at).total_seconds():.2f}s after promotion "
              f"(promotion at +{promoted - started:.1f}s); cron: {ticks} ticks over "
              f"{seconds} s, {len(twice)} twice, {missed} counted missed")
        assert result.statuses == {"SUCCESS": jobs}, (result.line(), result.failures,
                                                     workers.logs()[-4000:])
        assert result.duplicate_effects == 0
        assert result.runs_without_effect == 0
        assert twice == []
        assert ticks + missed >= seconds  # every second ran once or was counted missed


def test_workers_follow_a_promoted_replica(throwaway, workers, load_app_module,
                                           monkeypatch) -> None:
    failover_drain(throwaway, workers, load_app_module, monkeypatch, jobs=1000, timeout=120)


@pytest.mark.torture
def test_a_5000_job_drain_follows_a_promoted_replica(throwaway, workers, load_app_module,
                                                     monkeypatch) -> None:
    failover_drain(throwaway, workers, load_app_module, monkeypatch, jobs=5000, timeout=300)


def test_a_checkpoint_lost_with_an_asynchronous_replica_reruns_its_step(
        throwaway, workers, load_app_module, monkeypatch) -> None:
    from tests.tcpproxy import tcp_proxy

    fault = throwaway()
    primary = fault.server
    with ExitStack() as stack:
        link = stack.enter_context(tcp_proxy("127.0.0.1", primary.port))
        replica = stack.enter_context(streaming_replica(primary, via_port=link.port,
                                                        synchronous=False))
        both = f"127.0.0.1:{primary.port},127.0.0.1:{replica.port}"
        url = f"postgresql://postgres@{both}/postgres?target_session_attrs=read-write"
        monkeypatch.setenv("PGSCHED_DATABASE_URL", url)
        module = fault.load_app(load_app_module)
        workers.start("fault_app.py", env={"PGSCHED_DATABASE_URL": url,
                                           "FAULT_RECORD_URL": url, **SETTINGS})
        module.app.start(module.gated_effect, 1, workflow_id="gated")
        new = FaultDb(replica, fault.schema, stack)
        # The claim reached the replica; then replication stops.
        wait_for(lambda: _replayed(new, "SELECT status FROM workflows WHERE id = 'gated'")
                 == [("RUNNING",)], 30, what="the claim on the replica", logs=workers.logs)
        link.cut()
        fault.sql("INSERT INTO gates VALUES ('before')")
        wait_for(lambda: fault.sql("SELECT count(*) FROM effects")[0][0] == 1, 30,
                 what="the transaction step to commit on the primary", logs=workers.logs)
        primary.stop("immediate")
        replica._check("pg_ctl", "promote", "-D", str(replica.data), "-w")
        assert new.sql("SELECT count(*) FROM effects") == [(0,)]  # the commit was lost
        new.sql("INSERT INTO gates VALUES ('before'), ('after')")
        wait_for(lambda: new.sql("SELECT status FROM workflows WHERE id = 'gated'")[0][0]
                 in TERMINAL, 60, what="the run to finish", logs=workers.logs)
        assert new.sql("SELECT status FROM workflows WHERE id = 'gated'") == [("SUCCESS",)]
        # Exactly-once on the surviving history: the lost step ran again.
        assert new.sql("SELECT count(*) FROM effects") == [(1,)]


def _replayed(db: FaultDb, query: str) -> list[tuple] | None:
    """``query``'s rows on a replica, or None while the replica has not yet replayed the
    creation of the tables it reads (a loaded machine replays late)."""
    try:
        return db.sql(query)
    except psycopg.errors.UndefinedTable:
        return None
