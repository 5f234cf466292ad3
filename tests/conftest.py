"""Fixtures shared by the whole suite: a real PostgreSQL, an isolated schema per test, apps,
and real worker subprocesses.

The server is ``PGSCHED_TEST_DATABASE_URL`` when set, else the embedded server pgsched uses
itself, started once per session in a temporary data directory.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

import pgsched
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"

#: The fault tests' throwaway servers and proxies (tests/fault_rig.py).
pytest_plugins = ["tests.fault_rig"]


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """The embedded server lives outside pytest's temp root: any other pytest session (a
    nested one, a colleague's) resets that root to mode 0700, which would lock out the
    server's own system user in the middle of this session."""
    url = os.environ.get("PGSCHED_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from pgsched.db.embedded import start_embedded

    base = Path(tempfile.mkdtemp(prefix="pgsched-test-db-"))
    base.chmod(0o755)
    yield start_embedded(str(base / "pgdata"))
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    """A fresh schema per test, so tests never see each other's rows."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def env(database_url: str, schema: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for apps in this process and for worker subprocesses."""
    values = {
        "PGSCHED_DATABASE_URL": database_url,
        "PGSCHED_SCHEMA": schema,
        "PGSCHED_POOL_SIZE": "4",
        "PGSCHED_HEARTBEAT_INTERVAL": "0.5",
        "PGSCHED_TAKEOVER_TIMEOUT": "2",
        "PGSCHED_POLL_INTERVAL": "0.5",
        "PGSCHED_SHUTDOWN_GRACE": "10",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **values, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def make_app(env: dict[str, str]) -> Iterator[Callable[..., pgsched.App]]:
    apps: list[pgsched.App] = []

    def factory(name: str = "test", **overrides: object) -> pgsched.App:
        app = pgsched.App(name, **overrides)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.close()


@pytest.fixture
def load_app_module(env: dict[str, str]) -> Iterator[Callable[[str], ModuleType]]:
    """Execute ``tests/apps/NAME.py`` (or ``examples/NAME.py``) afresh, so its App reads
    this test's environment.

    The test process then enqueues with the very functions the worker subprocess runs.
    """
    loaded: list[ModuleType] = []

    def load(name: str) -> ModuleType:
        path = ROOT / name if name.startswith("examples/") else APPS / name
        spec = importlib.util.spec_from_file_location(f"pgsched_test_app_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        module.app.close()
        sys.modules.pop(module.__name__, None)


@pytest.fixture
def steps(load_app_module: Callable[[str], ModuleType], sql: Callable[..., list[tuple]]
          ) -> ModuleType:
    """tests/apps/steps_app.py with its tables, for the step-composition and async tests."""
    module = load_app_module("steps_app.py")
    module.app.migrate()
    for ddl in module.TABLES:
        sql(ddl)
    return module


@pytest.fixture
def sql(database_url: str, schema: str) -> Callable[..., list[tuple]]:
    """Run SQL in the test's schema and return all rows (autocommit)."""

    def run(query: str, params: tuple | dict | None = None) -> list[tuple]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}", public')
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    return run


class Workers:
    """Real ``pgsched worker`` subprocesses; whatever a test leaves running is killed."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env = env
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []

    def start(self, app: str, *args: str, env: dict[str, str] | None = None,
              skew: float | None = None) -> subprocess.Popen:
        """``skew``: seconds to shift the worker's clock by (see tests/skewed.py)."""
        log = open(self.tmp_path / f"worker-{len(self.procs)}.log", "w")  # noqa: SIM115
        target = str(APPS / app) if not app.startswith(("/", "examples")) else app
        proc = subprocess.Popen(
            [sys.executable, "-m", *(["tests.skewed", str(skew)] if skew else ["pgsched"]),
             "worker", target, *args],
            env={**self.env, **(env or {})},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        proc.log_path = self.tmp_path / f"worker-{len(self.procs)}.log"  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def wait_registered(
        self, sql: Callable[..., list[tuple]], count: int, timeout: float = 30
    ) -> None:
        wait_for(
            lambda: sql("SELECT count(*) FROM workers")[0][0] >= count,
            timeout,
            what=f"{count} worker(s) to register",
            logs=self.logs,
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.log_path} ---\n{Path(p.log_path).read_text()[-3000:]}"  # type: ignore[attr-defined]
            for p in self.procs
        )

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(env, tmp_path)
    yield pool
    pool.stop_all()
