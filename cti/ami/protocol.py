"""The AMI wire format, without I/O: `Key: Value` lines, CRLF, a blank line ends a message.

An Asterisk manager session is a stream of messages in both directions. Each
message is a block of ``Key: Value`` lines ended by CRLF, and an empty line
(CRLF CRLF) ends the block. The server greets a new connection with one bare
line, ``Asterisk Call Manager/<version>`` (no blank line after it). Clients
send ``Action:`` blocks; the server answers with ``Response:`` blocks and
pushes ``Event:`` blocks. Keys may repeat (``Variable:``), and key names are
matched without regard to case, as Asterisk does.

`Parser` takes bytes as they come and yields `Message` objects; `serialize`
turns key/value pairs into bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "BANNER",
    "MAX_MESSAGE",
    "ActionError",
    "LocalProtocolError",
    "Message",
    "Parser",
    "RemoteProtocolError",
    "clean",
    "serialize",
]

VERSION = "6.0.0"
BANNER = f"Asterisk Call Manager/{VERSION}\r\n".encode("ascii")
"""The greeting clients check before they log in (it carries the AMI version)."""

MAX_MESSAGE = 64 * 1024
"""A client block larger than this is refused: no real action comes near it."""


class RemoteProtocolError(Exception):
    """The peer sent something we cannot accept (the session is closed)."""


class ActionError(Exception):
    """An action refused: answered as ``Response: Error`` with this message."""


class LocalProtocolError(Exception):
    """We were asked to send something the format cannot carry (a bug on our side)."""


@dataclass(slots=True)
class Message:
    """One AMI block: ordered pairs; lookups ignore the case of keys."""

    pairs: list[tuple[str, str]] = field(default_factory=list)

    def get(self, key: str, default: str | None = None) -> str | None:
        wanted = key.lower()
        for k, v in self.pairs:
            if k.lower() == wanted:
                return v
        return default

    def get_all(self, key: str) -> list[str]:
        wanted = key.lower()
        return [v for k, v in self.pairs if k.lower() == wanted]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)

    @property
    def action(self) -> str:
        """The action name, lower-cased (``""`` when the block has none)."""
        return (self.get("Action") or "").strip().lower()

    def __bytes__(self) -> bytes:
        return serialize(self.pairs)


def clean(value: object) -> str:
    """A value made safe for one header line: line breaks become spaces."""
    text = "" if value is None else str(value)
    if "\r" in text or "\n" in text:
        text = text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return text


def serialize(pairs: Iterable[tuple[str, object]]) -> bytes:
    """``Key: Value`` CRLF lines and the blank line that ends the block."""
    out: list[str] = []
    for key, value in pairs:
        text = "" if value is None else str(value)
        if not key or ":" in key or any(c in key for c in "\r\n"):
            raise LocalProtocolError(f"invalid AMI key {key!r}")
        if "\r" in text or "\n" in text:
            raise LocalProtocolError(f"AMI value of {key} holds a line break: {text!r}")
        out.append(f"{key}: {text}\r\n")
    out.append("\r\n")
    return "".join(out).encode("utf-8")


class Parser:
    """Incremental parser of client blocks.

    Lines may end in CRLF or a bare LF (hand-typed sessions through telnet or
    netcat send LF). A line without a colon is ignored, as Asterisk does;
    blank lines between blocks are skipped.
    """

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._buffer = bytearray()
        self._pairs: list[tuple[str, str]] = []
        self._size = 0
        self._max = max_message
        self._ready: list[Message] = []

    def receive_data(self, data: bytes) -> None:
        """Take bytes from the stream; raises `RemoteProtocolError` on an oversized block."""
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if self._size + len(self._buffer) > self._max:
                    raise RemoteProtocolError(f"AMI message longer than {self._max} bytes")
                return
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._size += len(raw) + 1
            if self._size > self._max:
                raise RemoteProtocolError(f"AMI message longer than {self._max} bytes")
            self._line(raw.rstrip(b"\r").decode("utf-8", "replace"))

    def _line(self, line: str) -> None:
        if not line.strip():
            if self._pairs:
                self._ready.append(Message(self._pairs))
            self._pairs = []
            self._size = 0
            return
        key, sep, value = line.partition(":")
        if not sep:
            return
        self._pairs.append((key.strip(), value.strip()))

    def next_message(self) -> Message | None:
        """The next complete block, or None until more bytes arrive."""
        return self._ready.pop(0) if self._ready else None

    def messages(self) -> Iterator[Message]:
        """Every complete block received so far."""
        while self._ready:
            yield self._ready.pop(0)
