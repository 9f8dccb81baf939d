"""The web console on the node's HTTP server: sign-in, the pages, their settings.

Routes (docs/console.md):

- ``GET /console/`` goes to the signed-in person's page (agents: the agent
  console, supervisors and admins: the wallboard), or to the sign-in page;
- ``GET /console/login``, ``/console/agent``, ``/console/wallboard``,
  ``/reports`` (supervisors: reports, charts and Erlang C staffing): the pages
  (plain HTML, CSS and JavaScript from ``agent_console/static``, no build step);
  a page needs a session with its role, else the sign-in page or 403;
- ``POST /console/api/login`` (JSON ``{"username", "password"}``) starts a
  session and sets its cookie; ``POST /console/api/logout`` ends it;
  ``GET /console/api/me`` tells the page who it is and its CSRF token;
  ``GET /console/api/settings`` what the pages offer (reason codes, each
  queue's dispositions and wrap-up time, which optional call features the
  server has).

Everything the pages then do goes through the ``/api`` routes with the
session (see :mod:`agent_console.sessions`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from agent_console.passwords import dummy_hash, verify_password
from agent_console.sessions import (
    COOKIE,
    CSRF_HEADER,
    LoginThrottle,
    Session,
    SessionBackend,
    SessionStore,
)
from ccserver.config.schema import Config, ConsoleUser
from cti.api import SOCKETS, read_body
from cti.auth import Principal
from cti.errors import ControlError, forbidden, unauthorized
from cti.ws import CLOSE_UNAUTHORIZED, PRINCIPAL

__all__ = ["CONSOLE", "DEFAULT_DISPOSITIONS", "Console", "features", "setup_console"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"

DEFAULT_DISPOSITIONS = {
    "resolved": "Resolved",
    "follow-up": "Follow-up needed",
    "escalated": "Escalated",
    "no-action": "No action needed",
}
"""Offered for a queue that configures no ``dispositions`` of its own."""

# Optional call features other parts of the server may register; the agent
# console shows their buttons only when the route exists.
_FEATURES = {
    "consult": ("POST", "/api/calls/{contact_id}/consult"),
    "conference": ("POST", "/api/calls/{contact_id}/conference"),
    "click_to_call": ("POST", "/api/calls"),
}

# The pages load nothing from elsewhere and may not be framed (clickjacking).
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


@dataclass(slots=True)
class Console:
    """What the console's handlers share: users, sessions, throttle, settings."""

    cfg: Config
    users: Mapping[str, ConsoleUser]
    store: SessionStore
    throttle: LoginThrottle
    backend: SessionBackend

    def display_name(self, username: str, user: ConsoleUser) -> str:
        if user.name:
            return user.name
        ext = self.cfg.extensions.get(user.agent or "")
        return ext.name if ext is not None else username

    def principal(self, username: str, user: ConsoleUser) -> Principal:
        return Principal(username, frozenset(user.roles), user.agent, via="session")


CONSOLE = web.AppKey("console", Console)


def _home(principal: Principal) -> str:
    return "/console/wallboard" if principal.supervises else "/console/agent"


def me_view(session: Session) -> dict[str, Any]:
    who = session.principal
    return {
        "user": who.name,
        "name": session.display_name,
        "roles": sorted(who.roles),
        "agent": who.agent,
        "supervises": who.supervises,
        "csrf": session.csrf,
        "csrf_header": CSRF_HEADER,
        "home": _home(who),
        "expires_idle": session.last_seen,
    }


# -- sign-in --------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    # JSON only: a cross-site HTML form cannot send it without a CORS preflight.
    if request.content_type != "application/json":
        raise ControlError(415, "unsupported-media-type", "send the sign-in as application/json")
    body = await read_body(request, LoginBody)
    address = request.remote or "unknown"
    now = time.time()
    wait = console.throttle.retry_after(address, now)
    if wait > 0:
        raise ControlError(
            429,
            "too-many-attempts",
            f"too many failed sign-ins: try again in {math.ceil(wait)} s",
            {"retry_after": math.ceil(wait)},
        )
    user = console.users.get(body.username)
    encoded = user.password if user is not None else dummy_hash()
    # scrypt takes tens of milliseconds: off the loop that carries the calls.
    ok = await asyncio.to_thread(verify_password, body.password, encoded)
    if not ok or user is None:
        console.throttle.failed(address, now)
        log.warning("console sign-in refused for %r from %s", body.username[:64], address)
        raise ControlError(401, "sign-in-failed", "unknown user name or wrong password")
    console.throttle.succeeded(address)
    old = request.cookies.get(COOKIE)
    if old:
        console.store.drop(old)  # a fresh id at every sign-in: no session fixation
    session = console.store.create(
        console.principal(body.username, user), now, console.display_name(body.username, user)
    )
    log.info("console sign-in: %s (%s)", body.username, ",".join(sorted(user.roles)))
    response = web.json_response(me_view(session))
    response.set_cookie(
        COOKIE,
        session.id,
        httponly=True,
        samesite="Strict",
        secure=console.cfg.console.secure_cookie,
        path="/",
    )
    return response


