"""The console offers an optional call feature exactly when the API has (and documents) it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent_console.web import features
from ccserver.events import EventBus
from cti.api import ROUTES, ApiSettings, build_app
from cti.auth import Authenticator
from cti.openapi import openapi_document
from tests.unit.test_cti_api import TOKENS, FakeContacts, FakeControl


def api_app() -> web.Application:
    return build_app(
        control=FakeControl(),
        bus=EventBus(),
        auth=Authenticator.from_tokens(TOKENS),
        contacts=FakeContacts(),
        settings=ApiSettings(),
    )


def documented(method: str, path: str) -> bool:
    paths: dict[str, Any] = openapi_document(ROUTES)["paths"]
    return method.lower() in paths.get(path, {})


def test_consult_and_conference_are_offered_as_documented() -> None:
    offered = features(api_app())
    assert offered["consult"] is documented("POST", "/api/calls/{contact_id}/consult") is True
    assert offered["conference"] is documented("POST", "/api/calls/{contact_id}/conference")
    # Click-to-call follows its route: offered if and only if the API lists it.
    assert offered["click_to_call"] is documented("POST", "/api/calls")


def test_click_to_call_appears_with_its_route() -> None:
    app = api_app()

    async def dial(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_post("/api/calls", dial)
    assert features(app)["click_to_call"] is True
