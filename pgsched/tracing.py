"""OpenTelemetry spans for enqueues, queueing, runs, steps and children, when asked for.

pgsched never imports OpenTelemetry on its own. Tracing is on in a process that imported
``opentelemetry.trace`` and installed a real tracer provider (the application's own SDK
setup, or ``opentelemetry-instrument``), or in a worker started with ``PGSCHED_OTEL_EXPORT``
(:func:`configure`). Otherwise each hook below costs one dictionary look-up and a plain call,
and nothing is written to the run's row.

The trace crosses processes in the row: an enqueue stores its span's W3C trace context
(``traceparent``, then ``tracestate`` after a newline if there is one) in
``workflows.trace_context``, and the worker that claims the run opens its ``run`` span as a
child of it, so a web request's trace goes on into the worker. A child workflow runs inline
in its parent's thread, so its spans nest under the parent's without a stored context.

Spans (names follow OpenTelemetry's ``{operation} {destination}`` convention for messaging):

- ``enqueue QUEUE`` (PRODUCER): ``enqueue``, ``enqueue_many`` and their async forms;
- ``queued QUEUE``: from the time the run could start (``not_before``) to the time a worker
  started it, a sibling of ``run`` under the enqueue span;
- ``run WORKFLOW`` (CONSUMER): one attempt of a top-level run in a worker; its status says
  how the attempt ended (an ERROR status for a failure, with the exception as an event);
- ``step NAME``, ``transaction NAME``, ``child WORKFLOW``: each call inside a run, with its
  step number and whether it was replayed from a checkpoint instead of run.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pgsched import clock
from pgsched.errors import ConfigurationError

if TYPE_CHECKING:
    from pgsched.context import RunContext
    from pgsched.queues import Queue

F = TypeVar("F", bound=Callable[..., Any])

_tracers: dict[int, Any] = {}


def _tracer() -> Any:
    """The tracer to use, or None when this process does not trace.

    Only a process that imported OpenTelemetry itself can have configured it, so a process
    that did not costs a look-up in ``sys.modules`` and never imports it."""
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return None
    provider = api.get_tracer_provider()
    if isinstance(provider, (api.ProxyTracerProvider, api.NoOpTracerProvider)):
        return None
    tracer = _tracers.get(id(provider))
    if tracer is None:
        from pgsched import __version__

        tracer = _tracers[id(provider)] = provider.get_tracer("pgsched", __version__)
    return tracer


def traceparent() -> str | None:
    """The W3C trace context of the current span, as ``workflows.trace_context`` stores it;
    None when this process does not trace."""
    if _tracer() is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    if "traceparent" not in carrier:
        return None
    state = carrier.get("tracestate")
    return carrier["traceparent"] + (f"\n{state}" if state else "")


def _parent(stored: str | None) -> Any:
    """The context a stored trace context stands for; an empty one (a new trace) if none:
    a run never becomes the child of whatever span the claiming thread happens to be in."""
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not stored:
        return Context()
    parent, _, state = stored.partition("\n")
    carrier = {"traceparent": parent, **({"tracestate": state} if state else {})}
    return TraceContextTextMapPropagator().extract(carrier, context=Context())


# -- producer side ---------------------------------------------------------------------------


def traced_enqueue(method: F) -> F:
    """Wrap a ``Queue`` enqueue method (sync or async) in an ``enqueue QUEUE`` span.

    The span is current while the method builds its parameters, so the ``trace_context``
    they carry (:func:`traceparent`) is this span's: the worker's run becomes its child."""
    many = method.__name__.startswith("enqueue_many")

    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def traced_async(queue: Queue, *args: Any, **kwargs: Any) -> Any:
            tracer = _tracer()
            if tracer is None:
                return await method(queue, *args, **kwargs)
            with _enqueue_span(tracer, queue, args, many) as span:
                result = await method(queue, *args, **kwargs)
                _describe_enqueued(span, result)
                return result

        return traced_async  # type: ignore[return-value]

    @functools.wraps(method)
    def traced(queue: Queue, *args: Any, **kwargs: Any) -> Any:
        tracer = _tracer()
        if tracer is None:
            return method(queue, *args, **kwargs)
        with _enqueue_span(tracer, queue, args, many) as span:
            result = method(queue, *args, **kwargs)
            _describe_enqueued(span, result)
            return result

    return traced  # type: ignore[return-value]


def _enqueue_span(tracer: Any, queue: Queue, args: tuple, many: bool) -> Any:
    from opentelemetry.trace import SpanKind

    attributes: dict[str, Any] = {"messaging.system": "pgsched",
                                  "messaging.destination.name": queue.name,
                                  "messaging.operation.name": "enqueue"}
    if not many and args:
        fn = args[0]
        attributes["pgsched.workflow.name"] = fn if isinstance(fn, str) else getattr(
            fn, "__qualname__", repr(fn))
    return tracer.start_as_current_span(f"enqueue {queue.name}", kind=SpanKind.PRODUCER,
                                        attributes=attributes)


def _describe_enqueued(span: Any, result: Any) -> None:
    if isinstance(result, list):
        span.set_attribute("messaging.batch.message_count", len(result))
    else:
        span.set_attribute("pgsched.workflow.id", result.workflow_id)


# -- consumer side ---------------------------------------------------------------------------


def run(execute: Callable[..., Any], ctx: RunContext, spec: Any, row: dict[str, Any]) -> Any:
    """``execute(ctx, spec, row)`` (one attempt of a claimed run) inside a ``run`` span that
    continues the enqueuer's trace, after a ``queued`` span for the time it waited."""
    tracer = _tracer()
    if tracer is None:
        return execute(ctx, spec, row)
    from opentelemetry.trace import SpanKind

    parent = _parent(row.get("trace_context"))
    attributes = {"messaging.system": "pgsched", "messaging.destination.name": ctx.queue,
                  "messaging.operation.name": "process", "pgsched.workflow.name": spec.name,
                  "pgsched.workflow.id": ctx.workflow_id,
                  "pgsched.attempt": int(row.get("attempts") or 1),
                  "pgsched.worker.id": ctx.worker_id}
    _queued(tracer, parent, row, ctx.queue, attributes)
    with tracer.start_as_current_span(f"run {spec.name}", context=parent, kind=SpanKind.CONSUMER,
                                      attributes=attributes) as span:
        outcome = execute(ctx, spec, row)
        _describe_outcome(span, outcome)
        return outcome


