"""Code versions: which release of an app's workflows a run started under.

A workflow replays its checkpoints by position, so a run that started under one release and
resumes under another (after a crash, or waking from a week-long ``recv``) may find its
steps moved. Each run records the version of the worker that first ran it, and claims give
such runs to a worker of the same version while one is alive (claim.sql); once none is, any
worker takes them, and a changed step order is a clear ``DeterminismError`` with the
``fork`` command to move the run on purpose.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgsched.registry import Registry


def code_version(registry: Registry) -> str:
    """A short hash of the names and source code of every registered workflow and step: two
    workers built from the same code agree, and any edit to a workflow or step changes it."""
    digest = hashlib.sha256()
    for kind, table in (("workflow", registry.workflows), ("step", registry.steps)):
        for name in sorted(table):
            digest.update(f"{kind} {name}\n{_source(table[name].fn)}\n".encode())
    return digest.hexdigest()[:12]


def _source(fn: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):  # defined in a REPL or built dynamically: name only
        return getattr(fn, "__qualname__", repr(fn))
