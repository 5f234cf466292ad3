"""Settings: every PGSCHED_* value is validated at startup with an error naming the variable."""

from __future__ import annotations

import pytest

from pgsched.errors import ConfigurationError
from pgsched.settings import load_settings


def test_defaults_and_environment(monkeypatch):
    monkeypatch.setenv("PGSCHED_CONCURRENCY", "3")
    monkeypatch.setenv("PGSCHED_LOG_JSON", "true")
    monkeypatch.setenv("PGSCHED_SCHEMA", "jobs")
    settings = load_settings()
    assert (settings.concurrency, settings.log_json, settings.schema_name) == (3, True, "jobs")
    assert settings.heartbeat_interval == 5.0 and settings.takeover_timeout == 30.0


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("PGSCHED_CONCURRENCY", "zero", "PGSCHED_CONCURRENCY"),
        ("PGSCHED_CONCURRENCY", "0", "PGSCHED_CONCURRENCY"),
        ("PGSCHED_HEARTBEAT_INTERVAL", "-1", "PGSCHED_HEARTBEAT_INTERVAL"),
        ("PGSCHED_SCHEMA", "Robert'); DROP", "PGSCHED_SCHEMA"),
        ("PGSCHED_LOG_LEVEL", "LOUD", "PGSCHED_LOG_LEVEL"),
        ("PGSCHED_TAKEOVER_TIMEOUT", "6", "PGSCHED_TAKEOVER_TIMEOUT"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch, variable, value, fragment):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert fragment in str(error.value)
    assert repr(value) in str(error.value)
