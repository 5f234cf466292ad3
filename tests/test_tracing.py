"""OpenTelemetry: one trace from a request's enqueue in this process to the run, its steps
and its child in a real worker process, joined from what each process exported; and no
trace of OpenTelemetry in a process that does not use it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import wait_for

trace = pytest.importorskip("opentelemetry.trace")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)


@pytest.fixture(scope="module")
def exported() -> Iterator[InMemorySpanExporter]:
    """This process's spans. The global provider can be set once per process: the module
    installs it and shuts it down afterwards, so later tests record nothing."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    assert trace.get_tracer_provider() is provider, "another test set a tracer provider"
    yield exporter
    provider.shutdown()


def hex_id(value: int, width: int) -> str:
    return f"0x{value:0{width}x}"


def worker_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_requests_trace_continues_into_the_worker(exported, load_app_module, workers, sql,
                                                    tmp_path):
    mod = load_app_module("aio_app.py")
    spans_file = tmp_path / "worker-spans.jsonl"
    workers.start("aio_app.py", env={"PGSCHED_OTEL_EXPORT": str(spans_file)})
    tracer = trace.get_tracer("test")

    with tracer.start_as_current_span("POST /orders") as request:
        handle = mod.jobs.enqueue(mod.pipeline, 4)
        failing = mod.jobs.enqueue(mod.fail, "out of stock")
        batch = asyncio.run(mod.jobs.enqueue_many_async([(mod.double, (n,), {})
                                                         for n in range(3)]))
        gathered = mod.jobs.enqueue(mod.gathered, 5)
        composed = mod.jobs.enqueue(mod.composed, 5)
    assert handle.result(timeout=60) == 12
    trace_id = hex_id(request.get_span_context().trace_id, 32)

    local = {span.attributes.get("pgsched.workflow.id"): span
             for span in exported.get_finished_spans() if span.name == "enqueue jobs"}
    assert set(local) == {handle.workflow_id, failing.workflow_id, None,
                          gathered.workflow_id, composed.workflow_id}
    many = local[None]  # one span for the batch, and its context on each of its runs
    assert many.attributes["messaging.batch.message_count"] == 3
    assert many.parent.span_id == request.get_span_context().span_id
    assert sql("SELECT DISTINCT split_part(trace_context, '-', 3) FROM workflows "
               "WHERE id = ANY(%s)", ([h.workflow_id for h in batch],)) == [
        (f"{many.context.span_id:016x}",)]
    enqueue = local[handle.workflow_id]
    assert enqueue.kind is trace.SpanKind.PRODUCER
    assert enqueue.parent.span_id == request.get_span_context().span_id
    assert enqueue.attributes["pgsched.workflow.name"] == "pipeline"
    stored = sql("SELECT trace_context FROM workflows WHERE id = %s", (handle.workflow_id,))
    flags = int(enqueue.context.trace_flags)
    assert stored == [(f"00-{trace_id[2:]}-{enqueue.context.span_id:016x}-{flags:02x}",)]

    child_id = f"{handle.workflow_id}/3"

    def joined() -> dict[tuple[str, str], dict[str, Any]] | None:
        spans = {(s["name"], s["attributes"]["pgsched.workflow.id"]): s
                 for s in worker_spans(spans_file) if s["context"]["trace_id"] == trace_id}
        wanted = {("queued jobs", handle.workflow_id), ("run pipeline", handle.workflow_id),
                  ("step add_one", handle.workflow_id), ("transaction note", handle.workflow_id),
                  ("child child_double", handle.workflow_id), ("step add_one", child_id),
                  ("run fail", failing.workflow_id), ("run gathered", gathered.workflow_id),
                  ("step outer", composed.workflow_id), ("step add_one", composed.workflow_id)}
        return spans if wanted <= set(spans) else None

    found = wait_for(joined, 30, what="the worker's spans", logs=workers.logs)
    assert isinstance(found, dict)
    spans = {name: span for (name, run_id), span in found.items()
             if run_id == handle.workflow_id}
    run, child = spans["run pipeline"], spans["child child_double"]
    producer_span = hex_id(enqueue.context.span_id, 16)
    # Each process exported its own spans; the links between them make one trace.
    assert run["parent_id"] == producer_span and run["kind"] == "SpanKind.CONSUMER"
    assert spans["queued jobs"]["parent_id"] == producer_span
    assert run["status"]["status_code"] == "OK"
    for name in ("step add_one", "transaction note", "child child_double"):
        assert spans[name]["parent_id"] == run["context"]["span_id"], name
    assert [spans[name]["attributes"]["pgsched.step.number"]
            for name in ("step add_one", "transaction note", "child child_double")] == [1, 2, 3]
    # The child's own step nests under the child (it runs inline in the parent's thread).
    assert found[("step add_one", child_id)]["parent_id"] == child["context"]["span_id"]
    assert child["attributes"]["pgsched.child.id"] == child_id
    # An async workflow's gathered async steps: both children of its run, numbered in call
    # order. A step called by a step is a part of it: nested in its span, with no number.
    assert gathered.result(timeout=30) == [5, 6] and composed.result(timeout=30) == 7
    fetches = [s for s in worker_spans(spans_file) if s["name"] == "step fetch"
               and s["attributes"]["pgsched.workflow.id"] == gathered.workflow_id]
    run_gathered = found[("run gathered", gathered.workflow_id)]
    assert sorted(s["attributes"]["pgsched.step.number"] for s in fetches) == [1, 2]
    assert {s["parent_id"] for s in fetches} == {run_gathered["context"]["span_id"]}
    inner, step_outer = found[("step add_one", composed.workflow_id)], found[
        ("step outer", composed.workflow_id)]
    assert inner["parent_id"] == step_outer["context"]["span_id"]
    assert inner["attributes"]["pgsched.step.nested"] is True
    assert "pgsched.step.number" not in inner["attributes"]
    assert step_outer["attributes"]["pgsched.step.number"] == 1
    # A failed run says so, with the exception, under the trace of its own enqueue.
    failed = found[("run fail", failing.workflow_id)]
    assert found[("queued jobs", failing.workflow_id)]["parent_id"] == hex_id(
        local[failing.workflow_id].context.span_id, 16)
    assert failed["status"]["status_code"] == "ERROR"
    assert "out of stock" in failed["status"]["description"]
    assert failed["events"][0]["attributes"]["exception.type"] == "PermanentError"


