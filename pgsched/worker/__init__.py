"""The worker process and its parts: dispatcher, executor, listener, loops, health."""

from pgsched.worker.process import Worker

__all__ = ["Worker"]
