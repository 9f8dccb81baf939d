"""Error types of the SIP layer.

As in h11, a peer's bad input and our own mistakes are different types: the
first is answered on the wire with a status code, the second is a bug.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ccserver.sip.headers import Headers

__all__ = ["LocalProtocolError", "RemoteProtocolError", "SipError"]


class SipError(Exception):
    """Base class of every error raised by the SIP layer."""


class RemoteProtocolError(SipError):
    """Bad input from a peer: .status and .reason say what to answer.

    ``headers`` holds the header fields parsed before the error was found, so
    the transport can still build a response with Via, From, To, Call-ID and
    CSeq (RFC 3261 §8.2.6.2); it is None when the header section itself could
    not be read.
    """

    def __init__(self, reason: str, status: int = 400, headers: Headers | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.headers = headers

    def __repr__(self) -> str:
        return f"RemoteProtocolError({self.reason!r}, status={self.status})"


class LocalProtocolError(SipError):
    """A bug on our side or illegal API use."""
