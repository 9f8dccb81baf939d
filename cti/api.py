"""The REST API: calls, agents, queues and contacts, for software and (later) the console.

Every route is declared once in :data:`ROUTES` with its role and request
schema; :func:`setup_api` registers them and ``cti/openapi.py`` documents them
from the same table, so the two cannot drift apart. Operations go through
:class:`~ccserver.calls.control.CallControl`; failures are
:class:`~ccserver.calls.control.ControlError` and leave as the one error shape
(``cti/errors.py``).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.ext.asyncio import AsyncEngine

from ccserver.calls.control import CallControl, ControlError
from ccserver.calls.outbound import NUMBER_PATTERN
from ccserver.events import EventBus
from ccserver.storage.database import get_contact
from ccserver.storage.models import Contact
from cti.api_json import dumps
from cti.auth import Authenticator, Principal, Role
from cti.customer_search import CUSTOMERS_QUERY, get_customers
from cti.errors import error_middleware, forbidden, invalid_json, validation_failed
from cti.followups import (
    FOLLOW_UPS_QUERY,
    FollowUpBody,
    add_follow_up,
    follow_up_done,
    list_follow_ups,
)
from cti.knowledge import KNOWLEDGE_QUERY, get_knowledge
from cti.openapi import QueryParam, openapi_document
from cti.pop import PopService
from cti.reports_api import (
    AGENT_REPORT_QUERY,
    QUEUE_REPORT_QUERY,
    STAFFING_QUERY,
    get_agent_report,
    get_queue_report,
    get_staffing,
)
from cti.ws import close_all, events_handler

__all__ = [
    "AUTH",
    "BUS",
    "CONTACTS",
    "CONTROL",
    "POP",
    "ROUTES",
    "ApiSettings",
    "ContactStore",
    "DatabaseContacts",
    "Route",
    "build_app",
    "check_contact",
    "setup_api",
]


# -- what the application holds ---------------------------------------------------------


class ContactStore(Protocol):
    """Stored contacts, as the API shows them (JSON-ready), or None if unknown."""

    async def get(self, contact_id: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class ApiSettings:
    ws_heartbeat: float = 30.0
    pop_history: int = 5
    pop_timeout: float = 0.2


CONTROL = web.AppKey("control", CallControl)
BUS = web.AppKey("bus", EventBus)
AUTH = web.AppKey("auth", Authenticator)
CONTACTS = web.AppKey("contacts", ContactStore)
SETTINGS = web.AppKey("api_settings", ApiSettings)
POP = web.AppKey("pop", PopService)
SOCKETS = web.AppKey("event_sockets", weakref.WeakSet[web.WebSocketResponse])


# -- request bodies -----------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoBody(_Body):
    """No fields: an empty body, ``{}`` or nothing at all."""


class LogoutBody(_Body):
    reason: str | None = Field(default=None, min_length=1, max_length=64)


class NotReadyBody(_Body):
    reason: str = Field(min_length=1, max_length=64, description="a reason code of [acd]")


class TransferBody(_Body):
    queue: str | None = Field(default=None, min_length=1, description="blind transfer to a queue")
    agent: str | None = Field(
        default=None, min_length=1, description="blind transfer to an agent's extension"
    )
    number: str | None = Field(
        default=None,
        pattern=NUMBER_PATTERN,
        description="blind transfer to a number through the trunk's outbound route",
    )

    @model_validator(mode="after")
    def _one_target(self) -> TransferBody:
        given = [k for k in ("queue", "agent", "number") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one transfer target: queue, agent or number")
        return self


class DialBody(_Body):
    agent: str | None = Field(
        default=None,
        min_length=1,
        description="the agent whose phone rings first (default: the token's own agent)",
    )
    number: str = Field(
        pattern=NUMBER_PATTERN, description="an extension, or a number called through the trunk"
    )
    ring_timeout: float | None = Field(
        default=None, gt=0, le=120, description="seconds the agent's phone rings (default 30)"
    )


class DispositionBody(_Body):
    disposition: str | None = Field(default=None, min_length=1, max_length=64)
    notes: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _something(self) -> DispositionBody:
        if self.disposition is None and self.notes is None:
            raise ValueError("give a disposition, notes or both")
        return self


class MonitorBody(_Body):
    extension: str = Field(
        min_length=1, max_length=32, description="the supervisor's extension, whose phone is rung"
    )
    mode: Literal["listen", "whisper", "barge"] = Field(
        default="listen",
        description="listen: hears both, heard by nobody; whisper: heard by the agent only; "
        "barge: heard by everyone",
    )


class TargetBody(_Body):
    extension: str | None = Field(
        default=None, min_length=1, max_length=32, description="an extension's registered phone"
    )
    number: str | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        pattern=r"^\+?[0-9*#]+$",
        description="an external number, via the trunk's outbound route",
    )

    @model_validator(mode="after")
    def _one_target(self) -> TargetBody:
        if (self.extension is None) == (self.number is None):
            raise ValueError("give exactly one target: extension or number")
        return self

    @property
    def kind_target(self) -> tuple[str, str]:
        if self.extension is not None:
            return "extension", self.extension
        assert self.number is not None
        return "number", self.number


M = TypeVar("M", bound=BaseModel)


async def read_body(request: web.Request, model: type[M]) -> M:
    """The request body validated against ``model``: 400 invalid-json, 422 invalid-data."""
    raw = await request.read()
    data: Any = {}
    if raw.strip():
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise invalid_json(str(exc)) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(exc) from None


# -- contacts from the database --------------------------------------------------------------


def _iso(value: Any) -> Any:
    return value.isoformat() if value is not None and hasattr(value, "isoformat") else value


def contact_view(row: Contact) -> dict[str, Any]:
    columns = [c.key for c in Contact.__table__.columns]
    out = {key: _iso(getattr(row, key)) for key in columns}
    out["timeline"] = [
        {"seq": e.seq, "type": e.type, "at": _iso(e.at), "data": e.data} for e in row.events
    ]
    return out


class DatabaseContacts:
    """Contacts from the contact store (the recorder's batched writes: a contact's
    latest changes appear within a batch interval)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, contact_id: str) -> dict[str, Any] | None:
        row = await get_contact(self.engine, contact_id)
        return contact_view(row) if row is not None else None


