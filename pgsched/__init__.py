"""pgsched: cron schedules, queued jobs and durable workflows on PostgreSQL alone."""

from pgsched import errors
from pgsched.app import App
from pgsched.handles import Handle
from pgsched.queues import Queue
from pgsched.settings import Settings

__all__ = ["App", "Handle", "Queue", "Settings", "errors"]
__version__ = "0.1.0"
