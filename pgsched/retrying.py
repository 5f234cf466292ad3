"""Retrying pgsched's own database work through transient failures.

A database restart, a cut connection, a pool that is briefly exhausted, a serialization
failure or a deadlock says nothing about the run being executed: pgsched retries its own
statements on the run's path (checkpoint load and write, transaction steps, child starts,
finishes) until they succeed or the attempt learns it lost the run (``ClaimLost``), and never
records such an error as the run's failure.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from loguru import logger

from pgsched.errors import DatabaseUnavailable

T = TypeVar("T")

#: The longest pause between two tries: short, so work resumes soon after the database does.
MAX_PAUSE = 2.0


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a database failure that a later try can get past.

    psycopg raises ``OperationalError`` (or a subclass: ``AdminShutdown``,
    ``SerializationFailure``, ``DeadlockDetected``, the pool's ``PoolTimeout``) for these; a
    closed connection raises ``OperationalError`` too. ``InterfaceError`` covers a connection
    broken in the middle of the protocol.
    """
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError,
                            DatabaseUnavailable))


def retry_transient(action: Callable[[], T], what: str) -> T:
    """Run ``action`` until it does not fail transiently; other errors propagate at once."""
    tries = 0
    while True:
        try:
            return action()
        except Exception as exc:
            if not is_transient(exc):
                raise
            tries += 1
            pause = min(MAX_PAUSE, 0.05 * 2 ** min(tries, 6)) * random.uniform(0.5, 1.0)
            if tries == 1 or tries % 20 == 0:
                logger.bind(component="db").warning(
                    "{} failed ({}: {}); retrying (try {})",
                    what, type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc)
                    else "no detail", tries + 1,
                )
            time.sleep(pause)