# -- who may touch what ------------------------------------------------------------------------


def _owns_call(request: web.Request, who: Principal, view: dict[str, Any]) -> bool:
    if who.supervises:
        return True
    me = who.agent
    if me is None:
        return False
    if view["agent"] == me or me in view["ringing"]:
        return True
    pop = request.app.get(POP)
    return pop is not None and me in pop.agents_of(view["contact_id"])


def _require_call(request: web.Request, who: Principal, view: dict[str, Any]) -> None:
    if not _owns_call(request, who, view):
        raise forbidden(
            f"contact {view['contact_id']} is not offered to {who.name}",
            {"contact_id": view["contact_id"]},
        )


# -- handlers ---------------------------------------------------------------------------------

Handler = Callable[[web.Request, Principal], Awaitable[Any]]


def _control(request: web.Request) -> CallControl:
    return request.app[CONTROL]


def _seen_by(who: Principal, view: dict[str, Any]) -> dict[str, Any]:
    """Monitoring is the supervisors' business: an agent is not told it is listened to."""
    if who.supervises or view.get("monitor") is None:
        return view
    return {**view, "monitor": None}


async def list_calls(request: web.Request, who: Principal) -> Any:
    return [_seen_by(who, v) for v in _control(request).calls() if _owns_call(request, who, v)]


async def get_call(request: web.Request, who: Principal) -> Any:
    view = _control(request).call(request.match_info["contact_id"])
    _require_call(request, who, view)
    return _seen_by(who, view)


