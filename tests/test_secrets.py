"""No output path ever shows the database password: a table of URLs, malformed ones included,
fed through check_connect's errors, ``pgsched db`` (text and --json), a real worker's log and
its /healthz, /readyz and /metrics, and loguru with a traceback. Every password holds
``Pw<digit>`` in each of its pieces, so one pattern finds any part of any of them."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from loguru import logger
from psycopg.conninfo import conninfo_to_dict

from pgsched.db.database import check_connect
from pgsched.db.redact import mask_url, remember, scrub
from pgsched.errors import PgschedError
from pgsched.logs import configure_logging
from tests.test_health import answers, free_port, get
from tests.test_logs import restore_logging  # noqa: F401 - autouse here too
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
SECRET = re.compile(r"Pw\d")

# (id, template): {user} {host} {port} {db} are filled in. Whether a URL connects depends on
# the server (trust authentication takes any password); each is tried on every path it
# reaches.
URLS = [
    ("ordinary", "postgresql://{user}:Pw1secret@{host}:{port}/{db}"),
    ("empty user", "postgresql://:Pw2secret@{host}:{port}/{db}"),
    ("bad percent-encoding", "postgresql://{user}:Pw3secret%zz@{host}:{port}/{db}"),
    ("unencoded @", "postgresql://{user}:Pw4a@Pw4b@{host}:{port}/{db}"),
    ("unencoded /", "postgresql://{user}:Pw5a/Pw5b@{host}:{port}/{db}"),
    ("query parameter", "postgresql://{user}@{host}:{port}/{db}?password=Pw6secret"),
    ("quoted key=value with a space",
     "host={host} port={port} dbname={db} user={user} password='Pw7a Pw7b'"),
    ("unquoted key=value with a space",
     "host={host} port={port} dbname={db} user={user} password=Pw8a Pw8b"),
    ("escaped quote in key=value",
     r"host={host} port={port} dbname={db} user={user} password='Pw9a\'Pw9b'"),
]


def fill(template: str, database_url: str) -> str:
    params = conninfo_to_dict(database_url)
    return template.format(user=params.get("user") or "postgres",
                           host=params.get("host") or "127.0.0.1",
                           port=params.get("port") or "5432", db=params.get("dbname") or "postgres")


def assert_clean(text: str, where: str) -> None:
    found = SECRET.search(text)
    context = "" if found is None else text[max(0, found.start() - 80):found.end() + 40]
    assert found is None, f"{where} shows a password: ...{context}..."


@pytest.mark.parametrize("template", [u[1] for u in URLS], ids=[u[0] for u in URLS])
def test_no_output_path_shows_the_password(env, database_url, schema, tmp_path, template):
    url = fill(template, database_url)
    assert_clean(mask_url(url), "mask_url")

    serves = True
    try:
        check_connect(url, timeout=2)
    except PgschedError as exc:
        serves = False
        assert_clean(str(exc), "check_connect's error")

    child_env = {**env, "PGSCHED_DATABASE_URL": url}
    for args in (["db"], ["db", "--json"]):
        result = subprocess.run([sys.executable, "-m", "pgsched", *args], env=child_env,
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert (result.returncode == 0) == serves, result.stderr
        assert_clean(result.stdout + result.stderr, f"pgsched {' '.join(args)}")

    for log_json in ("false", "true"):
        run_worker(child_env | {"PGSCHED_LOG_JSON": log_json}, tmp_path / f"{log_json}.log",
                   serves)


def run_worker(env: dict[str, str], log_path: Path, serves: bool) -> None:
    """A worker with this URL: its log, and if it can serve, its three endpoints."""
    port = free_port()
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "pgsched", "worker", "tests/apps/health_app.py",
             "--health-port", str(port)],
            env={**env, "PGSCHED_LOG_LEVEL": "DEBUG"}, cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT)
    try:
        if serves:
            wait_for(lambda: answers(port), 60, what="the health server",
                     logs=log_path.read_text)
            wait_for(lambda: get(port, "/readyz")[0] == 200, 30, what="readiness",
                     logs=log_path.read_text)
            for path in ("/healthz", "/readyz", "/metrics"):
                assert_clean(get(port, path)[2], path)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(60) == 0, log_path.read_text()
        else:
            # A URL that cannot work exits at once (2); one whose server cannot be reached is
            # waited for, and the worker says so until it is stopped.
            wait_for(lambda: worker.poll() is not None
                     or "cannot reach the database" in log_path.read_text(), 60,
                     what="the worker to give up or to wait", logs=log_path.read_text)
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(60) == 0, log_path.read_text()
            else:
                assert worker.returncode == 2, log_path.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
    assert_clean(log_path.read_text(), f"the worker's log ({log_path.name})")


def test_loguru_lines_and_tracebacks_are_scrubbed(capsys, env):
    """A line or a traceback that quotes a DSN (as libpq's messages do) is scrubbed on the way
    out, in text and JSON, whatever code formatted it."""
    url = "host=db password='Pw1a Pw1b' user=x"
    remember(url)
    for json in (False, True):
        configure_logging("INFO", json)
        try:
            raise ValueError(f"libpq says: missing '=' after \"Pw1b\" in {url}")
        except ValueError:
            logger.exception("connecting to postgresql://u:Pw2a@Pw2b@h/db failed")
        assert_clean(capsys.readouterr().err, "a log line")
    assert scrub("postgresql://u:Pw3@h/db") == "postgresql://u:***@h/db"


@pytest.mark.parametrize(("dsn", "masked"), [
    ("postgresql://app:Pw1@db:5432/x", "postgresql://app:***@db:5432/x"),
    ("postgresql://:Pw2@db/x", "postgresql://:***@db/x"),
    ("postgres://app:Pw3a@Pw3b@db/x", "postgres://app:***@db/x"),
    ("postgresql://app@db/x?sslmode=require&password=Pw4&x=1",
     "postgresql://app@db/x?sslmode=require&password=***&x=1"),
    ("postgresql://app@db/x", "postgresql://app@db/x"),
    ("host=db password='Pw5a Pw5b' user=app", "host=db password=*** user=app"),
    ("host=db password=Pw6a Pw6b user=app", "host=db password=*** user=app"),
    ("host=db user=app password=Pw7", "host=db user=app password=***"),
])
def test_mask_url_keeps_everything_but_the_password(dsn, masked):
    assert mask_url(dsn) == masked
