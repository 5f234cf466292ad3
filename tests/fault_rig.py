"""The fault tests' rig: a throwaway server per test (optionally behind a TCP proxy), the
environment for workers pointed at it, and SQL that survives the server's restarts.

Workers log in as their own role, ``fault_worker``, so a test can count the worker's
connections in ``pg_stat_activity`` apart from its own. Job code records its executions
straight to the server (``FAULT_RECORD_URL``), never through the proxy a test cuts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from types import ModuleType

import pytest

from tests.tcpproxy import TcpProxy, tcp_proxy
from tests.throwaway import Throwaway, retrying, throwaway_server

WORKER_ROLE = "fault_worker"
TERMINAL = ("SUCCESS", "ERROR", "CANCELLED", "DEAD")


class FaultDb:
    def __init__(self, server: Throwaway, schema: str, stack: ExitStack) -> None:
        self.server = server
        self.schema = schema
        self._stack = stack
        self._proxy: TcpProxy | None = None

    @property
    def proxy(self) -> TcpProxy:
        """A proxy to this server, made on first use and closed at the end of the test."""
        if self._proxy is None:
            self._proxy = self._stack.enter_context(tcp_proxy("127.0.0.1", self.server.port))
        return self._proxy

    def worker_env(self, *, through_proxy: bool = False, **extra: str) -> dict[str, str]:
        url = self.proxy.url(WORKER_ROLE) if through_proxy else self.server.url_for(WORKER_ROLE)
        return {"PGSCHED_DATABASE_URL": url, "FAULT_RECORD_URL": self.server.url, **extra}

    def sql(self, query: str, params: tuple | None = None, timeout: float = 60) -> list[tuple]:
        """Run one query in the test's schema, retrying while the server restarts."""
        return retrying(self.server.url, query, params, schema=self.schema, timeout=timeout)

    def load_app(self, load_app_module: Callable[[str], ModuleType]) -> ModuleType:
        """``tests/apps/fault_app.py`` in this process, its schema and tables in place."""
        module = load_app_module("fault_app.py")
        module.app.migrate()
        for statement in module.TABLES:
            self.sql(statement)
        return module

    def executions(self) -> dict[int, int]:
        """How many times each job's plain code ran."""
        return dict(self.sql("SELECT job, count(*)::int FROM executions GROUP BY job"))

    def running_on(self, pid: int) -> set[int]:
        """Jobs the database says the worker with this pid is running."""
        return {job for (job,) in self.sql(
            "SELECT (inputs->'args'->>0)::int FROM workflows WHERE status = 'RUNNING' "
            "AND executor LIKE %s", (f"%:{pid}:%",))}

    def statuses(self) -> dict[str, int]:
        return dict(self.sql("SELECT status, count(*) FROM workflows GROUP BY status"))

    def worker_connections(self) -> int:
        return self.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
                        (WORKER_ROLE,))[0][0]


@pytest.fixture
def throwaway(schema: str, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[Callable[..., FaultDb]]:
    """``throwaway(settings=None, start=True)``: a private server for this test; the test
    process's own apps (``load_app_module``) connect to it directly."""
    with ExitStack() as stack:

        def make(settings: dict[str, str] | None = None, *, start: bool = True) -> FaultDb:
            server = stack.enter_context(throwaway_server(settings, start=start))
            monkeypatch.setenv("PGSCHED_DATABASE_URL", server.url)
            if start:
                create_worker_role(server)
            return FaultDb(server, schema, stack)

        yield make


def create_worker_role(server: Throwaway) -> None:
    retrying(server.url, f"CREATE ROLE {WORKER_ROLE} LOGIN SUPERUSER")


@dataclass
class Figures:
    """What a drain under faults ended with: the numbers the torture runs print."""

    runs: int
    statuses: dict[str, int]
    duplicate_effects: int
    runs_without_effect: int
    plain_reexecutions: int
    seconds: float
    failures: list[tuple]

    def line(self) -> str:
        count = self.statuses.get
        return (f"runs={self.runs} SUCCESS={count('SUCCESS', 0)} ERROR={count('ERROR', 0)} "
                f"DEAD={count('DEAD', 0)} CANCELLED={count('CANCELLED', 0)} "
                f"duplicate_effects={self.duplicate_effects} "
                f"runs_without_effect={self.runs_without_effect} "
                f"plain_reexecutions={self.plain_reexecutions} seconds={self.seconds:.1f}")


def figures(fault: FaultDb, runs: int, seconds: float) -> Figures:
    """Read the figures from the database: a job's number is its first argument."""
    (duplicates,) = fault.sql(
        "SELECT coalesce(sum(n - 1), 0)::int FROM "
        "(SELECT count(*) AS n FROM effects GROUP BY job) per_job")[0]
    (missing,) = fault.sql(
        "SELECT count(*)::int FROM workflows w WHERE w.status = 'SUCCESS' AND NOT EXISTS "
        "(SELECT 1 FROM effects e WHERE e.job = (w.inputs->'args'->>0)::int)")[0]
    (reexecutions,) = fault.sql(
        "SELECT (count(*) - count(DISTINCT job))::int FROM executions")[0]
    failures = fault.sql("SELECT id, status, error->>'type', left(error->>'message', 120) "
                         "FROM workflows WHERE status <> 'SUCCESS' ORDER BY id LIMIT 10")
    return Figures(runs, fault.statuses(), duplicates, missing, reexecutions, seconds, failures)
