"""Who is calling the API, and what they may do.

Software authenticates with a token from ``[api.tokens.<name>]`` sent as
``Authorization: Bearer <token>`` (the WebSocket also takes ``?token=``, since
browsers cannot set headers on it). A :class:`Principal` carries the roles:

- ``agent``: acts on its own agent only (the extension the token is bound to);
- ``supervisor``: acts on every agent and every call;
- ``admin``: what a supervisor may, plus administration as it arrives.

:func:`authenticate` asks each configured :class:`AuthBackend` in turn: the
token backend first, then the web console's sessions for people
(``agent_console/sessions.py``: a cookie, with a CSRF token required on every
request that changes something). A session's principal is the person's user
name, roles and agent extension, so the same routes and checks serve both.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from aiohttp import web

from ccserver.config.schema import ApiToken
from cti.errors import forbidden, unauthorized

__all__ = [
    "AuthBackend",
    "Authenticator",
    "Principal",
    "Role",
    "TokenBackend",
    "bearer_token",
]

Role = Literal["agent", "supervisor", "admin"]

# Each role includes the ones below it.
_RANK: dict[str, int] = {"agent": 1, "supervisor": 2, "admin": 3}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller of the API."""

    name: str
    roles: frozenset[str]
    agent: str | None = None
    """The agent extension a token is bound to, if any."""
    via: str = "token"
    session: str | None = None
    """For a console session: its key (a digest, never the cookie), so signing out
    can close the event streams opened with it."""

    @property
    def rank(self) -> int:
        return max((_RANK.get(r, 0) for r in self.roles), default=0)

    @property
    def supervises(self) -> bool:
        """Sees and acts on every agent and call."""
        return self.rank >= _RANK["supervisor"]

    def has(self, role: Role) -> bool:
        return self.rank >= _RANK[role]

    def require(self, role: Role) -> None:
        if not self.has(role):
            raise forbidden(f"this needs the {role} role", {"required": role})

    def may_act_as(self, agent: str) -> bool:
        return self.supervises or (self.has("agent") and self.agent == agent)

    def require_agent(self, agent: str) -> None:
        """Agents act on themselves only; supervisors on anyone."""
        if not self.may_act_as(agent):
            raise forbidden(
                f"{self.name} may not act on agent {agent}", {"agent": agent, "own": self.agent}
            )


class AuthBackend(Protocol):
    """One way of proving who you are: None means "not mine, ask the next backend"."""

    def authenticate(self, request: web.Request) -> Principal | None: ...


def bearer_token(request: web.Request, *, query: bool = False) -> str | None:
    """The token of ``Authorization: Bearer``, or of ``?token=`` when ``query`` is allowed."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    if query:
        return request.query.get("token") or None
    return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenBackend:
    """API tokens from the configuration, compared in constant time."""

    def __init__(self, tokens: Mapping[str, ApiToken]) -> None:
        self._entries = [
            (_digest(t.token), Principal(name, frozenset(t.roles), t.agent))
            for name, t in tokens.items()
        ]

    def authenticate(self, request: web.Request) -> Principal | None:
        token = bearer_token(request, query=request.path == "/api/events")
        if token is None:
            return None
        given = _digest(token)
        found: Principal | None = None
        # Compare with every token, whatever matches first: the time taken
        # tells nothing about which token came close.
        for digest, principal in self._entries:
            if hmac.compare_digest(given, digest):
                found = principal
        return found


class Authenticator:
    """The chain of backends: the first that recognises the request wins."""

    def __init__(self, backends: Iterable[AuthBackend]) -> None:
        self.backends = list(backends)

    @classmethod
    def from_tokens(cls, tokens: Mapping[str, ApiToken]) -> Authenticator:
        return cls([TokenBackend(tokens)])

    def identify(self, request: web.Request) -> Principal | None:
        for backend in self.backends:
            principal = backend.authenticate(request)
            if principal is not None:
                return principal
        return None

    def authenticate(self, request: web.Request) -> Principal:
        """The principal behind ``request``, or a 401 ControlError."""
        principal = self.identify(request)
        if principal is None:
            if request.headers.get("Authorization") is None:
                raise unauthorized(
                    "send an API token (Authorization: Bearer <token>) or sign in to the console"
                )
            raise unauthorized("the API token is not valid")
        return principal
