"""HTTP Digest authentication as SIP uses it (RFC 3261 §22, RFC 7616, RFC 8760).

Everything here works on header *values* and plain data so it stays independent of
the SIP message classes; the UA core passes in the Authorization (or
Proxy-Authorization) values of a request and turns an :class:`AuthResult` into a
200, 401/407, 403 or 400.  No I/O and no clock: time arrives as ``now``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ALGORITHMS",
    "AuthResult",
    "DigestAuthenticator",
    "NonceManager",
    "build_authorization",
    "compute_ha1",
    "compute_response",
    "parse_challenge",
    "parse_credentials",
    "select_challenge",
]

# Offered in this order: a UAS sends one challenge per algorithm, most preferred first
# (RFC 8760 §2.3), and the UAC answers the topmost one it supports (RFC 8760 §2.4).
ALGORITHMS: tuple[str, ...] = ("SHA-256", "MD5")

# RFC 7616 §3.3 algorithm registry: base name -> hashlib name.  "-sess" variants reuse it.
_HASHES: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
# Unfolded or not, CR and LF between parameters are just linear white space (RFC 3261 §7.3.1).
_LWS = frozenset(" \t\r\n")
_HEX = frozenset("0123456789abcdefABCDEF")


# --------------------------------------------------------------------------- parsing


def _skip_lws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _LWS:
        pos += 1
    return pos


def _read_token(text: str, pos: int) -> tuple[str, int]:
    start = pos
    while pos < len(text) and text[pos] in _TOKEN_CHARS:
        pos += 1
    return text[start:pos], pos


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    """Read a quoted-string starting at the opening DQUOTE; undo quoted-pairs (RFC 3261 §25.1)."""
    out: list[str] = []
    pos += 1
    while pos < len(text):
        ch = text[pos]
        if ch == '"':
            return "".join(out), pos + 1
        if ch == "\\":
            # quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F): anything but CR and LF.
            if pos + 1 >= len(text) or text[pos + 1] in "\r\n":
                raise ValueError(f"dangling backslash in quoted-string at offset {pos}")
            out.append(text[pos + 1])
            pos += 2
            continue
        if ch in "\r\n" or (ord(ch) < 0x20 and ch != "\t") or ch == "\x7f":
            raise ValueError(f"control character in quoted-string at offset {pos}")
        out.append(ch)
        pos += 1
    raise ValueError("unterminated quoted-string")


def _read_bare_value(text: str, pos: int) -> tuple[str, int]:
    # Strictly a token, but phones in the field send e.g. ``uri=sip:host`` unquoted;
    # accept any run up to white space or a comma and let the semantic checks judge it.
    start = pos
    while pos < len(text) and text[pos] not in _LWS and text[pos] not in ',"\\':
        pos += 1
    return text[start:pos], pos


def _parse_auth(value: str, what: str) -> tuple[str, dict[str, str]]:
    """``scheme LWS auth-param *(COMMA auth-param)`` (RFC 3261 §25.1, RFC 7235 §2.1).

    Parameter names are case-insensitive and returned lower-cased; values are returned
    unquoted and unescaped.  A parameter appearing twice is an error (RFC 7235 §2.1).
    """
    text = value
    pos = _skip_lws(text, 0)
    scheme, pos = _read_token(text, pos)
    if not scheme:
        raise ValueError(f"{what}: missing auth-scheme")
    params: dict[str, str] = {}
    if pos < len(text) and text[pos] not in _LWS:
        raise ValueError(f"{what}: unexpected {text[pos]!r} after auth-scheme")
    pos = _skip_lws(text, pos)
    while pos < len(text):
        if text[pos] == ",":  # empty list elements are tolerated (RFC 7230 §7)
            pos = _skip_lws(text, pos + 1)
            continue
        name, pos = _read_token(text, pos)
        if not name:
            raise ValueError(f"{what}: expected a parameter name at offset {pos}")
        pos = _skip_lws(text, pos)
        if pos >= len(text) or text[pos] != "=":
            raise ValueError(f"{what}: parameter {name!r} has no value")
        pos = _skip_lws(text, pos + 1)
        if pos < len(text) and text[pos] == '"':
            param_value, pos = _read_quoted(text, pos)
        else:
            param_value, pos = _read_bare_value(text, pos)
            if not param_value:
                raise ValueError(f"{what}: parameter {name!r} has an empty value")
        key = name.lower()
        if key in params:
            raise ValueError(f"{what}: parameter {key!r} appears twice")
        params[key] = param_value
        pos = _skip_lws(text, pos)
        if pos < len(text):
            if text[pos] != ",":
                raise ValueError(f"{what}: expected ',' at offset {pos}, got {text[pos]!r}")
            pos = _skip_lws(text, pos + 1)
    return scheme, params


def parse_credentials(value: str) -> tuple[str, dict[str, str]]:
    """Split an Authorization / Proxy-Authorization value into scheme and parameters."""
    return _parse_auth(value, "credentials")


def parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    """Split a WWW-Authenticate / Proxy-Authenticate value into scheme and parameters."""
    return _parse_auth(value, "challenge")


def _quote(text: str) -> str:
    """Render a quoted-string, escaping the two characters that need it (RFC 3261 §25.1)."""
    if "\r" in text or "\n" in text:
        raise ValueError("CR and LF cannot be carried in a quoted-string")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _split_qop(value: str) -> list[str]:
    """qop in a challenge is a quoted comma-separated list (RFC 7616 §3.3)."""
    return [item.strip().lower() for item in value.split(",") if item.strip()]


# --------------------------------------------------------------------------- computation


def _resolve(algorithm: str) -> tuple[str, str, bool]:
    """Map an algorithm name (case-insensitive) to (canonical name, hashlib name, is-sess)."""
    upper = algorithm.strip().upper()
    sess = upper.endswith("-SESS")
    base = upper[: -len("-SESS")] if sess else upper
    if base not in _HASHES:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return base + ("-sess" if sess else ""), _HASHES[base], sess


def _h(hash_name: str, data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.new(hash_name, raw).hexdigest()


def compute_ha1(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    nonce: str = "",
    cnonce: str | None = None,
) -> str:
    """H(A1) of RFC 7616 §3.4.2; the -sess variants fold in nonce and cnonce.

    Exposed separately because a user store may keep H(username:realm:password)
    instead of the password.
    """
    _, hash_name, sess = _resolve(algorithm)
    ha1 = _h(hash_name, f"{username}:{realm}:{password}")
    if sess:
        if cnonce is None:
            raise ValueError("-sess algorithms need a cnonce")
        ha1 = _h(hash_name, f"{ha1}:{nonce}:{cnonce}")
    return ha1


def compute_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` parameter: RFC 7616 §3.4.1, with RFC 2069 form when qop is absent.

    Strings are hashed as UTF-8 (RFC 7616 §4).  For ``auth-int`` an empty SIP body
    hashes as H("") (RFC 3261 §22.4).
    """
    _, hash_name, _ = _resolve(algorithm)
    ha1 = compute_ha1(
        algorithm=algorithm,
        username=username,
        realm=realm,
        password=password,
        nonce=nonce,
        cnonce=cnonce,
    )
    # RFC 7616 §3.4.3: A2 = Method ":" request-uri [ ":" H(entity-body) for auth-int ]
    if qop is None or qop.lower() == "auth":
        a2 = f"{method}:{uri}"
    elif qop.lower() == "auth-int":
        a2 = f"{method}:{uri}:{_h(hash_name, body)}"
    else:
        raise ValueError(f"unsupported qop {qop!r}")
    ha2 = _h(hash_name, a2)
    if qop is None:
        # RFC 2069 compatibility (RFC 3261 §22.4): no nonce-count, no cnonce.
        return _h(hash_name, f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise ValueError("qop requires nc and cnonce")
    # KD(secret, data) = H(secret ":" data), RFC 7616 §3.4.1; qop is hashed as sent.
    return _h(hash_name, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --------------------------------------------------------------------------- client side


def select_challenge(
    values: Sequence[str], *, algorithms: Sequence[str] = ALGORITHMS
) -> str | None:
    """Pick the topmost Digest challenge whose algorithm we support (RFC 8760 §2.4).

    The server lists its challenges in the order it prefers (RFC 8760 §2.3); callers
    worried about a reordering downgrade (RFC 8760 §3) pass only strong algorithms.
    """
    wanted = {_resolve(name)[0].upper() for name in algorithms}
    for value in values:
        try:
            scheme, params = parse_challenge(value)
            if scheme.lower() != "digest":
                continue
            canonical = _resolve(params.get("algorithm", "MD5"))[0]
        except ValueError:
            continue
        if canonical.upper() in wanted:
            return value
    return None


def build_authorization(
    challenge: str | Mapping[str, str],
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    nc: int = 1,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """Answer one Digest challenge with an Authorization header value (RFC 3261 §22.2).

    ``challenge`` is the WWW-Authenticate / Proxy-Authenticate value, or its already
    parsed parameters.  qop ``auth`` is preferred over ``auth-int`` when both are
    offered.  The caller owns the nonce-count: pass the next ``nc`` on each reuse of
    the same nonce (RFC 7616 §3.4).
    """
    if isinstance(challenge, str):
        scheme, params = parse_challenge(challenge)
        if scheme.lower() != "digest":
            raise ValueError(f"not a Digest challenge: {scheme!r}")
    else:
        params = {key.lower(): val for key, val in challenge.items()}
    try:
        realm = params["realm"]
        nonce = params["nonce"]
    except KeyError as exc:
        raise ValueError(f"challenge lacks {exc.args[0]!r}") from None
    algorithm, _, sess = _resolve(params.get("algorithm", "MD5"))
    offered = _split_qop(params.get("qop", ""))
    qop: str | None
    if not offered:
        qop = None
    elif "auth" in offered:
        qop = "auth"
    elif "auth-int" in offered:
        qop = "auth-int"
    else:
        raise ValueError(f"no supported qop in {offered!r}")
    if not 0 < nc <= 0xFFFFFFFF:
        raise ValueError(f"nonce-count out of range: {nc}")
    if (qop is not None or sess) and cnonce is None:
        cnonce = secrets.token_hex(8)
    nc_value = f"{nc:08x}" if qop is not None else None
    response = compute_response(
        algorithm=algorithm,
        username=username,
        realm=realm,
        password=password,
        method=method,
        uri=uri,
        nonce=nonce,
        qop=qop,
        nc=nc_value,
        cnonce=cnonce,
        body=body,
    )
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={algorithm}",
    ]
    if cnonce is not None:
        parts.append(f"cnonce={_quote(cnonce)}")
    if "opaque" in params:
        # RFC 7616 §3.4: opaque is returned unchanged.
        parts.append(f"opaque={_quote(params['opaque'])}")
    if qop is not None:
        parts.append(f"qop={qop}")
        parts.append(f"nc={nc_value}")
    return "Digest " + ", ".join(parts)


# --------------------------------------------------------------------------- nonces

NonceStatus = Literal["ok", "stale", "invalid"]

_NONCE_LABEL = b"ccserver digest nonce v1\x00"
_NONCE_RAND = 8
_NONCE_MAC = 16
_NONCE_HEAD = struct.Struct(">q")
_NONCE_BYTES = _NONCE_HEAD.size + _NONCE_RAND + _NONCE_MAC
_NONCE_CHARS = (_NONCE_BYTES * 8 + 5) // 6  # unpadded base64url


@dataclass(slots=True)
class _NcState:
    issued_at: float
    highest: int
    seen: int  # bit i set: nonce-count (highest - i) was used


class NonceManager:
    """Stateless-ish nonces: HMAC(secret, timestamp|random).

    Any node holding the secret can verify a nonce; expiry gives ``stale=true``
    (RFC 7616 §3.3).

    The nonce is ``base64url(issued_ms | random | HMAC-SHA256(...)[:16])``: no table is
    needed to validate it.  Only replay protection keeps state: per nonce the highest
    nonce-count and a sliding window of recently used ones, so requests sharing a nonce
    may arrive slightly out of order, yet no count is ever accepted twice (the
    nonce-count of RFC 7616 §3.4 exists to detect replays); ``nc_window=1`` demands
    strictly increasing counts.  That state lives on the node that saw the requests.

    ``now`` must come from a clock the nodes sharing the secret agree on.
    """

    def __init__(
        self,
        secret: bytes,
        *,
        lifetime: float = 300.0,
        nc_window: int = 32,
        max_tracked: int = 100_000,
        clock_skew: float = 5.0,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        if lifetime <= 0:
            raise ValueError("lifetime must be positive")
        if not 1 <= nc_window <= 64:
            raise ValueError("nc_window must be between 1 and 64")
        if max_tracked < 1:
            raise ValueError("max_tracked must be positive")
        self._secret = secret
        self.lifetime = lifetime
        self._window = nc_window
        self._max_tracked = max_tracked
        self._skew = clock_skew
        self._nc: dict[str, _NcState] = {}
        # Nonces issued at or before this instant that we no longer track are refused by
        # check_nc: forgetting them must never turn a replay into an acceptance.
        self._floor = float("-inf")
        self._next_prune = float("-inf")

    def _mac(self, head: bytes) -> bytes:
        return hmac.new(self._secret, _NONCE_LABEL + head, hashlib.sha256).digest()[:_NONCE_MAC]

    def new(self, now: float) -> str:
        """Mint a nonce valid for ``lifetime`` seconds from ``now``."""
        self._maybe_prune(now)
        head = _NONCE_HEAD.pack(round(now * 1000)) + secrets.token_bytes(_NONCE_RAND)
        return base64.urlsafe_b64encode(head + self._mac(head)).rstrip(b"=").decode("ascii")

    def _issued_at(self, nonce: str) -> float | None:
        """Issue time of an authentic nonce, None for anything we did not mint."""
        if len(nonce) != _NONCE_CHARS or not nonce.isascii():
            return None
        try:
            raw = base64.b64decode(nonce + "=" * (-len(nonce) % 4), altchars=b"-_", validate=True)
        except ValueError:
            return None
        if len(raw) != _NONCE_BYTES:
            return None
        head, mac = raw[:-_NONCE_MAC], raw[-_NONCE_MAC:]
        if not hmac.compare_digest(mac, self._mac(head)):
            return None
        (issued_ms,) = _NONCE_HEAD.unpack_from(head)
        return float(issued_ms) / 1000.0

    def check(self, nonce: str, now: float) -> NonceStatus:
        """``ok``, ``stale`` when expired, ``invalid`` if forged, tampered or from the future."""
        self._maybe_prune(now)
        issued = self._issued_at(nonce)
        if issued is None or issued > now + self._skew:
            return "invalid"
        if now - issued > self.lifetime:
            return "stale"
        return "ok"

    def check_nc(self, nonce: str, nc: int) -> bool:
        """Record a nonce-count; False if it was already used or is too far behind (replay)."""
        issued = self._issued_at(nonce)
        if issued is None or not 0 < nc <= 0xFFFFFFFF:
            return False
        state = self._nc.get(nonce)
        if state is None:
            if issued <= self._floor:
                return False
            if len(self._nc) >= self._max_tracked:
                self._evict_one()
            self._nc[nonce] = _NcState(issued, nc, 1)
            return True
        full = (1 << self._window) - 1
        if nc > state.highest:
            shift = nc - state.highest
            state.seen = ((state.seen << shift) | 1) & full if shift < self._window else 1
            state.highest = nc
            return True
        offset = state.highest - nc
        if offset >= self._window or state.seen & (1 << offset):
            return False
        state.seen |= 1 << offset
        return True

    def _evict_one(self) -> None:
        oldest_key = next(iter(self._nc))
        evicted = self._nc.pop(oldest_key)
        self._floor = max(self._floor, evicted.issued_at)

    def prune(self, now: float) -> None:
        """Forget nonce-counts of expired nonces: check() already calls them stale."""
        cutoff = now - self.lifetime
        for key in [k for k, st in self._nc.items() if st.issued_at < cutoff]:
            del self._nc[key]
        self._floor = max(self._floor, cutoff)
        self._next_prune = now + self.lifetime / 2

    def _maybe_prune(self, now: float) -> None:
        if now >= self._next_prune:
            self.prune(now)

    def __len__(self) -> int:
        """Number of nonces whose counts are being tracked."""
        return len(self._nc)


# --------------------------------------------------------------------------- server side

AuthStatus = Literal["ok", "challenge", "forbidden", "bad"]


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Outcome of :meth:`DigestAuthenticator.verify`.

    ``challenge`` -> 401/407 with fresh challenges (``stale`` says whether to set
    stale=true), ``forbidden`` -> 403, ``bad`` -> 400.  ``username`` is only set
    when the credentials were verified; ``reason`` is for logs, not for the peer.
    """

    status: AuthStatus
    username: str | None = None
    stale: bool = False
    reason: str = ""


_REQUIRED = ("username", "realm", "nonce", "uri", "response")


class DigestAuthenticator:
    """Challenge and verify requests for one realm (RFC 3261 §22.1, §22.4)."""

    def __init__(
        self,
        realm: str,
        nonces: NonceManager,
        lookup_password: Callable[[str], str | None],
        *,
        algorithms: Sequence[str] = ALGORITHMS,
        opaque: str | None = None,
    ) -> None:
        if not algorithms:
            raise ValueError("at least one algorithm is required")
        self.realm = realm
        self._nonces = nonces
        self._lookup = lookup_password
        self.algorithms: tuple[str, ...] = tuple(_resolve(a)[0] for a in algorithms)
        self._accepted = {a.upper() for a in self.algorithms}
        self._opaque = opaque
        _quote(realm)  # fail early on a realm that cannot be sent
        if opaque is not None:
            _quote(opaque)

    def challenges(self, now: float, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate (or Proxy-Authenticate) values, one per algorithm, best first.

        One nonce is shared by all of them: whichever the UAC picks, its nonce-counts
        land in the same replay window.
        """
        nonce = self._nonces.new(now)
        tail = ""
        if self._opaque is not None:
            tail += f", opaque={_quote(self._opaque)}"
        if stale:
            tail += ", stale=true"
        return [
            f'Digest realm={_quote(self.realm)}, nonce="{nonce}", algorithm={alg}, qop="auth"'
            + tail
            for alg in self.algorithms
        ]

    def _pick(self, header_values: Sequence[str]) -> tuple[dict[str, str] | None, str]:
        """The Digest credentials for our realm, else the reason the request is malformed.

        Credentials for other realms belong to other hops (RFC 3261 §22.3) and are
        ignored; so are other schemes.
        """
        malformed = ""
        for value in header_values:
            try:
                scheme, params = parse_credentials(value)
            except ValueError as exc:
                first = value.strip().split(None, 1)[0] if value.strip() else ""
                if first.lower() == "digest" and not malformed:
                    malformed = str(exc)
                continue
            if scheme.lower() != "digest":
                continue
            if params.get("realm") == self.realm:
                return params, ""
            if "realm" not in params and not malformed:
                malformed = "credentials lack 'realm'"
        return None, malformed

    def verify(
        self,
        header_values: Sequence[str],
        method: str,
        now: float,
        *,
        body: bytes = b"",
        expected_username: str | None = None,
        request_uri: str | None = None,
    ) -> AuthResult:
        """Check the credentials of one request.

        ``expected_username``: the user the request acts for (e.g. the To user of a
        REGISTER); credentials of anybody else are refused.  ``request_uri``: if
        given, the ``uri`` parameter must equal it (RFC 7616 §3.4.6).
        """
        params, malformed = self._pick(header_values)
        if params is None:
            if malformed:
                return AuthResult("bad", reason=malformed)
            return AuthResult("challenge", reason="no credentials for this realm")

        missing = [name for name in _REQUIRED if name not in params]
        if missing:
            return AuthResult("bad", reason=f"credentials lack {', '.join(missing)}")
        username = params["username"]
        nonce = params["nonce"]

        try:
            algorithm = _resolve(params.get("algorithm", "MD5"))[0]
        except ValueError:
            algorithm = params.get("algorithm", "")
        if algorithm.upper() not in self._accepted:
            return AuthResult("challenge", reason=f"algorithm {algorithm!r} not offered")

        # We always offer qop (RFC 3261 §22.4: the client MUST then use it); without it
        # there is no nonce-count and so no replay protection.
        qop = params.get("qop")
        if qop is None:
            return AuthResult("bad", reason="credentials lack qop")
        if qop.lower() not in ("auth", "auth-int"):
            return AuthResult("bad", reason=f"unsupported qop {qop!r}")
        nc_text = params.get("nc")
        cnonce = params.get("cnonce")
        if nc_text is None or cnonce is None:
            return AuthResult("bad", reason="qop given without nc and cnonce")
        if len(nc_text) != 8 or not set(nc_text) <= _HEX:
            return AuthResult("bad", reason=f"malformed nonce-count {nc_text!r}")
        if request_uri is not None and params["uri"] != request_uri:
            return AuthResult("bad", reason="digest uri does not match the Request-URI")
        if self._opaque is not None and params.get("opaque") != self._opaque:
            return AuthResult("challenge", reason="opaque does not match")
        if params.get("userhash", "false").lower() == "true":
            # RFC 7616 §3.4.4: we never offer userhash, so we cannot map it back.
            return AuthResult("forbidden", reason="userhash not supported")

        nonce_status = self._nonces.check(nonce, now)
        if nonce_status == "invalid":
            # Forged, or minted with another secret: a fresh nonce fixes the honest case.
            return AuthResult("challenge", reason="nonce not issued by us")

        password = self._lookup(username)
        if password is None:
            return AuthResult("forbidden", reason=f"unknown user {username!r}")
        expected = compute_response(
            algorithm=algorithm,
            username=username,
            realm=self.realm,
            password=password,
            method=method,
            uri=params["uri"],
            nonce=nonce,
            qop=qop,
            nc=nc_text,
            cnonce=cnonce,
            body=body,
        )
        if not hmac.compare_digest(
            expected.encode("utf-8"), params["response"].lower().encode("utf-8")
        ):
            return AuthResult("forbidden", reason=f"wrong response for {username!r}")
        if expected_username is not None and username != expected_username:
            return AuthResult(
                "forbidden",
                reason=f"{username!r} may not act for {expected_username!r}",
            )
        if nonce_status == "stale":
            # RFC 7616 §3.3: stale=true only when the digest itself was right, so the
            # UAC retries with the new nonce without asking for a password again.
            return AuthResult("challenge", stale=True, reason="nonce expired")
        if not self._nonces.check_nc(nonce, int(nc_text, 16)):
            return AuthResult("challenge", reason=f"nonce-count {nc_text} replayed")
        return AuthResult("ok", username=username)
