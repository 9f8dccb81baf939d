"""Sessions for people signed in to the console: the store, the throttle, the API backend.

A session is an in-process record behind a random cookie (``HttpOnly``,
``SameSite=Strict``): it names the user, their roles and agent extension, and
carries a CSRF token. :class:`SessionBackend` plugs into
:class:`cti.auth.Authenticator` next to the API tokens, so a signed-in agent
uses the same ``/api`` routes, with the same role checks, as software holding
that agent's token.

CSRF (OWASP's "synchronizer token"): every request that changes state
(anything but GET, HEAD, OPTIONS) made with the session cookie must carry the
session's token in ``X-CSRF-Token``. The cookie's ``SameSite=Strict`` already
keeps other sites from sending it; the token is the second lock. A WebSocket
opened with the cookie must come from the console's own origin (RFC 6455
§10.2: the server checks ``Origin``), since browsers send cookies on
cross-site WebSocket handshakes regardless of CORS.

Both classes here take the time as an argument (``now``, seconds) and do no
I/O, so expiry and lockout are tested without a clock.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

from cti.auth import Principal
from cti.errors import ControlError

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "LoginThrottle",
    "Session",
    "SessionBackend",
    "SessionStore",
]

COOKIE = "ccserver_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _key(session_id: str) -> bytes:
    """Sessions are filed under a digest of their id: a lookup's timing reveals nothing."""
    return hashlib.sha256(session_id.encode("utf-8")).digest()


@dataclass(slots=True)
class Session:
    """One signed-in person on one browser."""

    id: str
    principal: Principal
    csrf: str
    created: float
    last_seen: float
    display_name: str


class SessionStore:
    """Live sessions in memory: idle and absolute expiry, a bound on how many are kept."""

    def __init__(self, *, idle: float, lifetime: float, limit: int = 10_000) -> None:
        self.idle = idle
        self.lifetime = lifetime
        self.limit = limit
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, principal: Principal, now: float, display_name: str = "") -> Session:
        session_id = secrets.token_urlsafe(32)
        key = _key(session_id)
        session = Session(
            id=session_id,
            principal=dataclasses.replace(principal, session=key.hex()),
            csrf=secrets.token_urlsafe(32),
            created=now,
            last_seen=now,
            display_name=display_name or principal.name,
        )
        self._sessions[key] = session
        while len(self._sessions) > self.limit:  # the least recently used go first
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str, now: float) -> Session | None:
        """The live session, touched; an expired one is dropped and None returned."""
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if now - session.last_seen > self.idle or now - session.created > self.lifetime:
            del self._sessions[key]
            return None
        session.last_seen = now
        self._sessions.move_to_end(key)
        return session

    def drop(self, session_id: str) -> bool:
        return self._sessions.pop(_key(session_id), None) is not None


@dataclass(slots=True)
class _Failures:
    times: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class LoginThrottle:
    """Locks out an address after ``max_failures`` failed sign-ins within ``lockout`` seconds."""

    def __init__(self, max_failures: int, lockout: float, limit: int = 10_000) -> None:
        self.max_failures = max_failures
        self.lockout = lockout
        self.limit = limit
        self._by_address: OrderedDict[str, _Failures] = OrderedDict()

    def retry_after(self, address: str, now: float) -> float:
        """Seconds until ``address`` may try again; 0 when it may now."""
        entry = self._by_address.get(address)
        if entry is None:
            return 0.0
        return max(0.0, entry.locked_until - now)

    def failed(self, address: str, now: float) -> None:
        entry = self._by_address.setdefault(address, _Failures())
        self._by_address.move_to_end(address)
        entry.times = [t for t in entry.times if now - t < self.lockout] + [now]
        if len(entry.times) >= self.max_failures:
            entry.locked_until = now + self.lockout
            entry.times.clear()
        while len(self._by_address) > self.limit:
            self._by_address.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._by_address.pop(address, None)


def same_origin(request: web.Request) -> bool:
    """Whether the request's ``Origin`` (if any) is this server as the browser reached it."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser, or a same-origin GET of an old browser
    return urlsplit(origin).netloc == request.host


class SessionBackend:
    """The console's sessions as a way into the API (an :class:`cti.auth.AuthBackend`)."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    def session(self, request: web.Request, now: float | None = None) -> Session | None:
        session_id = request.cookies.get(COOKIE)
        if not session_id:
            return None
        return self.store.get(session_id, time.time() if now is None else now)

    def authenticate(self, request: web.Request) -> Principal | None:
        session = self.session(request)
        if session is None:
            return None
        if request.method not in SAFE_METHODS:
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode("utf-8"), session.csrf.encode("utf-8")):
                raise ControlError(
                    403,
                    "csrf-failed",
                    f"a signed-in request that changes something needs the {CSRF_HEADER} header",
                    {"header": CSRF_HEADER},
                )
        elif request.headers.get("Upgrade", "").lower() == "websocket" and not same_origin(request):
            return None  # a page of another site opening a socket with our cookie
        return session.principal