async def hangup_call(request: web.Request, who: Principal) -> Any:
    control = _control(request)
    view = control.call(request.match_info["contact_id"])
    _require_call(request, who, view)
    control.hangup(view["contact_id"], by="system" if who.supervises else "agent")
    return {"contact_id": view["contact_id"], "state": "ended"}


async def hold_call(request: web.Request, who: Principal) -> Any:
    control = _control(request)
    await read_body(request, NoBody)
    _require_call(request, who, control.call(request.match_info["contact_id"]))
    return control.hold(request.match_info["contact_id"])


async def resume_call(request: web.Request, who: Principal) -> Any:
    control = _control(request)
    await read_body(request, NoBody)
    _require_call(request, who, control.call(request.match_info["contact_id"]))
    return control.resume(request.match_info["contact_id"])


async def transfer_call(request: web.Request, who: Principal) -> Any:
    control = _control(request)
    body = await read_body(request, TransferBody)
    view = control.call(request.match_info["contact_id"])
    _require_call(request, who, view)
    if body.agent is not None:
        return control.transfer_to_agent(view["contact_id"], body.agent)
    if body.number is not None:
        return control.transfer_to_number(view["contact_id"], body.number)
    assert body.queue is not None  # exactly one target (TransferBody)
    return control.transfer_to_queue(view["contact_id"], body.queue)


# -- supervision, conference and consult transfer ---------------------------------------------


async def _own_call_id(request: web.Request, who: Principal) -> str:
    view = _control(request).call(request.match_info["contact_id"])
    _require_call(request, who, view)
    return str(view["contact_id"])


async def monitor_call(request: web.Request, who: Principal) -> Any:
    body = await read_body(request, MonitorBody)
    contact_id = await _own_call_id(request, who)
    return _control(request).monitor(contact_id, body.extension, body.mode, who.name)


async def stop_monitor(request: web.Request, who: Principal) -> Any:
    return _control(request).monitor_stop(await _own_call_id(request, who))


async def conference_call(request: web.Request, who: Principal) -> Any:
    body = await read_body(request, TargetBody)
    contact_id = await _own_call_id(request, who)
    kind, target = body.kind_target
    return _seen_by(who, _control(request).conference(contact_id, kind, target, who.name))


async def drop_conference(request: web.Request, who: Principal) -> Any:
    return _seen_by(who, _control(request).conference_drop(await _own_call_id(request, who)))


async def consult_call(request: web.Request, who: Principal) -> Any:
    body = await read_body(request, TargetBody)
    contact_id = await _own_call_id(request, who)
    kind, target = body.kind_target
    return _seen_by(who, _control(request).consult(contact_id, kind, target, who.name))


async def complete_consult(request: web.Request, who: Principal) -> Any:
    await read_body(request, NoBody)
    return _seen_by(who, _control(request).consult_complete(await _own_call_id(request, who)))


async def cancel_consult(request: web.Request, who: Principal) -> Any:
    await read_body(request, NoBody)
    return _seen_by(who, _control(request).consult_cancel(await _own_call_id(request, who)))


async def click_to_call(request: web.Request, who: Principal) -> Any:
    """Ring the agent's phone, then the number (an agent dials for itself only)."""
    body = await read_body(request, DialBody)
    agent = body.agent or who.agent
    if agent is None:
        raise ControlError(422, "agent-required", "give the agent whose phone rings first")
    who.require_agent(agent)
    return await _control(request).click_to_call(
        agent, body.number, via="api", ring_timeout=body.ring_timeout
    )


async def _contact_allowed(request: web.Request, who: Principal, contact_id: str) -> bool:
    """Whether ``contact_id`` exists (live, recently ended or stored); 403 if not ``who``'s."""
    control = _control(request)
    try:
        view: dict[str, Any] | None = control.call(contact_id)
    except ControlError:
        view = None
    if view is not None:
        _require_call(request, who, view)
        return True
    pop = request.app.get(POP)
    handlers = pop.agents_of(contact_id) if pop is not None else frozenset()
    if handlers and (who.supervises or who.agent in handlers):
        return True
    stored = await request.app[CONTACTS].get(contact_id)
    if stored is None:
        if handlers:
            raise forbidden(f"contact {contact_id} was not handled by {who.name}")
        return False
    if not (who.supervises or stored.get("agent") == who.agent or who.agent in handlers):
        raise forbidden(
            f"contact {contact_id} was not handled by {who.name}", {"contact_id": contact_id}
        )
    return True


