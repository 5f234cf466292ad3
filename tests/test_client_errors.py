"""Bad input from the client side gets a clear error and leaves nothing behind."""

from __future__ import annotations

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


def test_worker_with_bad_url_exits_with_a_message(env):
    result = subprocess.run(
        [sys.executable, "-m", "pgsched", "worker", "examples/quickstart.py"],
        env={**env, "PGSCHED_DATABASE_URL": "postgresql://app:hunter2@127.0.0.1:1/x"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "cannot connect" in result.stderr and "hunter2" not in result.stderr


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
