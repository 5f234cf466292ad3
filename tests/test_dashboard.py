"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against a
``pgsched dashboard`` subprocess on real PostgreSQL, with runs executed by a real worker.

Screenshots of every page are saved under the test's tmp_path (docs/dashboard-*.png are
copies of two of them). CI installs chromium (.ci/run); without it the test fails, saying
how to install it, rather than skipping.
"""

from __future__ import annotations

import http.cookiejar
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import ROOT
from tests.waiting import wait_for

SQL = Callable[..., list[tuple]]
TOKEN = "test-dashboard-token-5f0c"
#: Put into the dashboard's database URL (the test server trusts any password): no page may
#: show it.
PASSWORD = "pw-never-shown-7d1e"


def _with_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url
    user, host = parts.netloc.rsplit("@", 1) if "@" in parts.netloc else ("postgres",
                                                                         parts.netloc)
    return urlunsplit(parts._replace(netloc=f"{user}:{PASSWORD}@{host}"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(asgi: Any, probe: str = "/runs") -> Iterator[str]:
    """Serve an ASGI app on a free local port in a thread; yield its base URL once
    ``probe`` answers, and stop it on exit."""
    import threading

    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(base + probe), 30, what=f"{probe} to answer")
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("the dashboard's browser test needs Debian's chromium: "
                    "apt-get install -y chromium (.ci/run installs it)")
    return path


@pytest.fixture
def demo(load_app_module, sql: SQL) -> ModuleType:
    """tests/apps/dashboard_app.py with its schema migrated and its log table created."""
    module = load_app_module("dashboard_app.py")
    module.app.migrate()
    sql("CREATE TABLE dash_log (key text, what text)")
    return module


@pytest.fixture
def dashboard(demo: ModuleType, env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``pgsched dashboard --allow-actions`` in its own process; yields its base URL."""
    port = _free_port()
    log = open(tmp_path / "dashboard.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgsched", "dashboard", "--port", str(port), "--allow-actions"],
        env={**env, "PGSCHED_DASHBOARD_TOKEN": TOKEN,
             "PGSCHED_DATABASE_URL": _with_password(env["PGSCHED_DATABASE_URL"])},
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        def serving() -> bool:
            assert proc.poll() is None, (tmp_path / "dashboard.log").read_text()
            return _up(base + "/runs")

        wait_for(serving, 30, what="the dashboard to serve",
                 logs=lambda: (tmp_path / "dashboard.log").read_text())
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_dashboard_in_a_browser(chromium: str, demo: ModuleType, dashboard: str, workers,
                                sql: SQL, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    workers.start("dashboard_app.py", "--concurrency", "2")
    demo.reports.enqueue(demo.build_report, "sales", workflow_id="report-ok").result(timeout=30)
    failed = demo.reports.enqueue(demo.build_report, "ledger", True, workflow_id="report-bad")
    wait_for(lambda: failed.status() in ("ERROR", "DEAD"), 30, what="report-bad to fail",
             logs=workers.logs)
    demo.reports.enqueue(demo.keep_ticking, "t", workflow_id="ticking")
    wait_for(lambda: sql("SELECT count(*) FROM steps WHERE workflow_id = 'ticking'")[0][0] >= 2,
             30, what="the ticking run to take steps", logs=workers.logs)

    # An hour of earlier history (rows, as a busy queue would leave them) fills the chart and
    # a second page of the runs list.
    sql("INSERT INTO workflows (id, name, status, queue, inputs, attempts, max_attempts, "
        "not_before, created_at, started_at, finished_at, updated_at, error) "
        "SELECT 'history-' || g, 'build_report', CASE WHEN g % 9 = 0 THEN 'ERROR' ELSE "
        "'SUCCESS' END, 'reports', '{\"args\": [], \"kwargs\": {}}', 1, 3, t, t, t, "
        "t + interval '2 seconds', t, CASE WHEN g % 9 = 0 THEN '{\"type\": \"ValueError\", "
        "\"message\": \"no totals row\"}'::jsonb END "
        "FROM generate_series(1, 150) g, "
        "LATERAL (SELECT now() - interval '58 minutes' + g * (g % 7 + 3) * interval '2 seconds'"
        " AS t) x")

    shots = tmp_path / "screenshots"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(dashboard) else outside.append(r.url))

        # The runs list shows the failed run; filtering by status keeps it.
        page.goto(dashboard + "/runs")
        row = page.locator("tr[data-run='report-bad']")
        expect(row.locator(".status")).to_have_text(failed.status())
        page.screenshot(path=str(shots / "runs.png"))
        page.select_option("select[name=status]", failed.status())
        page.click("text=Filter")
        expect(page.locator("tr[data-run='report-bad']")).to_have_count(1)
        expect(page.locator("tr[data-run] .status")).to_have_text(
            [failed.status()] * page.locator("tr[data-run]").count())
        page.goto(dashboard + "/runs")
        expect(page.locator("tr[data-run]")).to_have_count(50)
        page.click("#next-page")
        expect(page.locator("tr[data-run]")).to_have_count(50)
        expect(page.locator("tr[data-run='report-bad']")).to_have_count(0)

        # With "live" ticked the list picks up a new run without a reload.
        page.goto(dashboard + "/runs")
        page.check("#live")
        demo.reports.enqueue(demo.build_report, "fresh", workflow_id="report-fresh")
        expect(page.locator("tr[data-run='report-fresh']")).to_be_visible(timeout=15_000)

        # Its detail page shows the traceback and the steps with durations.
        row.locator("a").click()
        expect(page.locator("#traceback")).to_contain_text("ValueError: report 'ledger' has "
                                                           "no totals row")
        expect(page.locator("#traceback")).to_contain_text("build_report")
        steps = page.locator("#steps tbody tr")
        expect(steps).to_have_count(2)
        expect(steps.nth(0)).to_contain_text("fetch_rows")
        expect(steps.nth(1)).to_contain_text("render")
        expect(steps.nth(0).locator("td").nth(4)).to_contain_text("ms")
        page.screenshot(path=str(shots / "run.png"), full_page=True)

        # Cancel from the page stops the run in the worker process.
        page.goto(dashboard + "/runs/ticking")
        expect(page.locator("#run-status")).to_have_text("RUNNING")
        page.fill("form.action input[name=token]", TOKEN)
        page.click("form.action button:has-text('Cancel')")
        expect(page.locator("#message")).to_contain_text("cancel: done for ticking")
        expect(page.locator("#run-status")).to_have_text("CANCELLED")
        wait_for(lambda: sql("SELECT what FROM dash_log WHERE key = 't'") == [("exit",)], 30,
                 what="the worker to stop the cancelled code", logs=workers.logs)
        assert sql("SELECT status, output FROM workflows WHERE id = 'ticking'") == [
            ("CANCELLED", None)]
        page.screenshot(path=str(shots / "run-cancelled.png"), full_page=True)

        # The queue page's chart is drawn by the page's own script.
        page.goto(dashboard + "/queues")
        chart = page.locator("tr[data-queue='reports'] svg.chart")
        expect(chart.locator("rect.finished").first).to_be_attached()
        expect(chart.locator("rect.failed").first).to_be_attached()
        assert int(chart.get_attribute("data-drawn")) >= 20
        page.screenshot(path=str(shots / "queues.png"), full_page=True)

        page.goto(dashboard + "/schedules")
        schedule = page.locator("tr[data-schedule='new_year_report']")
        expect(schedule).to_contain_text("active")
        page.screenshot(path=str(shots / "schedules.png"), full_page=True)
        schedule.locator("input[name=token]").fill(TOKEN)
        schedule.locator("button:has-text('Pause')").click()
        expect(schedule).to_contain_text("paused")
        assert sql("SELECT paused FROM schedules") == [(True,)]

        page.goto(dashboard + "/workers")
        expect(page.locator("tr[data-worker]")).to_have_count(1)
        expect(page.locator("tr[data-worker] .status")).to_have_text("live")
        page.screenshot(path=str(shots / "workers.png"), full_page=True)
        browser.close()
    assert not outside, f"the page requested other origins: {outside}"
    assert sorted(p.name for p in shots.iterdir()) == [
        "queues.png", "run-cancelled.png", "run.png", "runs.png", "schedules.png", "workers.png"]


