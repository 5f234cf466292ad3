"""What an app defines: workflows, steps and transactions, each under a stable name.

Names default to the function's ``__qualname__`` rather than its module path, because the
same app is imported as ``myapp.tasks`` by a web process and loaded from a file path by
``pgsched worker``; both must agree on what a stored run is called.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pgsched.errors import ConfigurationError, NotRegistered

SPEC_ATTR = "__pgsched_spec__"


@dataclass(frozen=True)
class WorkflowSpec:
    name: str
    fn: Callable[..., Any]
    max_attempts: int | None
    is_async: bool


@dataclass(frozen=True)
class StepSpec:
    name: str
    fn: Callable[..., Any]
    kind: str
    retries: int = 0
    backoff: float = 1.0
    max_backoff: float = 60.0
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.fn))


@dataclass
class Registry:
    workflows: dict[str, WorkflowSpec] = field(default_factory=dict)
    steps: dict[str, StepSpec] = field(default_factory=dict)

    def add_workflow(
        self, fn: Callable[..., Any], name: str | None, max_attempts: int | None
    ) -> WorkflowSpec:
        if max_attempts is not None and max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be >= 1, got {max_attempts}")
        spec = WorkflowSpec(
            name=name or fn.__qualname__,
            fn=fn,
            max_attempts=max_attempts,
            is_async=inspect.iscoroutinefunction(fn),
        )
        self._check_free(spec.name, self.workflows)
        self.workflows[spec.name] = spec
        return spec

    def add_step(self, spec: StepSpec) -> StepSpec:
        if spec.retries < 0:
            raise ConfigurationError(f"retries must be >= 0, got {spec.retries}")
        if spec.kind == "transaction" and spec.is_async:
            raise ConfigurationError(
                f"@app.transaction() {spec.name!r} is an async def; a transaction step gets a "
                "(blocking) psycopg connection whose writes commit with its checkpoint, so it "
                "must be a plain def. Async workflows call it like any step; keep awaits "
                "outside it, in an async @app.step() or the workflow body"
            )
        self._check_free(spec.name, self.steps)
        self.steps[spec.name] = spec
        return spec

    @staticmethod
    def _check_free(name: str, table: dict[str, Any]) -> None:
        if name in table:
            raise ConfigurationError(
                f"{name!r} is registered twice; give one of them another name with name=..."
            )

    def workflow_for(self, fn: Callable[..., Any] | str) -> WorkflowSpec:
        """The spec of a decorated workflow function (or of a name)."""
        if isinstance(fn, str):
            spec = self.workflows.get(fn)
        else:
            spec = getattr(fn, SPEC_ATTR, None)
            if isinstance(spec, WorkflowSpec) and self.workflows.get(spec.name) is not spec:
                raise NotRegistered(
                    f"{spec.name!r} is a workflow of another pgsched.App; start or enqueue it "
                    "through that app and its queues (each worker runs one app)"
                )
        if isinstance(spec, StepSpec):
            decorator = "@app.step()" if spec.kind == "step" else "@app.transaction()"
            raise NotRegistered(
                f"{spec.name!r} is a {decorator} function: a step only runs inside a "
                "workflow. Call it from an @app.workflow() function and start or enqueue that "
                "workflow instead"
            )
        if not isinstance(spec, WorkflowSpec):
            label = fn if isinstance(fn, str) else getattr(fn, "__qualname__", repr(fn))
            raise NotRegistered(
                f"{label!r} is not a workflow of this app; decorate it with @app.workflow() "
                "(plain and async functions both work) in a module the worker imports"
            )
        return spec
