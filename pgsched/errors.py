"""Typed exceptions. Each message says what happened and what to do next."""

from __future__ import annotations


class PgschedError(Exception):
    """Base class of every error pgsched raises on purpose."""


class ConfigurationError(PgschedError):
    """A setting or an argument is invalid; nothing was written."""


class DatabaseUnavailable(PgschedError):
    """The database could not be reached with the configured URL."""


class SchemaOutdated(PgschedError):
    """The database schema is older or newer than this version of pgsched expects."""


class SerializationError(PgschedError):
    """A value cannot be stored as JSON; nothing was written."""


class NotRegistered(PgschedError):
    """A function or workflow name is not registered with the app."""


class UnknownQueue(PgschedError):
    """A queue name was used that the app does not define."""


class InvalidSchedule(ConfigurationError):
    """A cron expression or time zone is invalid."""


class DeterminismError(PgschedError):
    """A resumed workflow called different steps than the run it resumes."""


class DuplicateJob(PgschedError):
    """A job with the same dedup key is already waiting or running."""


class WorkflowNotFound(PgschedError):
    """No run has the given id."""


class InvalidOperation(PgschedError):
    """The operation does not apply to the run in its current state."""


class WorkflowFailed(PgschedError):
    """The awaited run ended in ERROR, DEAD or CANCELLED."""

    def __init__(self, workflow_id: str, status: str, error: dict | None) -> None:
        self.workflow_id = workflow_id
        self.status = status
        self.error = error or {}
        detail = f"{self.error.get('type', '')}: {self.error.get('message', '')}".strip(": ")
        super().__init__(
            f"workflow {workflow_id!r} ended {status}"
            + (f" ({detail})" if detail else "")
            + f"; inspect it with `pgsched workflows show {workflow_id}`"
        )


class NotInWorkflow(PgschedError):
    """A workflow-only call (``pgsched.sleep``, ``recv``, ``set_event``) was made outside a
    running workflow."""


class MessageUndeliverable(InvalidOperation):
    """A message was sent to a run that has finished: nothing would ever read it."""


class ClaimLost(PgschedError):
    """This worker no longer owns the run (taken over, cancelled or timed out).

    Raised inside a running workflow so that a late writer stops instead of overwriting
    the newer attempt's checkpoints.
    """


class JobTimeout(PgschedError):
    """The run exceeded its ``timeout`` and was cancelled."""


class ResultTimeout(PgschedError, TimeoutError):
    """``Handle.result(timeout=...)`` gave up waiting; the run itself goes on."""


class PermanentError(PgschedError):
    """Raise from a workflow or step to fail at once without retrying."""


class StepPlacementError(PermanentError):
    """A step, transaction or child workflow was called where its checkpoint could not be
    deterministic or its commit exactly once: inside another step, or from a thread of its
    own. A retry cannot move the call, so the run fails at once; the message says where to
    call it instead."""


class InvalidWaitArgument(ConfigurationError, PermanentError):
    """A durable wait, message or event got a bad duration, timeout, topic or key. Raised
    inside a workflow it fails the run at once: a retry would pass the same value."""
