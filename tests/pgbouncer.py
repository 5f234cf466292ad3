"""A PgBouncer in transaction mode in front of a test's PostgreSQL, as users deploy it.

Debian's ``pgbouncer`` package; a test skips when it is not installed. PgBouncer refuses to
run as root, so it runs as the ``postgres`` system user (or the owner of the server's socket
directory) from a fresh directory owned by it.
Authentication is ``trust`` (the upstream server trusts local connections too); the users a
test connects as are listed in the auth file, as PgBouncer requires even for ``trust``, with
the upstream URL's password, which PgBouncer uses to log in to the server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.throwaway import free_port

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def installed() -> bool:
    return Path(BINARY).exists()


def version() -> str:
    """``PgBouncer 1.18.0``: the first line of ``pgbouncer --version``."""
    out = subprocess.run([BINARY, "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


class PgBouncer:
    def __init__(self, root: Path, upstream: str, users: tuple[str, ...]) -> None:
        parts = conninfo_to_dict(upstream)
        self.root = root
        self.port = free_port()
        self.dbname = parts.get("dbname") or "postgres"
        self.user = parts.get("user") or "postgres"
        self.ini = root / "pgbouncer.ini"
        self.log = root / "pgbouncer.log"
        # PgBouncer logs in upstream with the auth file's password (the embedded server's
        # URL carries one; the others trust local connections).
        password = parts.get("password") or ""
        (root / "userlist.txt").write_text(
            "".join(f'"{name}" "{password}"\n' for name in {self.user, *users}))
        self.ini.write_text(
            "[databases]\n"
            f"* = host={parts.get('host') or '127.0.0.1'} port={parts.get('port') or 5432}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {root}\n"
            f"auth_type = trust\nauth_file = {root / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            "default_pool_size = 20\nmax_client_conn = 1000\n"
            f"logfile = {self.log}\npidfile = {root / 'pgbouncer.pid'}\n"
            "admin_users = postgres\n"
        )
        self.proc: subprocess.Popen | None = None
        host = parts.get("host") or ""
        #: A unix socket (the embedded server's) sits in the server's own 0700 directory:
        #: only its owner may connect to it.
        self.run_as = (pwd.getpwuid(os.stat(host).st_uid).pw_name if host.startswith("/")
                       else "postgres")

    def url_for(self, user: str | None = None) -> str:
        return f"postgresql://{user or self.user}@127.0.0.1:{self.port}/{self.dbname}"

    @property
    def url(self) -> str:
        return self.url_for()

    def start(self) -> None:
        command = [BINARY, str(self.ini)]
        if os.geteuid() == 0:
            command = ["runuser", "-u", self.run_as, "--", *command]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start:\n{self.logs()}") from None
                time.sleep(0.1)  # retry interval of the deadline-bounded start-up wait

    def logs(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextmanager
def pgbouncer(upstream: str, users: tuple[str, ...] = ()) -> Iterator[PgBouncer]:
    """A running PgBouncer (transaction mode) in front of ``upstream``; stopped on exit."""
    root = Path(tempfile.mkdtemp(prefix="pgsched-pgbouncer-"))
    bouncer = PgBouncer(root, upstream, users)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(bouncer.run_as)
        for path in (root, *root.iterdir()):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
        shutil.rmtree(root, ignore_errors=True)
