"""Bad input from the client side gets a clear error and leaves nothing behind."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

import pgsched
from pgsched.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    NotRegistered,
    SerializationError,
    UnknownQueue,
)
from tests.waiting import wait_for


def test_unserializable_argument_writes_nothing(make_app, sql):
    app = make_app()

    @app.workflow()
    def greet(who: object) -> None: ...

    app.migrate()
    with pytest.raises(SerializationError, match="argument\\[0\\] is a lock"):
        import threading

        app.start(greet, threading.Lock())
    assert sql("SELECT count(*) FROM workflows") == [(0,)]


def test_unregistered_function_and_unknown_queue(make_app, sql):
    app = make_app()

    def plain() -> None: ...

    with pytest.raises(NotRegistered, match="decorate it with @app.workflow"):
        app.start(plain)
    with pytest.raises(UnknownQueue, match="'nope' is not defined"):
        app.start(plain, queue="nope")
    app.migrate()
    assert sql("SELECT count(*) FROM workflows") == [(0,)]


def test_bad_database_url_is_a_clear_error_without_the_password(env, monkeypatch):
    monkeypatch.setenv("PGSCHED_DATABASE_URL", "postgresql://app:hunter2@127.0.0.1:1/nowhere")
    app = pgsched.App("bad")

    @app.workflow()
    def job() -> None: ...

    with pytest.raises(DatabaseUnavailable) as error:
        app.start(job)
    message = str(error.value)
    assert "cannot connect to postgresql://app:***@127.0.0.1:1/nowhere" in message
    assert "hunter2" not in message

    monkeypatch.setenv("PGSCHED_DATABASE_URL", "not a url at all")
    with pytest.raises(ConfigurationError, match="is not valid"):
        pgsched.App("worse").migrate()


def test_worker_waits_for_an_unreachable_database_instead_of_exiting(env, tmp_path):
    """A supervisor restarting a worker that exits at once would only crash-loop it: the
    worker waits and retries (saying why, without the password) until stopped."""
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "pgsched", "worker", "examples/quickstart.py"],
            env={**env, "PGSCHED_DATABASE_URL": "postgresql://app:hunter2@127.0.0.1:1/x"},
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: log.read_text().count("cannot reach the database") >= 1, 30,
                 what="the worker to report that it waits for the database")
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    assert "retrying in" in log.read_text() and "hunter2" not in log.read_text()


def test_worker_with_a_malformed_url_exits_with_a_message(env):
    result = subprocess.run(
        [sys.executable, "-m", "pgsched", "worker", "examples/quickstart.py"],
        env={**env, "PGSCHED_DATABASE_URL": "postgresql://app:hunter2@127.0.0.1:1/x?bogus=1"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "is not valid" in result.stderr and "hunter2" not in result.stderr


def test_invalid_settings_fail_at_construction(env):
    with pytest.raises(ConfigurationError, match="PGSCHED_CONCURRENCY"):
        pgsched.App("x", concurrency=0)


def test_duplicate_names_are_refused(make_app):
    app = make_app()

    @app.workflow(name="same")
    def one() -> None: ...

    with pytest.raises(ConfigurationError, match="registered twice"):

        @app.workflow(name="same")
        def two() -> None: ...