def _queued(tracer: Any, parent: Any, row: dict[str, Any], queue: str,
            attributes: dict[str, Any]) -> None:
    """A span from when the run could first start to now. ``not_before`` is on the database
    clock; it is moved onto this machine's by the measured offset."""
    ready = row.get("not_before")
    if ready is None:
        return
    end = time.time_ns()
    start = int((ready - clock.offset()).timestamp() * 1e9)
    start = min(max(start, 0), end)
    attributes["pgsched.queued_ms"] = round((end - start) / 1e6, 3)
    tracer.start_span(f"queued {queue}", context=parent, start_time=start,
                      attributes=dict(attributes)).end(end_time=end)


def _describe_outcome(span: Any, outcome: Any) -> None:
    """Set the run span's status from the attempt's outcome: job code's exceptions are
    caught inside the attempt (they become its outcome), so the span never sees them."""
    from opentelemetry.trace import Status, StatusCode

    status = getattr(outcome, "status", "LOST")
    span.set_attribute("pgsched.outcome", "RETRY" if status == "ENQUEUED" else status)
    if status == "SUCCESS":
        span.set_status(Status(StatusCode.OK))
        return
    if status == "WAITING":  # parked by a durable wait: its next attempt is a new run span
        if outcome.wake_at is not None:
            span.set_attribute("pgsched.wake_at", outcome.wake_at.isoformat())
        return
    error = json.loads(outcome.error) if getattr(outcome, "error", None) else {}
    if error:
        span.add_event("exception", {"exception.type": error.get("type", ""),
                                     "exception.message": error.get("message", ""),
                                     "exception.stacktrace": error.get("traceback", "")})
    if status != "LOST":
        span.set_status(Status(StatusCode.ERROR, f"{status}: {error.get('type', '')}: "
                                                 f"{error.get('message', '')}"))


