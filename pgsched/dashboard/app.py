"""The dashboard as a Starlette ASGI app: five read-only pages, and actions behind a token.

Safe by default:

* read-only unless built with ``allow_actions=True``, which needs a token (a setting,
  ``PGSCHED_DASHBOARD_TOKEN``); every action is a POST that carries the token (header
  ``X-Pgsched-Token`` or form field ``token``) and a CSRF token matching this browser's
  cookie, so a page on another origin can neither trigger one nor read the token;
* the page loads nothing from another origin (its scripts and styles ship in the package,
  and a Content-Security-Policy of ``'self'`` tells the browser so);
* the database URL is shown with its password masked.

Handlers are plain functions (Starlette runs them in its thread pool), since every read is
a short synchronous psycopg statement through ``pgsched.operations``.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import pass_context
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from pgsched import operations
from pgsched.dashboard import data
from pgsched.db import Database
from pgsched.db.redact import mask_url
from pgsched.errors import ConfigurationError, PgschedError, WorkflowNotFound
from pgsched.lifecycle import STATUSES, UNFINISHED
from pgsched.settings import Settings, load_settings

HERE = Path(__file__).resolve().parent
CSRF_COOKIE = "pgsched_csrf"
TOKEN_HEADER = "x-pgsched-token"
#: Everything from this origin only; inline styles for the step timeline's bar widths.
CSP = ("default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


class DashboardSettings(BaseSettings):
    """The dashboard's own settings, read like pgsched's (environment or ``.env``)."""

    model_config = SettingsConfigDict(env_prefix="PGSCHED_DASHBOARD_", env_file=".env",
                                      extra="ignore")

    token: str | None = Field(
        default=None, description="Required by every action (cancel, resume, retry, pause).")


def create_app(source: Database | Settings | None = None, *, allow_actions: bool = False,
               token: str | None = None) -> Starlette:
    """The dashboard as an ASGI app to serve or mount (``Mount("/pgsched", app=...)``).

    ``source`` is a ``Database`` (``app.db`` of a pgsched App), a ``Settings``, or ``None``
    for the settings in the environment. ``token`` defaults to ``PGSCHED_DASHBOARD_TOKEN``;
    with ``allow_actions`` it is required.
    """
    db = _database(source)
    token = token or DashboardSettings().token
    if allow_actions and not token:
        raise ConfigurationError(
            "the dashboard's actions need a token: set PGSCHED_DASHBOARD_TOKEN (a long random "
            "string, e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`), or "
            "leave actions off for a read-only dashboard"
        )
    return _Dashboard(db, allow_actions, token).starlette()


def _database(source: Database | Settings | None) -> Database:
    if isinstance(source, Database):
        return source
    if source is not None and not isinstance(source, Settings):
        raise ConfigurationError(
            f"create_app takes a pgsched Database (app.db) or Settings, got {source!r}")
    settings = source or load_settings()
    return Database(settings.database_url, settings.schema_name, data_dir=settings.data_dir,
                    pool_size=4)


def _when(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _path_for(request: Request, name: str, **params: Any) -> str:
    """A route's path under wherever the dashboard is mounted, without scheme and host:
    behind a proxy that terminates TLS, an absolute ``http://`` link would be wrong (and
    blocked as mixed content)."""
    return request.url_for(name, **params).path


@pass_context
def _template_url_for(context: dict[str, Any], name: str, /, **params: Any) -> str:
    return _path_for(context["request"], name, **params)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


class _Dashboard:
    def __init__(self, db: Database, allow_actions: bool, token: str | None) -> None:
        self.db = db
        self.allow_actions = allow_actions
        self.token = token
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.filters.update(when=_when, seconds=_seconds, pretty=_pretty)
        env.globals.update(statuses=STATUSES, unfinished=UNFINISHED, url_for=_template_url_for)

    def starlette(self) -> Starlette:
        routes = [
            Route("/", self.home),
            Route("/runs", self.runs),
            Route("/runs/{run_id:path}", self.run),
            Route("/queues", self.queues),
            Route("/schedules", self.schedules),
            Route("/workers", self.workers),
            Route("/actions/{verb}", self.action, methods=["POST"]),
            Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
        ]
        app = Starlette(routes=routes, exception_handlers={PgschedError: self.failure})
        app.state.db = self.db
        return app

    # -- pages ------------------------------------------------------------------------------

    def render(self, request: Request, template: str, **context: Any) -> Response:
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = self.templates.TemplateResponse(request, template, {
            "dsn": mask_url(self.db.url), "schema": self.db.schema,
            "actions": self.allow_actions, "csrf": csrf,
            "message": request.query_params.get("msg"), **context,
        })
        if request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict",
                                path=request.scope.get("root_path") or "/")
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def home(self, request: Request) -> Response:
        return RedirectResponse(_path_for(request, "runs"), status_code=302)

    def runs(self, request: Request) -> Response:
        query = request.query_params
        filters = {key: (query.get(key) or "").strip()
                   for key in ("status", "queue", "name", "id_prefix")}
        try:
            page = max(1, int(query.get("page", "1")))
        except ValueError:
            page = 1
        before = query.get("before") or None
        found = data.runs_page(self.db, page=page, before=before, **filters)

        def page_url(params: dict[str, str | int]) -> str:
            kept = {k: v for k, v in filters.items() if v}
            return f"{_path_for(request, 'runs')}?{urlencode({**kept, **params})}"

        # A search page (cursor-paged) goes back to the newest; a numbered one a page back.
        if found.search:
            newer: dict[str, str | int] | None = {} if before else None
        else:
            newer = {"page": page - 1} if page > 1 else None
        return self.render(request, "runs.html", runs=found.rows, filters=filters, page=page,
                           search=found.search, searched_to=found.searched_to,
                           prev_url=page_url(newer) if newer is not None else None,
                           next_url=page_url(found.next) if found.next else None)

    def run(self, request: Request) -> Response:
        run = operations.get_workflow(self.db, request.path_params["run_id"])
        span = max((s["duration_s"] or 0 for s in run["steps"]), default=0) or 1
        return self.render(request, "run.html", run=run, span=span)

    def queues(self, request: Request) -> Response:
        return self.render(request, "queues.html", queues=data.queues(self.db))

    def schedules(self, request: Request) -> Response:
        return self.render(request, "schedules.html",
                           schedules=operations.list_schedules(self.db))

    def workers(self, request: Request) -> Response:
        return self.render(request, "workers.html", workers=data.workers(self.db),
                           live_s=operations.LIVE_WORKER_SECONDS)

    def failure(self, request: Request, exc: Exception) -> Response:
        response = self.render(request, "error.html", error=str(exc))
        response.status_code = 404 if isinstance(exc, WorkflowNotFound) else 400
        return response

    # -- actions ----------------------------------------------------------------------------

    async def action(self, request: Request) -> Response:
        if not self.allow_actions:
            return PlainTextResponse(
                "this dashboard is read-only: start it with --allow-actions and "
                "PGSCHED_DASHBOARD_TOKEN set to cancel, resume, retry or pause", 403)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not cookie or not hmac.compare_digest(form.get("csrf", ""), cookie):
            return PlainTextResponse(
                "missing or stale CSRF token: reload the page and try again", 403)
        given = request.headers.get(TOKEN_HEADER) or form.get("token", "")
        # create_app refuses actions without a token; an empty one never matches anyway.
        if not self.token or not hmac.compare_digest(given.encode(), self.token.encode()):
            return PlainTextResponse("wrong or missing dashboard token", 403)
        verb, target = request.path_params["verb"], form.get("id", "")
        do, back = self._actions(request).get(verb, (None, None))
        if do is None or back is None or not target:
            return PlainTextResponse(f"unknown action {verb!r} or missing id", 400)
        try:
            await run_in_threadpool(do, target)
            message = f"{verb}: done for {target}"
        except PgschedError as exc:
            message = f"{verb} refused: {exc}"
        return RedirectResponse(f"{back(target)}?{urlencode({'msg': message})}",
                                status_code=303)

    def _actions(self, request: Request
                 ) -> dict[str, tuple[Callable[[str], Any], Callable[[str], str]]]:
        def run_page(run_id: str) -> str:
            return _path_for(request, "run", run_id=run_id)

        def schedules_page(_: str) -> str:
            return _path_for(request, "schedules")

        db = self.db
        return {
            "cancel": (lambda i: operations.cancel(db, i), run_page),
            "resume": (lambda i: operations.resume(db, i), run_page),
            "retry": (lambda i: operations.retry(db, i), run_page),
            "pause": (lambda n: operations.set_schedule_paused(db, n, True), schedules_page),
            "unpause": (lambda n: operations.set_schedule_paused(db, n, False), schedules_page),
        }