def test_a_process_that_does_not_trace_never_imports_opentelemetry(env, load_app_module, sql):
    """Enqueueing and running a workflow import nothing of OpenTelemetry (installed here)
    and store no trace context."""
    script = (
        "import sys\n"
        "from pgsched import testing, aio\n"
        "sys.path.insert(0, 'tests/apps')\n"
        "import asyncio, aio_app\n"
        "handle = aio_app.jobs.enqueue(aio_app.pipeline, 1)\n"
        "asyncio.run(aio_app.jobs.enqueue_async(aio_app.double, 1))\n"
        "testing.run_until_idle(aio_app.app)\n"
        "assert handle.result(timeout=5) == 6\n"
        "print(sorted(name for name in sys.modules if name.startswith('opentelemetry')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    # pipeline, its child and double: three runs, none with a trace context.
    assert sql("SELECT count(*), count(trace_context) FROM workflows") == [(3, 0)]


def test_a_parked_run_continues_its_trace_when_woken(exported, load_app_module, workers,
                                                     tmp_path):
    """A run that waits for a message ends its first run span WAITING (not an error); the
    attempt that resumes it after the message is a second run span in the same trace."""
    waits = load_app_module("waits_app.py")
    spans_file = tmp_path / "worker-spans.jsonl"
    workers.start("waits_app.py", env={"PGSCHED_OTEL_EXPORT": str(spans_file)})
    with trace.get_tracer("test").start_as_current_span("POST /claims") as request:
        handle = waits.jobs.enqueue(waits.approval, 3)
    trace_id = hex_id(request.get_span_context().trace_id, 32)
    assert waits.app.get_event(handle.workflow_id, "stage", timeout=60) == "awaiting approval"
    # Parked before the message: sent earlier, the recv would find it and never park.
    wait_for(lambda: handle.status() == "WAITING", 30, what="the run to park",
             logs=workers.logs)
    waits.app.send(handle.workflow_id, "approved", topic="approval")
    assert handle.result(timeout=60) == {"claim": 3, "decision": "approved"}

    def runs() -> list[dict[str, Any]] | None:
        found = [s for s in worker_spans(spans_file) if s["name"] == "run approval"]
        done = any(s["attributes"]["pgsched.outcome"] == "SUCCESS" for s in found)
        return sorted(found, key=lambda span: span["start_time"]) if done else None

    found = wait_for(runs, 30, what="the run span of the resumed run", logs=workers.logs)
    assert isinstance(found, list) and len(found) >= 2
    *parked, resumed = found
    assert {span["context"]["trace_id"] for span in found} == {trace_id}
    assert {span["parent_id"] for span in found} == {resumed["parent_id"]}  # the enqueue span
    assert [(s["attributes"]["pgsched.outcome"], s["status"]["status_code"]) for s in parked] \
        == [("WAITING", "UNSET")] * len(parked)
    assert (resumed["attributes"]["pgsched.outcome"], resumed["status"]["status_code"]) == (
        "SUCCESS", "OK")
