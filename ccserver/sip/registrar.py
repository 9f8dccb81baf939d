"""The registrar's location service (RFC 3261 §10.3).

The UA core authenticates the REGISTER, extracts the address-of-record from To and
pre-parses each Contact into a :class:`ContactRequest`; this module applies steps 6
to 8 of §10.3 and answers lookups for the proxy side.  Pure data, no I/O: time
arrives as ``now`` and the next expiry is exposed through :meth:`get_timer`.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = [
    "Binding",
    "ContactRequest",
    "LocationService",
    "RegistrarError",
    "canonical_aor",
    "contact_key",
]

# RFC 3261 §10.2.1 / §20.19: delta-seconds are capped at 2**32-1 on the wire.
_MAX_DELTA = 2**32 - 1


@dataclass(frozen=True, slots=True)
class ContactRequest:
    """One Contact of a REGISTER, pre-parsed by the UA core.

    ``expires`` is the Contact's own expires parameter, ``instance`` its
    +sip.instance (RFC 5626 §4.1), if any.
    """

    uri: str
    expires: int | None = None
    q: float = 1.0
    instance: str | None = None


@dataclass(slots=True)
class Binding:
    """A contact bound to an address-of-record.

    ``source`` and ``transport`` are where the last REGISTER came from, which is
    where a request must go for a UA behind NAT.  ``registered_at`` is the time of
    the last REGISTER that created or refreshed the binding.  Treat it as read-only:
    the service replaces bindings rather than mutating them.
    """

    aor: str
    contact: str
    expires_at: float
    q: float
    call_id: str
    cseq: int
    source: tuple[str, int]
    transport: str
    instance: str | None
    registered_at: float

    def expires_in(self, now: float) -> int:
        """Seconds left, for the expires parameter of the 200 OK's Contact (§10.3 step 8)."""
        # Rounded up so a live binding never reports 0 (which means "removed"); the
        # microsecond of slack absorbs float error at epoch-sized timestamps.
        return max(0, math.ceil(self.expires_at - now - 1e-6))


class RegistrarError(Exception):
    """A REGISTER the registrar refuses; ``status`` and ``reason`` go on the response.

    ``min_expires`` is set for 423 and becomes the Min-Expires header (§10.3 step 7).
    """

    def __init__(self, status: int, reason: str, *, min_expires: int | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.min_expires = min_expires


# --------------------------------------------------------------------------- URIs


@dataclass(frozen=True, slots=True)
class _SipUri:
    scheme: str
    user: str | None
    host: str
    port: int | None
    params: dict[str, str]


def _split_sip_uri(uri: str) -> _SipUri | None:
    """Pick a sip:/sips: URI apart (RFC 3261 §19.1.1); None for other schemes."""
    scheme, sep, rest = uri.strip().partition(":")
    scheme = scheme.lower()
    if not sep or not scheme:
        raise ValueError(f"URI without a scheme: {uri!r}")
    if scheme not in ("sip", "sips"):
        return None
    # The user part may hold ';' and '?' (user-unreserved), but never '@', and '@' is
    # not allowed unescaped after the host: the first '@' ends the userinfo.
    at = rest.find("@")
    user: str | None = None
    if at >= 0:
        user = unquote(rest[:at].partition(":")[0])  # drop any password
        rest = rest[at + 1 :]
    rest = rest.partition("?")[0]
    hostport, *raw_params = rest.split(";")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError(f"unterminated IPv6 reference in {uri!r}")
        host, port_text = hostport[: end + 1], hostport[end + 1 :]
        if port_text and not port_text.startswith(":"):
            raise ValueError(f"junk after IPv6 reference in {uri!r}")
        port_text = port_text[1:]
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        raise ValueError(f"URI without a host: {uri!r}")
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"bad port in {uri!r}")
        port = int(port_text)
    params: dict[str, str] = {}
    for item in raw_params:
        name, _, value = item.partition("=")
        if name:
            params[name.lower()] = value.lower()
    return _SipUri(scheme, user, host.lower(), port, params)


def canonical_aor(uri: str) -> str:
    """The index into the bindings: §10.3 step 5.

    URI parameters are removed and escapes undone; host and scheme are
    case-insensitive (§19.1.4), the user part is not.
    """
    parts = _split_sip_uri(uri)
    if parts is None:
        scheme, _, rest = uri.strip().partition(":")
        return f"{scheme.lower()}:{rest.partition(';')[0]}"
    userinfo = f"{parts.user}@" if parts.user is not None else ""
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}:{userinfo}{parts.host}{port}"