async def check_contact(request: web.Request, who: Principal, contact_id: str) -> None:
    """404 for an unknown contact, 403 for one ``who`` did not handle (follow-ups use it)."""
    if not await _contact_allowed(request, who, contact_id):
        raise _contact_not_found(contact_id)


def _contact_not_found(contact_id: str) -> ControlError:
    return ControlError(
        404, "contact-not-found", f"no contact {contact_id}", {"contact_id": contact_id}
    )


async def set_disposition(request: web.Request, who: Principal) -> Any:
    body = await read_body(request, DispositionBody)
    contact_id = request.match_info["contact_id"]
    if not await _contact_allowed(request, who, contact_id):
        raise _contact_not_found(contact_id)
    return _control(request).disposition(contact_id, body.disposition, body.notes)


async def get_contact_record(request: web.Request, who: Principal) -> Any:
    contact_id = request.match_info["contact_id"]
    stored = await request.app[CONTACTS].get(contact_id)
    if stored is None:
        raise _contact_not_found(contact_id)
    if not who.supervises:
        pop = request.app.get(POP)
        handlers = pop.agents_of(contact_id) if pop is not None else frozenset()
        if stored.get("agent") != who.agent and who.agent not in handlers:
            raise forbidden(
                f"contact {contact_id} was not handled by {who.name}", {"contact_id": contact_id}
            )
    return stored


async def list_agents(request: web.Request, who: Principal) -> Any:
    return [a for a in _control(request).agents() if who.may_act_as(a["agent"])]


def _agent(request: web.Request, who: Principal) -> str:
    ext = request.match_info["ext"]
    who.require_agent(ext)
    return ext


async def get_agent(request: web.Request, who: Principal) -> Any:
    return _control(request).agent(_agent(request, who))


async def agent_login(request: web.Request, who: Principal) -> Any:
    ext = _agent(request, who)
    await read_body(request, NoBody)
    return _control(request).agent_login(ext)


async def agent_logout(request: web.Request, who: Principal) -> Any:
    ext = _agent(request, who)
    body = await read_body(request, LogoutBody)
    return _control(request).agent_logout(ext, body.reason)


async def agent_ready(request: web.Request, who: Principal) -> Any:
    ext = _agent(request, who)
    await read_body(request, NoBody)
    return _control(request).agent_ready(ext)


async def agent_not_ready(request: web.Request, who: Principal) -> Any:
    ext = _agent(request, who)
    body = await read_body(request, NotReadyBody)
    return _control(request).agent_pause(ext, body.reason)


async def list_queues(request: web.Request, who: Principal) -> Any:
    return _control(request).queues()


