"""Runtime configuration, read from ``PGSCHED_*`` environment variables and ``.env``.

One settings object is shared by the client side (enqueue, operations) and the worker, so a
web process and a worker built from the same environment always agree on database and schema.
"""

from __future__ import annotations

import difflib
import re
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pgsched.errors import ConfigurationError

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PGSCHED_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL. Unset: an embedded server is started in data_dir.",
    )
    listen_database_url: str | None = Field(
        default=None,
        description="Direct (non-PgBouncer) URL for the worker's LISTEN connection.",
    )
    listen: bool = Field(default=True, description="False: poll-only mode (no LISTEN/NOTIFY).")
    pooler: Literal["none", "transaction"] = Field(
        default="none",
        description="'transaction' behind PgBouncer in transaction mode: no server-side "
        "prepared statements, and no LISTEN unless PGSCHED_LISTEN_DATABASE_URL is set.",
    )
    schema_name: str = Field(default="pgsched", alias="PGSCHED_SCHEMA")
    data_dir: str | None = Field(default=None, description="Embedded server data directory.")
    concurrency: int = Field(default=8, ge=1, le=1024)
    pool_size: int = Field(
        default=10, ge=1, le=200,
        description="Pool connections at most; a worker raises it to concurrency + 4.",
    )
    pool_max_idle: float = Field(
        default=60.0, gt=0, description="Seconds before an unused pooled connection closes."
    )
    heartbeat_interval: float = Field(default=5.0, gt=0)
    takeover_timeout: float = Field(default=30.0, gt=0)
    poll_interval: float = Field(default=1.0, gt=0)
    shutdown_grace: float = Field(default=30.0, ge=0)
    max_attempts: int = Field(default=5, ge=1)
    health_port: int | None = Field(default=None, ge=0, le=65535)
    log_level: str = "INFO"
    log_json: bool = False
    log_diagnose: bool = Field(
        default=False,
        description="Show local variables in logged tracebacks (loguru's diagnose). Off by "
        "default: a job's locals hold its inputs and whatever secrets it handles.",
    )
    health_host: str = Field(
        default="127.0.0.1",
        description="Address the health server binds. 0.0.0.0 in a pod, where the kubelet "
        "probes the pod's IP; the Helm chart and the Dockerfile set it.",
    )
    otel_export: str | None = Field(
        default=None,
        description="Worker: export OpenTelemetry spans: 'console' (stdout) or a file path "
        "(JSON lines). Unset: spans go wherever the app's own OpenTelemetry setup sends them.",
    )
    prune_older_than: float | None = Field(
        default=None, gt=0, description="Seconds; when set, one worker prunes finished runs."
    )

    @field_validator("schema_name")
    @classmethod
    def _schema_is_identifier(cls, value: str) -> str:
        if not _SCHEMA_NAME.match(value):
            raise ValueError("must be a lowercase SQL identifier such as 'pgsched'")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @field_validator("takeover_timeout")
    @classmethod
    def _takeover_after_heartbeat(cls, value: float, info) -> float:  # type: ignore[no-untyped-def]
        heartbeat = info.data.get("heartbeat_interval")
        if heartbeat is not None and value <= 2 * heartbeat:
            raise ValueError("must be more than twice PGSCHED_HEARTBEAT_INTERVAL")
        return value


def _keyword_names() -> dict[str, str]:
    """Keyword -> the name pydantic accepts: each field by its name (``schema_name``), by
    its variable's suffix (``schema``) and by the variable itself (``PGSCHED_SCHEMA``)."""
    names: dict[str, str] = {}
    for field, info in Settings.model_fields.items():
        accepted = info.alias or field
        names[field] = accepted
        names[accepted] = accepted
        if info.alias and info.alias.startswith("PGSCHED_"):
            names[info.alias.removeprefix("PGSCHED_").lower()] = accepted
    return names


def _check_keywords(overrides: dict[str, object]) -> dict[str, object]:
    """The overrides under the names pydantic accepts; an unknown keyword raises, since
    ``extra="ignore"`` (needed for the environment) would drop a typo silently."""
    names = _keyword_names()
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        hints = []
        for word in unknown:
            close = difflib.get_close_matches(word, [n for n in names if n.islower()], n=1)
            hints.append(f"{word!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigurationError(
            f"unknown setting(s) {', '.join(hints)}; the settings are the PGSCHED_* variables "
            "in lower case without the prefix, e.g. App('x', concurrency=4, schema='jobs')"
        )
    return {names[key]: value for key, value in overrides.items()}


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning pydantic's report into one error that names the variables.

    Keyword overrides win over the environment; an unknown keyword is an error."""
    checked = _check_keywords(overrides)
    try:
        return Settings(**checked)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            variable = field if field.startswith("PGSCHED_") else f"PGSCHED_{field.upper()}"
            problems.append(f"{variable}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None