def contact_key(uri: str) -> str:
    """A comparison key for Contact URIs, a simplified §19.1.4 equivalence.

    Scheme, user, lower-cased host, port and transport.  Unlike §19.1.4 an absent
    port equals the default one (5060, 5061 for sips) and an absent transport
    equals UDP (TCP for sips): for a registrar that only means a refresh written
    slightly differently updates the binding instead of adding a twin.
    """
    parts = _split_sip_uri(uri)
    if parts is None:
        scheme, _, rest = uri.strip().partition(":")
        return f"{scheme.lower()}:{rest}"
    secure = parts.scheme == "sips"
    port = parts.port if parts.port is not None else (5061 if secure else 5060)
    transport = parts.params.get("transport") or ("tcp" if secure else "udp")
    user = parts.user if parts.user is not None else ""
    return f"{parts.scheme}:{user}@{parts.host}:{port};transport={transport}"


# --------------------------------------------------------------------------- service


class LocationService:
    """Bindings of addresses-of-record to contacts, with §10.3 update rules.

    ``max_contacts``: when a REGISTER would leave an AOR with more bindings than
    this, the bindings refreshed longest ago (not touched by this request) are
    dropped; an agent's phone that rebooted without unregistering then never locks
    itself out.  Only a single REGISTER carrying more contacts than the limit is
    refused, with 403.
    """

    def __init__(
        self,
        *,
        default_expires: int = 3600,
        min_expires: int = 60,
        max_expires: int = 7200,
        max_contacts: int = 10,
    ) -> None:
        if not 0 < min_expires <= default_expires <= max_expires:
            raise ValueError("need 0 < min_expires <= default_expires <= max_expires")
        if min_expires > 3600:
            # §10.3 step 7 allows 423 only for intervals below one hour.
            raise ValueError("min_expires cannot exceed 3600")
        if max_contacts < 1:
            raise ValueError("max_contacts must be at least 1")
        self.default_expires = default_expires
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.max_contacts = max_contacts
        self._aors: dict[str, dict[str, Binding]] = {}
        # (expires_at, seq, binding): an entry is live while the binding is still the
        # one stored; refreshed or removed bindings leave stale entries behind that
        # are skipped lazily and compacted when they outnumber the live ones.
        self._heap: list[tuple[float, int, Binding]] = []
        self._seq = itertools.count()
        self._count = 0

    # -- §10.3 steps 6 to 8

    def _expires_for(self, contact: ContactRequest, header_expires: int | None) -> int:
        # §10.3 step 7: the Contact's expires parameter, else the Expires header, else
        # a locally configured default.
        if contact.expires is not None:
            expires = contact.expires
        elif header_expires is not None:
            expires = header_expires
        else:
            expires = self.default_expires
        if expires < 0:
            raise RegistrarError(400, "Invalid Expires")
        if 0 < expires < self.min_expires:
            raise RegistrarError(423, "Interval Too Brief", min_expires=self.min_expires)
        # The registrar MAY shorten the interval (§10.3 step 7, §10.2.1).
        return min(expires, self.max_expires, _MAX_DELTA)

    @staticmethod
    def _check_order(binding: Binding, call_id: str, cseq: int) -> None:
        # §10.3 step 7: same Call-ID with a CSeq not above the stored one is a stale or
        # reordered REGISTER; the whole request fails and nothing changes.
        if binding.call_id == call_id and cseq <= binding.cseq:
            raise RegistrarError(500, "Out of Order CSeq")

    def register(
        self,
        aor: str,
        contacts: Sequence[ContactRequest],
        *,
        wildcard: bool,
        header_expires: int | None,
        call_id: str,
        cseq: int,
        source: tuple[str, int],
        transport: str,
        now: float,
        removed: list[Binding] | None = None,
        max_contacts: int | None = None,
    ) -> list[Binding]:
        """Apply one REGISTER; returns the AOR's bindings for the 200 OK's Contacts.

        All checks run before anything changes, so a refused request leaves the
        bindings untouched (§10.3 step 7: all updates or none).  Bindings that went
        away (unregistered, replaced by the same +sip.instance at a new URI, dropped
        for max_contacts) are appended to ``removed`` so the caller can emit events.
        """
        try:
            key_aor = canonical_aor(aor)
        except ValueError as exc:
            raise RegistrarError(400, "Invalid Address-of-Record") from exc
        if header_expires is not None and header_expires < 0:
            raise RegistrarError(400, "Invalid Expires")
        current = self._aors.get(key_aor, {})

        if wildcard:
            # §10.3 step 6: "*" only with Expires: 0 and no other Contact.
            if contacts or header_expires != 0:
                raise RegistrarError(400, "Invalid Wildcard Contact")
            for binding in current.values():
                self._check_order(binding, call_id, cseq)
            gone = list(current.values())
            self._commit(key_aor, {}, [])
            if removed is not None:
                removed.extend(gone)
            return []

        drop: dict[str, Binding] = {}
        add: dict[str, Binding] = {}
        for contact in contacts:
            if not 0.0 <= contact.q <= 1.0:
                raise RegistrarError(400, "Invalid q Value")
            expires = self._expires_for(contact, header_expires)
            try:
                key = contact_key(contact.uri)
            except ValueError as exc:
                raise RegistrarError(400, "Invalid Contact URI") from exc
            # Same URI, or the same UA instance at a new address (RFC 5626 §4.1: the
            # instance-id names the device across address changes).
            matches = {
                k: b
                for k, b in current.items()
                if k == key or (contact.instance is not None and b.instance == contact.instance)
            }
            for binding in matches.values():
                self._check_order(binding, call_id, cseq)
            drop.update(matches)
            # A later Contact of the same request wins over an earlier twin.
            for k in [
                k
                for k, b in add.items()
                if k == key or (contact.instance is not None and b.instance == contact.instance)
            ]:
                del add[k]
            if expires > 0:
                add[key] = Binding(
                    aor=key_aor,
                    contact=contact.uri,
                    expires_at=now + expires,
                    q=contact.q,
                    call_id=call_id,
                    cseq=cseq,
                    source=source,
                    transport=transport,
                    instance=contact.instance,
                    registered_at=now,
                )

        limit = self.max_contacts if max_contacts is None else max_contacts
        if len(add) > limit:
            raise RegistrarError(403, "Too Many Contacts")
        kept = {k: b for k, b in current.items() if k not in drop and k not in add}
        gone = [b for k, b in drop.items() if k not in add]
        # Expired bindings not yet collected do not count; remove_expired reports them.
        live = [(k, b) for k, b in kept.items() if b.expires_at > now]
        overflow = len(live) + len(add) - limit
        if overflow > 0:
            for k, b in sorted(live, key=lambda item: item[1].registered_at)[:overflow]:
                del kept[k]
                gone.append(b)
        kept.update(add)
        self._commit(key_aor, kept, list(add.values()))
        if removed is not None:
            removed.extend(gone)
        return self._sorted(b for b in kept.values() if b.expires_at > now)

    def _commit(self, key_aor: str, bindings: dict[str, Binding], fresh: list[Binding]) -> None:
        self._count -= len(self._aors.get(key_aor, ()))
        if bindings:
            self._aors[key_aor] = bindings
        else:
            self._aors.pop(key_aor, None)
        self._count += len(bindings)
        for binding in fresh:
            heapq.heappush(self._heap, (binding.expires_at, next(self._seq), binding))
        if len(self._heap) > 2 * self._count + 64:
            self._heap = [entry for entry in self._heap if self._is_live(entry[2])]
            heapq.heapify(self._heap)

    def _is_live(self, binding: Binding) -> bool:
        stored = self._aors.get(binding.aor)
        return stored is not None and stored.get(contact_key(binding.contact)) is binding

    # -- queries

    @staticmethod
    def _sorted(bindings: Iterable[Binding]) -> list[Binding]:
        # Highest q first (a proxy may fork from highest q to lowest, RFC 3261 §16.6,
        # §20.10), then most recently refreshed.
        return sorted(bindings, key=lambda b: (-b.q, -b.registered_at))

    def lookup(self, aor: str, now: float) -> list[Binding]:
        """Unexpired bindings of an AOR, highest q first, then most recent."""
        try:
            key_aor = canonical_aor(aor)
        except ValueError:
            return []
        stored = self._aors.get(key_aor, {})
        return self._sorted([b for b in stored.values() if b.expires_at > now])

    def all_bindings(self, now: float) -> list[Binding]:
        """Every unexpired binding, grouped by AOR."""
        return [
            b
            for key_aor in sorted(self._aors)
            for b in self._sorted(self._aors[key_aor].values())
            if b.expires_at > now
        ]

    # -- timers

    def _drop_dead_heads(self) -> None:
        while self._heap and not self._is_live(self._heap[0][2]):
            heapq.heappop(self._heap)

    def get_timer(self) -> float | None:
        """When the next binding expires, or None if there are none."""
        self._drop_dead_heads()
        return self._heap[0][0] if self._heap else None

    def remove_expired(self, now: float) -> list[Binding]:
        """Drop bindings whose time is up and return them, oldest expiry first.

        The UA core reports them (an agent's phone that silently went away).
        """
        expired: list[Binding] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, binding = heapq.heappop(self._heap)
            if not self._is_live(binding):
                continue
            stored = self._aors[binding.aor]
            del stored[contact_key(binding.contact)]
            self._count -= 1
            if not stored:
                del self._aors[binding.aor]
            expired.append(binding)
        return expired

    def __len__(self) -> int:
        """Number of stored bindings, expired or not yet collected."""
        return self._count