# -- the route table ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    role: Role = "agent"
    body: type[BaseModel] | None = None
    self_only: bool = False
    """Agents may only use it on their own extension or calls (checked by the handler)."""
    query: tuple[QueryParam, ...] = ()
    """Query-string parameters, for the OpenAPI document."""
    csv: bool = False
    """Also answers text/csv (the handler returns its own response then)."""


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/calls", list_calls, "Live calls (an agent sees its own)", "calls"),
    Route(
        "POST",
        "/api/calls",
        click_to_call,
        "Click-to-call: ring the agent's phone, then the number, and bridge them",
        "calls",
        body=DialBody,
        self_only=True,
    ),
    Route("GET", "/api/calls/{contact_id}", get_call, "One live call", "calls", self_only=True),
    Route(
        "POST",
        "/api/calls/{contact_id}/hangup",
        hangup_call,
        "Hang up a call",
        "calls",
        self_only=True,
    ),
    Route(
        "POST",
        "/api/calls/{contact_id}/hold",
        hold_call,
        "Put a connected caller on hold",
        "calls",
        body=NoBody,
        self_only=True,
    ),
    Route(
        "POST",
        "/api/calls/{contact_id}/resume",
        resume_call,
        "Take a caller off hold",
        "calls",
        body=NoBody,
        self_only=True,
    ),
    Route(
        "POST",
        "/api/calls/{contact_id}/transfer",
        transfer_call,
        "Blind transfer to a queue, an agent or a number",
        "calls",
        body=TransferBody,
        self_only=True,
    ),
    # supervision, conference and consult transfer
    Route(
        "POST",
        "/api/calls/{contact_id}/monitor",
        monitor_call,
        "Ring a supervisor's phone into the call to listen, whisper or barge (or change mode)",
        "calls",
        role="supervisor",
        body=MonitorBody,
    ),
    Route(
        "DELETE",
        "/api/calls/{contact_id}/monitor",
        stop_monitor,
        "Hang up the supervisor's leg; the call goes back to two parties",
        "calls",
        role="supervisor",
    ),
    Route(
        "POST",
        "/api/calls/{contact_id}/conference",
        conference_call,
        "Add a third party (extension or number); all three hear each other",
        "calls",
        body=TargetBody,
        self_only=True,
    ),
    Route(
        "DELETE",
        "/api/calls/{contact_id}/conference",
        drop_conference,
        "Hang up the third party of a conference",
        "calls",
        self_only=True,
    ),
    Route(
        "POST",
        "/api/calls/{contact_id}/consult",
        consult_call,
        "Consult transfer: hold the caller (music) and ring the target for the agent",
        "calls",
        body=TargetBody,
        self_only=True,
    ),
    Route(
        "POST",
        "/api/calls/{contact_id}/consult/complete",
        complete_consult,
        "Complete a consult transfer: caller to target, the agent leaves",
        "calls",
        body=NoBody,
        self_only=True,
    ),
    Route(
        "POST",
        "/api/calls/{contact_id}/consult/cancel",
        cancel_consult,
        "Cancel a consult transfer: the target is hung up, the agent has the caller back",
        "calls",
        body=NoBody,
        self_only=True,
    ),
    Route(
        "PUT",
        "/api/contacts/{contact_id}/disposition",
        set_disposition,
        "Set the wrap-up disposition and notes of a contact",
        "contacts",
        body=DispositionBody,
        self_only=True,
    ),
    Route(
        "GET",
        "/api/contacts/{contact_id}",
        get_contact_record,
        "A stored contact with its timeline",
        "contacts",
        self_only=True,
    ),
    Route(
        "GET",
        "/api/agents",
        list_agents,
        "Agents and their states (an agent sees itself)",
        "agents",
    ),
    Route("GET", "/api/agents/{ext}", get_agent, "One agent's state", "agents", self_only=True),
    Route(
        "POST",
        "/api/agents/{ext}/login",
        agent_login,
        "Log an agent in (phone registered)",
        "agents",
        body=NoBody,
        self_only=True,
    ),
    Route(
        "POST",
        "/api/agents/{ext}/logout",
        agent_logout,
        "Log an agent out",
        "agents",
        body=LogoutBody,
        self_only=True,
    ),
    Route(
        "POST",
        "/api/agents/{ext}/ready",
        agent_ready,
        "Make an agent available",
        "agents",
        body=NoBody,
        self_only=True,
    ),
    Route(
        "POST",
        "/api/agents/{ext}/not-ready",
        agent_not_ready,
        "Make an agent not ready with a reason code",
        "agents",
        body=NotReadyBody,
        self_only=True,
    ),
    Route("GET", "/api/queues", list_queues, "Queues with their live statistics", "queues"),
    Route(
        "GET",
        "/api/customers",
        get_customers,
        "Find customers by name, phone number, account number or id",
        "customers",
        query=CUSTOMERS_QUERY,
    ),
    Route(
        "GET",
        "/api/knowledge",
        get_knowledge,
        "Knowledge base articles for typed words and for what the IVR recognised",
        "knowledge",
        query=KNOWLEDGE_QUERY,
    ),
    Route(
        "POST",
        "/api/follow-ups",
        add_follow_up,
        "Set a follow-up (a callback task with a due date) for a contact's customer",
        "follow-ups",
        body=FollowUpBody,
        self_only=True,
    ),
    Route(
        "GET",
        "/api/follow-ups",
        list_follow_ups,
        "Follow-ups: an agent's own, or a customer's",
        "follow-ups",
        query=FOLLOW_UPS_QUERY,
    ),
    Route(
        "POST",
        "/api/follow-ups/{follow_up_id}/done",
        follow_up_done,
        "Mark a follow-up done",
        "follow-ups",
        body=NoBody,
        self_only=True,
    ),
    Route(
        "GET",
        "/api/reports/queues",
        get_queue_report,
        "Per-queue report over a range, per interval (JSON or CSV)",
        "reports",
        role="supervisor",
        query=QUEUE_REPORT_QUERY,
        csv=True,
    ),
    Route(
        "GET",
        "/api/reports/agents",
        get_agent_report,
        "Per-agent report over a range, per interval (JSON or CSV)",
        "reports",
        role="supervisor",
        query=AGENT_REPORT_QUERY,
        csv=True,
    ),
    Route(
        "GET",
        "/api/staffing",
        get_staffing,
        "Erlang C agents required for a forecast, beside the agents logged in",
        "reports",
        role="supervisor",
        query=STAFFING_QUERY,
    ),
)


