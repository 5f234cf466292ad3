"""Log setup: readable lines for people, one JSON object per line for production.

The worker and the CLI call ``configure_logging`` once; it decides three things that matter
beyond looks:

* every line, tracebacks included, passes through ``redact.scrub`` on its way out, so no
  database password reaches the logs whatever code formatted it;
* tracebacks show no local variables unless ``PGSCHED_LOG_DIAGNOSE`` is set: loguru's
  ``diagnose`` prints the values of every frame's locals, which in a job are its inputs and
  whatever secrets it handled;
* a thread's uncaught error is logged through loguru too, instead of printed raw;
* psycopg's stdlib log records come through loguru too. During an outage the pool logs
  "error connecting in 'pgsched'" for every attempt of every connection; those become one
  warning when the outage starts and at most one more every ``OUTAGE_REPORT_S`` with the
  count of failed attempts, instead of a flood.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import IO, Any

from loguru import logger

from pgsched.db.redact import remember, scrub
from pgsched.errors import ConfigurationError

TEXT_FORMAT = (
    "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<cyan>{extra[component]}</cyan> {message}"
)
#: At most one "still cannot connect" line this often during an outage.
OUTAGE_REPORT_S = 30.0
#: A connection error after this long without one starts a new outage.
OUTAGE_QUIET_S = 60.0
_CONNECT_ERROR = "error connecting in "


class _ScrubbingSink:
    """Writes formatted lines to a stream with every known password masked."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, message: Any) -> None:
        self.stream.write(scrub(str(message)))
        self.stream.flush()


class _StdlibBridge(logging.Handler):
    """Forwards psycopg's stdlib records to loguru, folding connection errors together."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.failures = 0
        self.first_failure = 0.0
        self.last_failure = 0.0
        self.last_report = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record must not break the caller's connection code
            text = str(record.msg)
        log = logger.bind(component="db")
        if not text.startswith(_CONNECT_ERROR):
            log.log(record.levelname if record.levelno >= logging.WARNING else "DEBUG", text)
            return
        now = time.monotonic()
        if now - self.last_failure > OUTAGE_QUIET_S:
            self.failures, self.first_failure, self.last_report = 0, now, 0.0
        self.failures += 1
        self.last_failure = now
        reason = text.split(": ", 1)[-1].strip().splitlines()[0]
        if self.failures == 1:
            self.last_report = now
            log.warning("cannot connect to the database ({}); the pool keeps retrying", reason)
        elif now - self.last_report >= OUTAGE_REPORT_S:
            self.last_report = now
            log.warning(
                "still cannot connect to the database after {} failed attempts in {:.0f}s "
                "({}); retrying", self.failures, now - self.first_failure, reason,
            )


_bridge = _StdlibBridge()


def _thread_crashed(args: threading.ExceptHookArgs) -> None:
    """A thread that dies of an uncaught error is logged like everything else (scrubbed,
    no locals unless diagnose), not printed raw to stderr by ``threading``."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logger.bind(component="worker").opt(
        exception=(args.exc_type, args.exc_value, args.exc_traceback)
    ).error("thread {} died of an uncaught error", name)


def _from_settings() -> tuple[str, bool, bool]:
    """Level, JSON and diagnose from ``PGSCHED_*``, remembering the database passwords so
    that they are scrubbed from everything logged later."""
    from pgsched.settings import load_settings

    try:
        settings = load_settings()
    except ConfigurationError:
        return "INFO", False, False
    remember(settings.database_url)
    remember(settings.listen_database_url)
    return settings.log_level, settings.log_json, settings.log_diagnose


def configure_logging(
    level: str | None = None, json: bool | None = None, diagnose: bool | None = None
) -> None:
    """Send pgsched's and psycopg's logs to stderr, as text or JSON lines.

    Arguments left out come from the settings (``PGSCHED_LOG_LEVEL``, ``PGSCHED_LOG_JSON``,
    ``PGSCHED_LOG_DIAGNOSE``).
    """
    default_level, default_json, default_diagnose = _from_settings()
    level = level or default_level
    json = default_json if json is None else json
    diagnose = default_diagnose if diagnose is None else diagnose
    stream = sys.stderr
    logger.remove()
    options: dict[str, Any] = {"level": level, "diagnose": diagnose, "backtrace": diagnose}
    if json:
        logger.add(_ScrubbingSink(stream), serialize=True, **options)
    else:
        logger.add(_ScrubbingSink(stream), format=TEXT_FORMAT,
                   colorize=bool(getattr(stream, "isatty", lambda: False)()), **options)
    logger.configure(extra={"component": "pgsched"})
    psycopg_log = logging.getLogger("psycopg")
    if _bridge not in psycopg_log.handlers:
        psycopg_log.addHandler(_bridge)
    # Records stop here: the root logger's last-resort handler would print them raw again.
    psycopg_log.propagate = False
    threading.excepthook = _thread_crashed
