"""Logging: no local variables in tracebacks unless asked, and one warning per database
outage instead of one line per connection attempt."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator

import pytest
from loguru import logger

from pgsched.logs import OUTAGE_REPORT_S, configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; later tests get the defaults back."""
    hook, psycopg_log = threading.excepthook, logging.getLogger("psycopg")
    handlers, propagate = list(psycopg_log.handlers), psycopg_log.propagate
    yield
    logger.remove()
    logger.add(sys.stderr)
    threading.excepthook = hook
    psycopg_log.handlers[:] = handlers
    psycopg_log.propagate = propagate


def _fail_with_a_secret_local() -> None:
    token = "Top" + "SecretLocal"
    raise ValueError(len(token))


@pytest.mark.parametrize(("setting", "shown"), [(None, False), ("false", False), ("true", True)])
def test_tracebacks_show_locals_only_when_diagnose_is_on(capsys, monkeypatch, setting, shown):
    if setting is None:
        monkeypatch.delenv("PGSCHED_LOG_DIAGNOSE", raising=False)
    else:
        monkeypatch.setenv("PGSCHED_LOG_DIAGNOSE", setting)
    configure_logging()
    try:
        _fail_with_a_secret_local()
    except ValueError:
        logger.exception("a job failed")
    err = capsys.readouterr().err
    assert "a job failed" in err and "ValueError" in err
    assert ("TopSecretLocal" in err) is shown


def test_pool_connection_errors_become_one_warning_per_outage(capsys, monkeypatch):
    """What psycopg_pool logs for every failed attempt of every connection."""
    clock = [1000.0]
    monkeypatch.setattr("pgsched.logs.time.monotonic", lambda: clock[0])
    configure_logging("INFO", False)
    pool_log = logging.getLogger("psycopg.pool")
    for _ in range(50):
        pool_log.warning("error connecting in %r: %s", "pgsched",
                         'connection failed: connection to server at "10.0.0.1", port 5432 '
                         "failed: Connection refused")
        clock[0] += 0.2
    clock[0] += OUTAGE_REPORT_S
    pool_log.warning("error connecting in %r: %s", "pgsched", "connection refused")
    pool_log.warning("discarding closed connection: %s", "<conn>")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 3, lines
    assert "cannot connect to the database" in lines[0] and "the pool keeps retrying" in lines[0]
    assert "after 51 failed attempts" in lines[1]
    assert "discarding closed connection" in lines[2]
    assert all(" db " in line for line in lines)  # loguru's format, component "db"


def test_json_lines_when_asked(capsys):
    configure_logging("INFO", True)
    logger.info("hello")
    assert '"message": "hello"' in capsys.readouterr().err