def _wrap(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        who = request.app[AUTH].authenticate(request)
        who.require(route.role)
        result = await route.handler(request, who)
        if isinstance(result, web.StreamResponse):
            return result  # a CSV export answers for itself
        return web.json_response(result, dumps=dumps)

    handle.__name__ = route.handler.__name__
    return handle


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(ROUTES))


async def _events(request: web.Request) -> web.StreamResponse:
    app = request.app
    return await events_handler(
        request,
        bus=app[BUS],
        auth=app[AUTH],
        sockets=app[SOCKETS],
        heartbeat=app[SETTINGS].ws_heartbeat,
    )


def setup_api(
    app: web.Application,
    *,
    control: CallControl,
    bus: EventBus,
    auth: Authenticator,
    contacts: ContactStore,
    settings: ApiSettings,
    history: Any = None,
) -> None:
    """Register the API on ``app`` (which must use :func:`error_middleware`).

    ``history`` is ``CustomerDirectory.recent_contacts`` (or None): with it, the
    app runs the screen-pop service for its lifetime.
    """
    app[CONTROL] = control
    app[BUS] = bus
    app[AUTH] = auth
    app[CONTACTS] = contacts
    app[SETTINGS] = settings
    app[SOCKETS] = weakref.WeakSet()
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _wrap(route))
    app.router.add_get("/api/events", _events)
    app.router.add_get("/api/openapi.json", _openapi)
    app[POP] = PopService(
        bus,
        control,
        history,
        history_limit=settings.pop_history,
        history_timeout=settings.pop_timeout,
    )
    app.cleanup_ctx.append(_pop_service)
    app.on_shutdown.append(_close_sockets)


async def _pop_service(app: web.Application) -> AsyncIterator[None]:
    """The screen-pop service runs exactly as long as the app (its task is owned here)."""
    task = asyncio.create_task(app[POP].run(), name="screen-pop")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait([task])


async def _close_sockets(app: web.Application) -> None:
    await close_all(app[SOCKETS])


def build_app(**kw: Any) -> web.Application:
    """A new application with the error middleware and the API (see :func:`setup_api`)."""
    app = web.Application(middlewares=[error_middleware])
    setup_api(app, **kw)
    return app
