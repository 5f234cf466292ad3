"""Types and workflows by name across import styles (issue 14): a web process imports
``billing.tasks`` and enqueues a dataclass (stored as ``billing.tasks:Invoice``); a worker is
started from the project directory with ``pgsched worker billing/tasks.py`` (the installed
console script, as a user types it). Before: the worker loaded the file as ``tasks``, could
not import ``billing`` and the run died (``ModuleNotFoundError``); with ``billing``
importable, the package's own ``from billing.tasks import app`` made a second App whose
workflows the worker never ran."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from pgsched.errors import WorkflowFailed
from tests.waiting import wait_for

ACTIVE = ("ENQUEUED", "RUNNING", "WAITING")

TASKS = '''
from dataclasses import dataclass

import pgsched

app = pgsched.App("billing")


@dataclass
class Invoice:
    customer: str
    cents: int


@dataclass
class Receipt:
    invoice: Invoice
    loaded_as: str


@app.step()
def charge(invoice: Invoice) -> Receipt:
    # The very class this module defines, not a copy loaded under another name.
    assert type(invoice) is Invoice, (type(invoice).__module__, __name__)
    return Receipt(invoice, f"{type(invoice).__module__}:{__name__}")


@app.workflow()
def bill(invoice: Invoice) -> Receipt:
    return charge(invoice)

'''

#: At the end of tasks.py in the layouts with a second module.
IMPORT_REPORTS = "from billing import reports  # noqa: E402,F401  (its workflows)\n"

REPORTS = '''
from billing.tasks import Invoice, app


@app.workflow()
def monthly(invoices: list[Invoice]) -> int:
    return sum(invoice.cents for invoice in invoices)
'''


@pytest.fixture(params=["readme-layout", "package", "namespace-package"])
def project(request, tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[Path, ModuleType]]:
    """``billing/tasks.py`` alone, as in the README; or with a second module that imports
    ``billing.tasks`` (``billing/`` with or without ``__init__.py``). This (web) process
    imports it as ``billing.tasks`` from the project directory."""
    root = tmp_path / "project"
    (root / "billing").mkdir(parents=True)
    tasks_source = textwrap.dedent(TASKS)
    if request.param != "readme-layout":
        tasks_source += IMPORT_REPORTS
        (root / "billing" / "reports.py").write_text(textwrap.dedent(REPORTS))
    (root / "billing" / "tasks.py").write_text(tasks_source)
    if request.param == "package":
        (root / "billing" / "__init__.py").write_text("")
    sys.path.insert(0, str(root))
    tasks = importlib.import_module("billing.tasks")
    tasks.app.migrate()
    yield root, tasks
    tasks.app.close()
    sys.path.remove(str(root))
    for name in [name for name in sys.modules if name.split(".")[0] == "billing"]:
        del sys.modules[name]


def test_dataclasses_and_workflows_of_a_package_load_in_a_worker_started_by_file(
    project, env, tmp_path, sql
):
    root, tasks = project
    invoice = tasks.Invoice("acme", 1250)
    handle = tasks.app.start(tasks.bill, invoice, workflow_id="bill-1", max_attempts=1)
    reports = getattr(tasks, "reports", None)
    if reports is not None:
        report = tasks.app.start(reports.monthly, [invoice, tasks.Invoice("zeta", 5)])
    [(stored,)] = sql("SELECT inputs #>> '{args,0,type}' FROM workflows WHERE id = 'bill-1'")
    assert stored == "billing.tasks:Invoice"

    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "pgsched"), "worker", "billing/tasks.py"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: worker.poll() is not None or handle.status() not in ACTIVE, 30,
                 what="the run to end", logs=log.read_text)
        assert worker.poll() is None, f"the worker exited:\n{log.read_text()[-3000:]}"
        try:
            receipt = handle.result(timeout=30)
        except WorkflowFailed as failure:
            pytest.fail(f"{failure}\n{log.read_text()[-3000:]}")
        # Loaded in the worker as billing.tasks, the module the web process imported.
        assert receipt == tasks.Receipt(invoice, "billing.tasks:billing.tasks")
        if reports is not None:
            assert report.result(timeout=30) == 1255
        assert worker.poll() is None, log.read_text()
    finally:
        worker.kill()
        worker.wait(10)


def test_a_type_the_worker_cannot_import_fails_with_a_message_that_says_why(
    project, env, tmp_path, sql
):
    """A worker that has the workflow but not the type's module (another deployment)."""
    root, tasks = project
    handle = tasks.app.start(tasks.bill, tasks.Invoice("acme", 1), max_attempts=1)
    sql("UPDATE workflows SET inputs = jsonb_set(inputs, '{args,0,type}', "
        "'\"billing.gone:Invoice\"')")
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "pgsched"), "worker", "billing/tasks.py"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        with pytest.raises(WorkflowFailed) as failure:
            handle.result(timeout=30)
        assert failure.value.error["type"] == "NotRegistered"
        assert "billing.gone:Invoice" in failure.value.error["message"]
        assert "pgsched worker billing/gone.py" in failure.value.error["message"]
        assert worker.poll() is None, log.read_text()
    finally:
        worker.kill()
        worker.wait(10)
