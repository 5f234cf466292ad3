"""A web dashboard for pgsched: runs, queues, schedules and workers, read-only by default.

Serve it with ``pgsched dashboard``, or mount ``create_app(app.db)`` in your own ASGI app.
Needs the ``dashboard`` extra: ``pip install 'pgsched[dashboard]'``.
"""

from __future__ import annotations

from pgsched.dashboard.app import create_app

__all__ = ["create_app"]
