"""pgsched: cron schedules, queued jobs and durable workflows on PostgreSQL alone."""

from pgsched import errors
from pgsched.app import App
from pgsched.handles import Handle
from pgsched.messages import set_event
from pgsched.queues import Queue
from pgsched.settings import Settings
from pgsched.waits import recv, sleep

__all__ = ["App", "Handle", "Queue", "Settings", "errors", "recv", "set_event", "sleep"]
__version__ = "0.1.0"
