"""HTTP resources of follow-ups: callback tasks set at wrap-up (routes listed in cti/api.py).

- ``POST /api/follow-ups`` ``{"contact_id", "due", "note"}``: the agent who
  handled the contact (or a supervisor) sets a follow-up; the customer and the
  caller's number are taken from the call (live, or stored).
- ``GET /api/follow-ups?agent=&customer=&caller=&open=``: an agent's own list
  ("my follow-ups"), or a customer's (what the console shows beside the
  customer's previous contacts). An agent may list its own, or a customer's;
  another agent's list is for supervisors.
- ``POST /api/follow-ups/{id}/done``: the owner (or a supervisor) closes it.

Stored in the ``follow_ups`` table (ccserver/storage/followups.py).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ccserver.calls.control import ControlError
from ccserver.storage.followups import FollowUpStore
from cti.auth import Principal
from cti.errors import forbidden
from cti.openapi import QueryParam

__all__ = [
    "FOLLOW_UPS",
    "FOLLOW_UPS_QUERY",
    "FollowUpBody",
    "add_follow_up",
    "follow_up_done",
    "list_follow_ups",
]

FOLLOW_UPS = web.AppKey("follow_ups", FollowUpStore)
MAX_AHEAD = timedelta(days=731)
"""A follow-up is due within two years."""


class FollowUpBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    contact_id: str = Field(min_length=1, max_length=64, description="the contact it follows")
    due: date = Field(description="the day to call the customer back (ISO 8601 date)")
    note: str | None = Field(default=None, max_length=4000)

    @field_validator("due")
    @classmethod
    def _reasonable(cls, due: date) -> date:
        # Yesterday is accepted: the agent's day may still be yesterday in UTC.
        today = datetime.now(UTC).date()
        if due < today - timedelta(days=1):
            raise ValueError("the due date is in the past")
        if due > today + MAX_AHEAD:
            raise ValueError("the due date is more than two years ahead")
        return due


FOLLOW_UPS_QUERY = (
    QueryParam("agent", "only this agent's (an agent: its own; the default for an agent token)"),
    QueryParam("customer", "only this customer's (customer id)"),
    QueryParam("caller", "only those set for this caller number"),
    QueryParam("open", "true: only those not done yet (default false)"),
)


def _store(request: web.Request) -> FollowUpStore:
    store = request.app.get(FOLLOW_UPS)
    if store is None:
        raise ControlError(503, "follow-ups-unavailable", "this node has no contact store")
    return store


async def _who_called(request: web.Request, contact_id: str) -> tuple[str | None, str | None]:
    """The customer id and caller number of a contact: from the live call, else the store."""
    from cti.api import CONTACTS, CONTROL  # the application keys live with the API routes

    try:
        view: dict[str, Any] | None = request.app[CONTROL].call(contact_id)
    except ControlError:
        view = None
    if view is not None:
        customer = view.get("customer") or {}
        return customer.get("id"), view.get("caller")
    stored = await request.app[CONTACTS].get(contact_id)
    if stored is not None:
        return stored.get("customer_id"), stored.get("caller_number")
    return None, None


async def add_follow_up(request: web.Request, who: Principal) -> Any:
    from cti.api import check_contact, read_body  # one ownership rule for every contact route

    body = await read_body(request, FollowUpBody)
    await check_contact(request, who, body.contact_id)
    if who.agent is None and not who.supervises:
        raise forbidden(f"{who.name} has no agent extension")
    customer_id, caller = await _who_called(request, body.contact_id)
    return await _store(request).add(
        agent=who.agent or who.name,
        due=body.due,
        now=datetime.now(UTC),
        contact_id=body.contact_id,
        customer_id=customer_id,
        caller_number=caller,
        note=body.note or None,
    )


async def list_follow_ups(request: web.Request, who: Principal) -> Any:
    params = request.query
    agent = params.get("agent")
    customer = params.get("customer")
    caller = params.get("caller")
    open_text = params.get("open", "false").lower()
    if open_text not in ("true", "false", "1", "0"):
        raise ControlError(
            422,
            "invalid-query",
            "invalid query parameters: open",
            {"errors": [{"field": "open", "message": "true or false"}]},
        )
    if not who.supervises:
        if agent is not None and agent != who.agent:
            raise forbidden(f"{who.name} may list only its own follow-ups", {"agent": agent})
        if customer is None and caller is None:
            agent = who.agent
    found = await _store(request).find(
        agent=agent,
        customer_id=customer,
        caller_number=caller,
        open_only=open_text in ("true", "1"),
    )
    return {"follow_ups": found}


async def follow_up_done(request: web.Request, who: Principal) -> Any:
    from cti.api import NoBody, read_body

    await read_body(request, NoBody)
    store = _store(request)
    text = request.match_info["follow_up_id"]
    found = await store.get(int(text)) if text.isdigit() else None
    if found is None:
        raise ControlError(
            404, "follow-up-not-found", f"no follow-up {text}", {"follow_up_id": text}
        )
    if not who.supervises and found.agent != who.agent:
        raise forbidden(f"follow-up {found.id} is {found.agent}'s", {"follow_up_id": found.id})
    await store.done(found.id, datetime.now(UTC))
    return await store.get(found.id)
