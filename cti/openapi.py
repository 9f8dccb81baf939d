"""The OpenAPI 3.1 document of the API, served at ``/api/openapi.json``.

Built from the route table of ``cti/api.py`` (paths, roles, request schemas
from the pydantic models), so every registered route is documented.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cti.api import Route

__all__ = ["ERROR_SCHEMA", "QueryParam", "openapi_document"]


@dataclass(frozen=True, slots=True)
class QueryParam:
    """A query-string parameter of a route, as documented."""

    name: str
    description: str
    required: bool = False


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "error_id", "message", "details"],
    "properties": {
        "status": {"type": "integer", "description": "the HTTP status, repeated"},
        "error_id": {"type": "string", "description": "machine-readable, e.g. call-not-found"},
        "message": {"type": "string", "description": "for people"},
        "details": {"type": "object", "description": "what the error is about"},
    },
}

_ERRORS = {
    "400": "invalid-json: the body is not JSON",
    "401": "unauthorized: no token or an invalid one",
    "403": "forbidden: the token's role or agent does not allow this",
    "404": "unknown call, contact, agent, queue or route",
    "409": "the call or agent is not in a state that allows this",
    "422": "invalid-data: the body does not match the schema (details.errors names the fields)",
    "500": "internal-error",
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _operation(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    scope = " Agents may only use it on themselves or their own calls." if route.self_only else ""
    op: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": route.summary,
        "description": f"Needs the `{route.role}` role or above.{scope}",
        "tags": [route.tag],
        "security": [{"bearer": []}],
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {}}},
            },
            **{code: _error(text) for code, text in _ERRORS.items()},
        },
    }
    params += [
        {
            "name": p.name,
            "in": "query",
            "required": p.required,
            "description": p.description,
            "schema": {"type": "string"},
        }
        for p in route.query
    ]
    if route.csv:
        op["responses"]["200"]["content"]["text/csv"] = {"schema": {"type": "string"}}
    if route.path.startswith(("/api/reports", "/api/staffing")):
        op["responses"]["422"] = _error("invalid-query: details.errors names each parameter")
    if params:
        op["parameters"] = params
    if route.body is not None:
        name = route.body.__name__
        components[name] = route.body.model_json_schema(ref_template="#/components/schemas/{model}")
        op["requestBody"] = {
            "required": name not in ("NoBody", "LogoutBody"),
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    return op


def openapi_document(routes: Iterable[Route]) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {
        "/api/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness of the node (no authentication)",
                "tags": ["node"],
                "security": [],
                "responses": {"200": {"description": "OK"}},
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document (no authentication)",
                "tags": ["node"],
                "security": [],
                "responses": {"200": {"description": "OK"}},
            }
        },
        "/api/events": {
            "get": {
                "operationId": "events",
                "summary": "WebSocket stream of events and screen pops (see docs/api.md)",
                "description": "Token as `?token=` or `Authorization: Bearer`; optional "
                "`?types=call.,agent.`. Without a valid token the socket is closed with 4401.",
                "tags": ["events"],
                "security": [{"bearer": []}, {"query_token": []}],
                "parameters": [
                    {"name": "token", "in": "query", "schema": {"type": "string"}},
                    {"name": "types", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"101": {"description": "Switching Protocols (WebSocket)"}},
            }
        },
    }
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ccserver API",
            "version": "1",
            "description": "Calls, agents, queues, contacts and the event stream. See docs/api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "query_token": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
    }
