"""What a worker's log says about the runs it finishes: enough to follow a run without SQL.

A finished run is one INFO line with its id, name, queue, outcome, duration and attempt
(``order-42 greet logs SUCCESS 0.01s attempt 1/5``); a failure names the exception's type and
message and, when it will be retried, when; a run that fails for good (ERROR, DEAD) is logged
at ERROR with its traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

from tests.waiting import wait_for

LEVEL = re.compile(r"\b(TRACE|DEBUG|INFO|SUCCESS|WARNING|ERROR|CRITICAL)\b")
TIMESTAMPED = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} ")
DURATION = re.compile(r"\b\d+(\.\d+)?\s?m?s\b")
RETRY_WHEN = re.compile(r"\b(retr\w*|next attempt)\b.*\b(in \d+(\.\d+)?\s?m?s\b"
                        r"|at (\d{4}-\d\d-\d\d[T ])?\d\d:\d\d)")


@pytest.fixture
def faults(load_app_module, sql) -> ModuleType:
    module = load_app_module("faults_app.py")
    module.app.migrate()
    for ddl in module.TABLES:
        sql(ddl)
    return module


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def level(line: str) -> str | None:
    found = LEVEL.search(line)
    return found.group(1) if found else None


def find(path: Path, *needles: str) -> list[int]:
    """Indexes of the log lines that contain every needle."""
    return [i for i, line in enumerate(lines(path)) if all(n in line for n in needles)]


def continuation(path: Path, index: int) -> str:
    """The line at ``index`` and what follows it up to the next timestamped log line: where
    a traceback logged with the line is printed."""
    text = lines(path)
    end = index + 1
    while end < len(text) and not TIMESTAMPED.match(text[end]):
        end += 1
    return "\n".join(text[index:end])


def assert_no_internal_jargon(path: Path) -> None:
    text = path.read_text()
    assert "→ LOST" not in text, text
    assert "retryd" not in text, text


@pytest.fixture
def worker_log(faults, workers, sql) -> Path:
    proc = workers.start("faults_app.py", "--queues", "logs", "--concurrency", "2")
    workers.wait_registered(sql, 1)
    return Path(proc.log_path)


def test_a_successful_run_is_one_info_line(faults, workers, worker_log):
    faults.logs.enqueue(faults.greet, "ada", workflow_id="order-42")
    assert faults.app.handle("order-42").result(timeout=20) == "hello ada"

    wait_for(lambda: find(worker_log, "order-42", "SUCCESS"), 10,
             what="the finished run's log line", logs=workers.logs)
    line = lines(worker_log)[find(worker_log, "order-42", "SUCCESS")[0]]
    assert level(line) == "INFO", line
    for needle in ("greet", "logs", "attempt 1/5"):
        assert needle in line, f"{needle!r} missing from {line!r}"
    assert DURATION.search(line.split("SUCCESS", 1)[1]), f"no duration in {line!r}"
    assert_no_internal_jargon(worker_log)


def test_a_retried_then_dead_run_logs_why_when_and_its_traceback(faults, workers, worker_log,
                                                                 sql):
    faults.logs.enqueue(faults.charge_card, "4242", workflow_id="card-01", max_attempts=2)
    wait_for(lambda: sql("SELECT status FROM workflows WHERE id = 'card-01'") == [("DEAD",)],
             30, what="the run to be dead-lettered", logs=workers.logs)
    wait_for(lambda: find(worker_log, "card-01", "DEAD"), 10, what="the DEAD log line",
             logs=workers.logs)

    retried = [i for i in find(worker_log, "card-01", "ValueError", "card declined 4242")
               if "attempt 1/2" in lines(worker_log)[i]]
    assert retried, f"no line for the failed first attempt\n{worker_log.read_text()}"
    line = lines(worker_log)[retried[0]]
    assert level(line) in ("WARNING", "ERROR"), line
    assert RETRY_WHEN.search(line), f"the retry line does not say when it runs: {line!r}"

    found = [i for i in find(worker_log, "card-01", "DEAD")
             if level(lines(worker_log)[i]) == "ERROR"]
    assert found, f"no ERROR line for the dead run\n{worker_log.read_text()}"
    line = lines(worker_log)[found[0]]
    for needle in ("charge_card", "logs", "attempt 2/2", "ValueError", "card declined 4242"):
        assert needle in line, f"{needle!r} missing from {line!r}"
    block = continuation(worker_log, found[0])
    assert "Traceback (most recent call last)" in block, block
    assert "ValueError: card declined 4242" in block, block
    assert_no_internal_jargon(worker_log)


def test_a_permanent_error_is_logged_at_error_with_its_traceback(faults, workers, worker_log,
                                                                 sql):
    faults.logs.enqueue(faults.refund, "no", workflow_id="refuse-1")
    wait_for(lambda: sql("SELECT status FROM workflows WHERE id = 'refuse-1'") == [("ERROR",)],
             20, what="the run to end in ERROR", logs=workers.logs)
    wait_for(lambda: find(worker_log, "refuse-1", "PermanentError"), 10,
             what="the failed run's log line", logs=workers.logs)
    found = [i for i in find(worker_log, "refuse-1", "PermanentError")
             if level(lines(worker_log)[i]) == "ERROR"]
    assert found, f"no ERROR line for the failed run\n{worker_log.read_text()}"
    index = found[0]
    line = lines(worker_log)[index]
    for needle in ("refund", "logs", "attempt 1/", "refused for good: no"):
        assert needle in line, f"{needle!r} missing from {line!r}"
    assert "Traceback (most recent call last)" in continuation(worker_log, index)
    assert_no_internal_jargon(worker_log)
