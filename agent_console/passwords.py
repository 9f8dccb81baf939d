"""Password hashes for people who sign in: scrypt (RFC 7914) with a salt per user.

A hash is one string, ``scrypt$N$r$p$salt$key`` (salt and key in base64), so
``users.toml`` holds everything needed to check a password and nothing that
gives it away. ``ccserver passwd`` makes one. Checking costs about 50 ms of
CPU by design; callers on the event loop run :func:`verify_password` in a
worker thread.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

__all__ = ["dummy_hash", "hash_password", "verify_password"]

# RFC 7914 §2: N (CPU/memory cost, a power of two), r (block size), p
# (parallelism). N=2**14, r=8 uses 16 MiB per check: the interactive-login
# figures of the scrypt paper, affordable for a sign-in, costly to guess at.
N, R, P = 2**14, 8, 1
KEY_BYTES = 32
SALT_BYTES = 16
_MAXMEM = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=length
    )


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    """A new hash of ``password`` with a fresh random salt."""
    if not password:
        raise ValueError("the password must not be empty")
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, n, r, p, KEY_BYTES)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``; a malformed hash never matches."""
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key, validate=True)
        derived = _derive(password, base64.b64decode(salt, validate=True),
                          int(n), int(r), int(p), len(expected))  # fmt: skip
    except ValueError:
        return False
    return hmac.compare_digest(derived, expected)


@functools.cache
def dummy_hash() -> str:
    """Checked against when the user name is unknown, so the answer takes as long
    as for a known user and timing tells nobody which names exist."""
    return hash_password(secrets.token_urlsafe(16))
