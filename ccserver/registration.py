"""REGISTER handling: digest authentication plus the location service.

Glue between SIP messages and the sans-IO pieces in `ccserver.sip.digest`
and `ccserver.sip.registrar`; it reports agents' phones coming and going so
the ACD can log agents in and out with their phones. In a cluster (`shared`
set) every change is also written to the shared location service, and a
phone registered at another node is found there.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from ccserver.sip.digest import DigestAuthenticator, NonceManager
from ccserver.sip.errors import RemoteProtocolError
from ccserver.sip.message import Request, Response, make_response
from ccserver.sip.registrar import Binding, ContactRequest, LocationService, RegistrarError

if TYPE_CHECKING:
    from ccserver.location_sharing import SharedLocation

log = logging.getLogger(__name__)

Address = tuple[str, int]


def auth_response(
    request: Request, result_status: str, challenges: list[str], *, proxy: bool, stale: bool = False
) -> Response:
    """401/407 with one challenge per algorithm, 403 for wrong credentials, 400 for junk."""
    if result_status == "forbidden":
        return make_response(request, 403)
    if result_status == "bad":
        return make_response(request, 400, "Bad Authorization Header")
    header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
    status = 407 if proxy else 401
    return make_response(request, status, headers=[(header, c) for c in challenges])


def aor_of(ext: str) -> str:
    """Extensions are the AORs; one fixed domain so any host spelling finds them."""
    return f"sip:{ext}@ccserver"


def ext_of(aor: str) -> str:
    return aor.partition(":")[2].partition("@")[0]


class Registrations:
    """Registrar of the node: who is reachable where."""

    def __init__(
        self,
        realm: str,
        passwords: Mapping[str, str],
        on_change: Callable[[str, bool], None],
        *,
        algorithms: Sequence[str] = ("MD5",),
        max_contacts: Mapping[str, int] | None = None,
        min_expires: int = 60,
        secret: bytes | None = None,
    ) -> None:
        self._max_contacts = dict(max_contacts or {})
        self.realm = realm
        self._passwords = passwords
        self.nonces = NonceManager(secret or secrets.token_bytes(32))
        self.auth = DigestAuthenticator(realm, self.nonces, passwords.get, algorithms=algorithms)
        self.location = LocationService(min_expires=min_expires)
        self._on_change = on_change
        self.shared: SharedLocation | None = None  # the cluster's location service

    def authenticate(
        self, request: Request, now: float, *, proxy: bool
    ) -> tuple[str | None, Response | None]:
        """The authenticated user, or the response that refuses or challenges."""
        header = "Proxy-Authorization" if proxy else "Authorization"
        result = self.auth.verify(
            request.headers.get_all(header), request.method, now, body=request.body
        )
        if result.status == "ok":
            return result.username, None
        challenges = self.auth.challenges(now, stale=result.stale)
        return None, auth_response(
            request, result.status, challenges, proxy=proxy, stale=result.stale
        )

    def register(self, request: Request, addr: Address, transport: str, now: float) -> Response:
        aor = request.to.uri.user or ""
        # Challenge before saying whether the extension exists, so the
        # registrar cannot be used to list extensions: an unknown one ends
        # in 403 like a wrong password.
        user, refusal = self.authenticate(request, now, proxy=False)
        if refusal is not None:
            return refusal
        if user != aor:
            # Credentials of one extension must not register another.
            return make_response(request, 403, "Wrong User For This AOR")
        before = bool(self.location.lookup(aor_of(aor), now))
        try:
            contacts, wildcard = self._contacts(request)
            cseq, _ = request.cseq
            bindings = self.location.register(
                aor_of(aor),
                contacts,
                wildcard=wildcard,
                header_expires=request.expires,
                call_id=request.call_id,
                cseq=cseq,
                source=addr,
                transport=transport,
                now=now,
                max_contacts=self._max_contacts.get(aor),
            )
        except RegistrarError as exc:
            extra: list[tuple[str, str]] = []
            min_expires = getattr(exc, "min_expires", None)
            if exc.status == 423 and min_expires is not None:
                extra.append(("Min-Expires", str(min_expires)))
            return make_response(request, exc.status, exc.reason, headers=extra)
        except RemoteProtocolError as exc:
            return make_response(request, exc.status, exc.reason)
        after = bool(bindings)
        if self.shared is not None:
            self.shared.publish(aor_of(aor))
        if before != after:
            log.info("extension %s %s", aor, "registered" if after else "unregistered")
            self._on_change(aor, after)
        headers = [("Contact", f"<{b.contact}>;expires={b.expires_in(now)}") for b in bindings]
        return make_response(request, 200, headers=headers)

    @staticmethod
    def _contacts(request: Request) -> tuple[list[ContactRequest], bool]:
        wildcard = any(v.strip() == "*" for v in request.headers.get_all("Contact"))
        if wildcard:
            return [], True
        out = []
        for na in request.contacts:
            expires = na.params.get("expires")
            q = na.params.get("q")
            try:
                out.append(
                    ContactRequest(
                        uri=str(na.uri),
                        expires=int(expires) if expires is not None else None,
                        q=float(q) if q is not None else 1.0,
                        instance=na.params.get("+sip.instance"),
                    )
                )
            except ValueError as exc:
                raise RemoteProtocolError(f"Bad Contact parameter: {exc}") from None
        return out, False

    def expire(self, now: float) -> list[Binding]:
        gone = self.location.remove_expired(now)
        for aor in {b.aor for b in gone}:
            if self.shared is not None:
                self.shared.publish(aor)
            if not self.location.lookup(aor, now):
                log.info("extension %s registration expired", ext_of(aor))
                self._on_change(ext_of(aor), False)
        return gone

    def lookup(self, ext: str, now: float) -> list[Binding]:
        """The extension's phones: registered here first, else at another node."""
        local = self.location.lookup(aor_of(ext), now)
        if local or self.shared is None:
            return local
        return self.shared.lookup(aor_of(ext), now)