class _Client:
    """urllib with this client's cookies, for what a browser would refuse to do."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as response:
            return response.read().decode()

    def post(self, path: str, form: dict[str, str], headers: dict[str, str] | None = None
             ) -> tuple[int, str]:
        request = urllib.request.Request(
            self.base + path, data=urllib.parse.urlencode(form).encode(), method="POST",
            headers=headers or {})
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


def test_actions_need_the_token_and_the_csrf_token_and_no_page_shows_the_password(
    demo: ModuleType, dashboard: str, sql: SQL
) -> None:
    demo.reports.enqueue(demo.build_report, "later", workflow_id="waiting",
                         delay=timedelta(hours=1))
    sql("INSERT INTO workflows (id, name, status, queue, inputs, max_attempts, not_before, "
        "created_at, updated_at, finished_at, error) VALUES ('<b>x', 'w', 'ERROR', 'q', '{}', "
        "1, now(), now(), now(), now(), %s)",
        ('{"type": "E", "message": "<script>alert(1)</script>", "traceback": "<i>"}',))
    client = _Client(dashboard)
    shown = client.get("/runs/%3Cb%3Ex")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown and "<script>alert" not in shown
    assert "&lt;b&gt;x" in shown and "<b>x" not in shown
    pages = [client.get(path) for path in
             ("/runs", "/runs/waiting", "/queues", "/schedules", "/workers")]
    assert all(PASSWORD not in html for html in pages)
    assert "postgres:***@" in pages[0]
    csrf = re.search(r'name="csrf" value="([^"]+)"', pages[1]).group(1)

    refused = [
        client.post("/actions/cancel", {"id": "waiting", "csrf": csrf}),
        client.post("/actions/cancel", {"id": "waiting", "csrf": csrf, "token": "wrong"}),
        client.post("/actions/cancel", {"id": "waiting", "token": TOKEN}),
        client.post("/actions/cancel", {"id": "waiting", "csrf": "forged", "token": TOKEN}),
        _Client(dashboard).post("/actions/cancel",
                                {"id": "waiting", "csrf": csrf, "token": TOKEN}),
    ]
    assert [code for code, _ in refused] == [403] * 5, refused
    assert sql("SELECT status FROM workflows WHERE id = 'waiting'") == [("ENQUEUED",)]
    # A GET never changes anything.
    with pytest.raises(urllib.error.HTTPError, match="405"):
        client.get("/actions/cancel?id=waiting")

    code, html = client.post("/actions/cancel", {"id": "waiting", "csrf": csrf},
                             headers={"X-Pgsched-Token": TOKEN})
    assert code == 200 and "cancel: done for waiting" in html
    assert sql("SELECT status FROM workflows WHERE id = 'waiting'") == [("CANCELLED",)]
    code, html = client.post("/actions/retry", {"id": "waiting", "csrf": csrf, "token": TOKEN})
    assert "retry refused: run waiting was cancelled, not failed" in html


def test_read_only_by_default(demo: ModuleType, env: dict[str, str], tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    from pgsched.dashboard import create_app
    from pgsched.errors import ConfigurationError

    monkeypatch.delenv("PGSCHED_DASHBOARD_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="PGSCHED_DASHBOARD_TOKEN"):
        create_app(demo.app.db, allow_actions=True)

    port = _free_port()
    with open(tmp_path / "ro.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgsched", "dashboard", "--port", str(port)],
            env={**env, "PGSCHED_DASHBOARD_TOKEN": TOKEN}, cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: _up(base + "/runs"), 30, what="the read-only dashboard",
                     logs=lambda: (tmp_path / "ro.log").read_text())
            client = _Client(base)
            html = client.get("/schedules")
            assert "read-only" in html and 'name="token"' not in html
            code, text = client.post("/actions/pause", {"id": "new_year_report",
                                                        "token": TOKEN})
            assert code == 403 and "read-only" in text
        finally:
            proc.terminate()
            proc.wait(10)


def test_mounted_inside_another_asgi_app(demo: ModuleType, sql: SQL) -> None:
    """``create_app(app.db)`` under a prefix of the user's app: links, assets and actions
    stay under that prefix."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from pgsched.dashboard import create_app

    demo.reports.enqueue(demo.build_report, "m", workflow_id="mounted-1", delay=3600)
    web = Starlette(routes=[Mount("/ops/pgsched", app=create_app(demo.app.db))])
    with serving(web, "/ops/pgsched/runs") as base:
        html = _Client(base).get("/ops/pgsched/runs")
        assert 'href="/ops/pgsched/runs/mounted-1"' in html
        assert 'src="/ops/pgsched/static/dashboard.js"' in html
        assert _up(base + "/ops/pgsched/static/dashboard.js")
        assert 'action="' not in _Client(base).get("/ops/pgsched/runs/mounted-1")