def _signed_in(request: web.Request) -> Session:
    session = request.app[CONSOLE].backend.session(request)
    if session is None:
        raise unauthorized("sign in to the console first")
    return session


async def logout(request: web.Request) -> web.Response:
    session = _signed_in(request)
    # The same CSRF rule as every state-changing /api request.
    request.app[CONSOLE].backend.authenticate(request)
    request.app[CONSOLE].store.drop(session.id)
    # The event streams opened with this session end with it.
    sockets = request.app[SOCKETS]
    for ws in list(sockets):
        who = ws.get(PRINCIPAL)
        if who is not None and who.session == session.principal.session:
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"signed out")
    log.info("console sign-out: %s", session.principal.name)
    response = web.json_response({"signed_out": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.Response:
    return web.json_response(me_view(_signed_in(request)))


def _route_exists(app: web.Application, method: str, path: str) -> bool:
    for route in app.router.routes():
        if route.method == method and route.resource is not None:
            if route.resource.canonical == path:
                return True
    return False


def features(app: web.Application) -> dict[str, bool]:
    """Which optional call features the server has: the routes the OpenAPI document lists."""
    return {name: _route_exists(app, *where) for name, where in _FEATURES.items()}


async def settings(request: web.Request) -> web.Response:
    _signed_in(request)
    cfg = request.app[CONSOLE].cfg
    queues = {
        name: {
            "dispositions": dict(q.dispositions) or dict(DEFAULT_DISPOSITIONS),
            "wrap_up": q.wrap_up,
            "service_level_seconds": q.service_level_seconds,
            "service_level_target": q.service_level_target,
        }
        for name, q in cfg.queues.items()
    }
    app = request.app
    return web.json_response(
        {
            "reason_codes": dict(cfg.acd.reason_codes),
            "dispositions": dict(DEFAULT_DISPOSITIONS),  # for calls of no queue (click-to-call)
            "queues": queues,
            "agents": {num: ext.name for num, ext in cfg.agents().items()},
            "features": features(app),
            "reports": any(
                r.resource is not None and r.resource.canonical.startswith("/reports")
                for r in app.router.routes()
            ),
        }
    )


# -- pages ----------------------------------------------------------------------------------


def _file(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers=_PAGE_HEADERS)


async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


async def home(request: web.Request) -> web.StreamResponse:
    session = request.app[CONSOLE].backend.session(request)
    raise web.HTTPFound(_home(session.principal) if session else "/console/login")


async def login_page(request: web.Request) -> web.StreamResponse:
    return _file("login.html")


def _page(name: str, *, supervisor: bool) -> Any:
    async def page(request: web.Request) -> web.StreamResponse:
        session = request.app[CONSOLE].backend.session(request)
        if session is None:
            raise web.HTTPFound(f"/console/login?next={request.path}")
        who = session.principal
        if supervisor:
            who.require("supervisor")
        elif who.agent is None:
            if who.supervises:
                raise web.HTTPFound("/console/wallboard")
            raise forbidden(f"{who.name} has no agent extension")
        return _file(name)

    page.__name__ = f"page_{name.split('.')[0]}"
    return page


def setup_console(app: web.Application, cfg: Config) -> SessionBackend:
    """Register the console on ``app``; returns the session backend for the API's chain."""
    store = SessionStore(idle=cfg.console.session_idle, lifetime=cfg.console.session_lifetime)
    backend = SessionBackend(store)
    app[CONSOLE] = Console(
        cfg=cfg,
        users=dict(cfg.users),
        store=store,
        throttle=LoginThrottle(cfg.console.max_login_failures, cfg.console.lockout),
        backend=backend,
    )
    app.router.add_get("/", root)
    app.router.add_get("/console/", home)
    app.router.add_get("/console/login", login_page)
    app.router.add_get("/console/agent", _page("agent.html", supervisor=False))
    app.router.add_get("/console/wallboard", _page("wallboard.html", supervisor=True))
    app.router.add_get("/reports", _page("reports.html", supervisor=True))
    app.router.add_post("/console/api/login", login)
    app.router.add_post("/console/api/logout", logout)
    app.router.add_get("/console/api/me", me)
    app.router.add_get("/console/api/settings", settings)
    app.router.add_static("/console/static", STATIC, append_version=False)
    if not cfg.users:
        log.info("console: no users in users.toml, nobody can sign in")
    return backend