def step(call: Callable[..., Any], ctx: RunContext, spec: Any, args: tuple,
         kwargs: dict) -> Any:
    """``call(ctx, spec, args, kwargs)`` (a step, transaction or child workflow called inside
    a run) inside a span named for its kind and name. An awaitable result (an async step)
    keeps its span open until it is awaited."""
    tracer = _tracer()
    if tracer is None:
        return call(ctx, spec, args, kwargs)
    from opentelemetry import trace

    from pgsched.context import current_step

    kind = getattr(spec, "kind", "child")
    attributes: dict[str, Any] = {"pgsched.step.kind": kind, "pgsched.step.name": spec.name,
                                  "pgsched.workflow.id": ctx.workflow_id}
    if current_step.get() is not None:  # called by a running step: part of it, no number
        attributes["pgsched.step.nested"] = True
    else:  # the number the call is about to take (steps.py takes it before any await)
        number = ctx.next_step
        attributes["pgsched.step.number"] = number
        attributes["pgsched.step.replayed"] = number in ctx.checkpoints
        if kind == "child":
            attributes["pgsched.child.id"] = f"{ctx.workflow_id}/{number}"
    span = tracer.start_span(f"{kind} {spec.name}", attributes=attributes)
    with trace.use_span(span, end_on_exit=False, record_exception=True,
                        set_status_on_exception=True):
        try:
            result = call(ctx, spec, args, kwargs)
        except BaseException as exc:
            _parked(span, exc)
            span.end()
            raise
    if not inspect.isawaitable(result):
        span.end()
        return result
    return _end_after(span, result)


async def _end_after(span: Any, awaitable: Any) -> Any:
    from opentelemetry import trace

    with trace.use_span(span, end_on_exit=True):
        try:
            return await awaitable
        except BaseException as exc:
            _parked(span, exc)
            raise


def _parked(span: Any, exc: BaseException) -> None:
    """Mark a call that parked its run (a child waiting on a durable wait): control flow,
    not a failure (OpenTelemetry records only ``Exception`` subclasses as errors anyway)."""
    from pgsched.waits import Parked

    if isinstance(exc, Parked):
        span.set_attribute("pgsched.parked", True)


# -- exporting from a worker ------------------------------------------------------------------


def configure(export: str | None, service_name: str) -> None:
    """Export this process's spans as ``PGSCHED_OTEL_EXPORT`` says: ``console`` (stdout) or a
    file path (one JSON object per span and line). A provider the app module installed
    gets the exporter added; otherwise a new SDK provider is installed. Unset: nothing."""
    if not export:
        return
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    except ImportError:
        raise ConfigurationError(
            "PGSCHED_OTEL_EXPORT is set but the OpenTelemetry SDK is not installed: "
            "pip install 'pgsched[otel]', or unset PGSCHED_OTEL_EXPORT"
        ) from None
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_exporter(export)))


def _exporter(export: str) -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class JsonLines(SpanExporter):
        """Spans as JSON lines, whole lines only: run threads end spans concurrently."""

        def __init__(self, out: Any) -> None:
            self.out = out
            self.lock = threading.Lock()

        def export(self, spans: Any) -> SpanExportResult:
            text = "".join(span.to_json(indent=None) + "\n" for span in spans)
            with self.lock:
                self.out.write(text)
                self.out.flush()
            return SpanExportResult.SUCCESS

    if export == "console":
        return JsonLines(sys.stdout)
    try:
        return JsonLines(open(export, "a", encoding="utf-8"))  # noqa: SIM115 (lives as long as the process)
    except OSError as exc:
        raise ConfigurationError(
            f"PGSCHED_OTEL_EXPORT={export!r}: cannot open it for appending ({exc.strerror}); "
            "give 'console' or a writable file path"
        ) from None
