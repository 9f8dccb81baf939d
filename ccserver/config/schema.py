"""Typed, immutable models of the configuration directory.

Every model forbids unknown keys (a typo must not be silently ignored) and is
strict about TOML types: ``sip_port = "5060"`` is an error, not a coercion.
Checks that span several models or files (references between DIDs, queues,
flows and extensions; port plans) live in :mod:`ccserver.config.loader`, which
can name the file and key of each problem.
"""

from __future__ import annotations

import ipaddress
import os
import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

__all__ = [
    "DTMF_KEYS",
    "NODE_KINDS",
    "QUEUE_STRATEGIES",
    "Config",
    "DatabaseConfig",
    "Did",
    "DidNumber",
    "Extension",
    "ExtensionNumber",
    "Flow",
    "HangupNode",
    "Language",
    "MediaConfig",
    "MenuNode",
    "Name",
    "Node",
    "PlayNode",
    "Queue",
    "QueueNode",
    "ServerConfig",
    "StateConfig",
    "Trunk",
    "TtsConfig",
]

DTMF_KEYS = "0123456789*#ABCD"
"""The sixteen RFC 4733 §3.2 DTMF events a menu can react to."""

QueueStrategy = Literal[
    "ring-all",
    "longest-idle",
    "round-robin",
    "fewest-calls",
    "least-talk-time",
    "top-down",
    "random",
    "skill-weighted",
]
QUEUE_STRATEGIES: tuple[str, ...] = get_args(QueueStrategy)

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_EXTENSION_RE = re.compile(r"[0-9]{1,15}")
_DID_RE = re.compile(r"\+?[0-9]{1,15}")
_LANGUAGE_RE = re.compile(r"[a-z]{2,3}([-_][A-Za-z0-9]{1,8})*")
_DB_SCHEMES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            f"invalid name {value!r}: use a letter then letters, digits, '-' or '_' "
            "(at most 64 characters)"
        )
    return value


def _check_extension_number(value: str) -> str:
    if not _EXTENSION_RE.fullmatch(value):
        raise ValueError(f"invalid extension number {value!r}: use 1 to 15 digits")
    return value


def _check_did_number(value: str) -> str:
    if not _DID_RE.fullmatch(value):
        raise ValueError(f"invalid DID {value!r}: use 1 to 15 digits, optionally after '+'")
    return value


def _check_dtmf_key(value: str) -> str:
    if len(value) != 1 or value not in DTMF_KEYS:
        raise ValueError(f"{value!r} is not a DTMF key: use one of 0-9, *, #, A-D")
    return value


def _check_not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _check_language(value: str) -> str:
    if not _LANGUAGE_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a voice/language tag such as 'en' or 'en-us'")
    return value


def _parse_network(value: Any) -> Any:
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError("write addresses as strings, e.g. '192.0.2.10' or '192.0.2.0/24'")
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if network.prefixlen == 0:
        raise ValueError(f"{value} would accept calls from every address without authentication")
    return network


Name = Annotated[str, AfterValidator(_check_name)]
Network = Annotated[IPv4Network | IPv6Network, BeforeValidator(_parse_network)]
Language = Annotated[str, AfterValidator(_check_language)]
ExtensionNumber = Annotated[str, AfterValidator(_check_extension_number)]
DidNumber = Annotated[str, AfterValidator(_check_did_number)]
DtmfKey = Annotated[str, AfterValidator(_check_dtmf_key)]
Text = Annotated[str, AfterValidator(_check_not_blank)]
Port = Annotated[int, Field(ge=0, le=65535)]
RtpPort = Annotated[int, Field(ge=1024, le=65535)]
Seconds = Annotated[float, Field(gt=0, le=86400)]


class _Model(BaseModel):
    """Shared settings: unknown keys are errors, values are immutable, types are TOML's own."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ---------------------------------------------------------------- ccserver.toml


class ServerConfig(_Model):
    """``[server]``: this node's identity and sockets."""

    node_name: Name = "ccserver"
    bind: str = "127.0.0.1"
    sip_port: Port = 5060
    """0 lets the OS pick a free port (tests)."""
    sip_transports: tuple[Literal["udp", "tcp"], ...] = Field(
        default=("udp", "tcp"), strict=False, min_length=1
    )
    public_address: str | None = None
    """What goes into Contact and SDP ``c=``; None means :attr:`bind`."""
    rtp_port_min: RtpPort = 20000
    rtp_port_max: RtpPort = 29999
    http_port: Port = 8080
    """0 lets the OS pick a free port (tests)."""
    data_dir: Text = "data"
    """Relative paths are taken from the working directory; see :attr:`Config.data_dir`."""
    realm: Text = "ccserver"
    digest_algorithms: tuple[Literal["MD5", "SHA-256"], ...] = Field(
        default=("MD5",), strict=False, min_length=1
    )
    """Challenges offered, most preferred first (RFC 8760 §2.4). MD5 alone by
    default: baresip 1.0 refuses a 401 that carries any SHA-256 challenge and
    SIPp 3.6 answers only the first; enable SHA-256 where every phone has it."""
    registration_min_expires: int = Field(default=60, ge=1, le=3600)
    """Shortest registration accepted; shorter ones get 423 (RFC 3261 §10.3)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        if isinstance(value, str) and value.upper() in _LOG_LEVELS:
            return value.upper()
        return value

    @field_validator("bind", "public_address")
    @classmethod
    def _ip_address(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None
        return value

    @field_validator("sip_transports")
    @classmethod
    def _unique_transports(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists a transport twice")
        return value

    @property
    def advertised_address(self) -> str:
        """The address peers must use to reach us (Contact, Via, SDP)."""
        return self.public_address if self.public_address is not None else self.bind


class DatabaseConfig(_Model):
    """``[database]``: where contact records go."""

    url: str | None = None
    """None means SQLite in the data directory; ``{data_dir}`` is substituted."""

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(_DB_SCHEMES):
            raise ValueError(
                f"unsupported database URL {value!r}: use sqlite+aiosqlite:///PATH "
                "or postgresql+asyncpg://USER:PASSWORD@HOST/DB"
            )
        return value


class StateConfig(_Model):
    """``[state]``: where live state (registrations, queue positions) is shared."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(_REDIS_SCHEMES):
            raise ValueError(f"{value!r} is not a redis://, rediss:// or unix:// URL")
        return value


class MediaConfig(_Model):
    """``[media]``: RTP codecs and hold music."""

    codecs: tuple[Literal["PCMU", "PCMA"], ...] = Field(
        default=("PCMU", "PCMA"), strict=False, min_length=1
    )
    """In order of preference for the SDP offer/answer (RFC 3264 §5.1)."""
    ptime: int = Field(default=20, ge=10, le=60, multiple_of=10)
    moh: Text = "tone"
    """"tone" for the built-in tone, else a WAV path (relative to the config directory)."""

    @field_validator("codecs")
    @classmethod
    def _unique_codecs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists a codec twice")
        return value


class TtsConfig(_Model):
    """``[tts]``: prompt synthesis."""

    voice: Language = "en"
    rate: int = Field(default=160, ge=80, le=400)
    """Words per minute."""
    cache_dir: Text | None = None
    """None means ``<data_dir>/tts-cache``."""


# ------------------------------------------------------- extensions, trunks, DIDs


class Extension(_Model):
    """A SIP account in ``extensions.toml``, keyed by its number."""

    name: Text
    password: Text
    agent: bool = False
    """Agent phones can be queue members and log in to the ACD."""
    max_contacts: int = Field(default=1, ge=1, le=10)
    """Registrations kept at once (RFC 3261 §10.3); more are refused."""


class Trunk(_Model):
    """A peer allowed to send calls without digest auth, by source address."""

    addresses: tuple[Network, ...] = Field(strict=False, min_length=1)
    description: str = ""

    def allows(self, address: str | IPv4Address | IPv6Address) -> bool:
        """Whether a packet from ``address`` comes from this trunk."""
        ip = _plain_ip(address)
        return any(ip in network for network in self.addresses)


class Did(_Model):
    """An inbound number in ``dids.toml``: routed to exactly one flow or queue."""

    flow: str | None = None
    queue: str | None = None
    description: str = ""

    @model_validator(mode="after")
    def _one_target(self) -> Did:
        if (self.flow is None) == (self.queue is None):
            raise ValueError("set exactly one of 'flow' or 'queue'")
        return self

    @property
    def target(self) -> tuple[Literal["flow", "queue"], str]:
        """Where calls to this number go, e.g. ``("flow", "bank")``."""
        if self.flow is not None:
            return ("flow", self.flow)
        assert self.queue is not None  # guaranteed by _one_target
        return ("queue", self.queue)


class Queue(_Model):
    """An ACD queue in ``queues.toml``."""

    strategy: QueueStrategy = "longest-idle"
    members: tuple[str, ...] = Field(default=(), strict=False)
    """Agent extension numbers; TOML integers are accepted and turned into strings."""
    ring_timeout: Seconds = 15.0
    """How long one agent rings before the next is tried."""
    wrap_up: float = Field(default=5.0, ge=0, le=3600)
    """Seconds an agent stays unavailable after a call."""
    max_wait: Seconds | None = None
    """After this long in the queue the caller goes to :attr:`overflow`."""
    overflow: str | None = None
    """A queue or flow name; needs :attr:`max_wait`."""
    moh: Text | None = None
    """None means ``[media].moh``."""
    service_level_seconds: Seconds = 20.0
    service_level_target: float = Field(default=0.8, ge=0, le=1)
    announce_position: bool = False

    @field_validator("members", mode="before")
    @classmethod
    def _numbers_as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [
                str(item) if isinstance(item, int) and not isinstance(item, bool) else item
                for item in value
            ]
        return value

    @model_validator(mode="after")
    def _overflow_needs_max_wait(self) -> Queue:
        if (self.max_wait is None) != (self.overflow is None):
            raise ValueError("set both 'max_wait' and 'overflow', or neither")
        return self


# --------------------------------------------------------------------- IVR flows


class PlayNode(_Model):
    """Say a prompt, then go to ``next`` or end the call."""

    kind: Literal["play"]
    prompt: Text
    next: str | None = None


class MenuNode(_Model):
    """Say a prompt and branch on one DTMF key.

    Each timeout or unlisted key uses one attempt; after ``1 + retries``
    attempts the flow goes to ``no_input`` (the last attempt timed out) or
    ``no_match`` (the last key was wrong), or ends the call if that is unset.
    """

    kind: Literal["menu"]
    prompt: Text
    choices: dict[DtmfKey, str] = Field(min_length=1)
    timeout: float = Field(default=5.0, gt=0, le=60)
    """Seconds to wait for a key after the prompt ends."""
    retries: int = Field(default=2, ge=0, le=10)
    no_input: str | None = None
    no_match: str | None = None


class QueueNode(_Model):
    """Hand the call to an ACD queue."""

    kind: Literal["queue"]
    queue: str
    priority: int = Field(default=0, ge=0, le=100)
    """Higher is answered first."""


class HangupNode(_Model):
    """End the call."""

    kind: Literal["hangup"]


Node = Annotated[PlayNode | MenuNode | QueueNode | HangupNode, Field(discriminator="kind")]
NODE_KINDS = ("hangup", "menu", "play", "queue")


class Flow(_Model):
    """One IVR flow, from ``flows/<name>.toml``."""

    name: Name
    language: Language
    """TTS voice for the prompts (``[flow].language``, else ``[tts].voice``)."""
    start: str
    nodes: dict[Name, Node]


# ------------------------------------------------------------------ the whole


class CtiConfig(_Model):
    """``[cti]``: who is calling: customer lookup for screen pops and routing."""

    default_country_code: str = Field(default="33", pattern=r"^[1-9][0-9]{0,2}$")
    """Country code for national caller numbers (``0600000001`` -> ``+33600000001``)."""
    customers_file: str | None = "customers.csv"
    """Demo or bootstrap customers, loaded when the customers table is empty; relative to
    the config directory; None loads nothing."""
    lookup_timeout: float = Field(default=0.5, gt=0, le=10)
    """A lookup slower than this counts as an unknown caller; calls never wait longer."""


class Config(_Model):
    """Everything a node needs to start, as loaded from one config directory."""

    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    state: StateConfig = StateConfig()
    media: MediaConfig = MediaConfig()
    tts: TtsConfig = TtsConfig()
    cti: CtiConfig = CtiConfig()
    extensions: dict[ExtensionNumber, Extension] = Field(default_factory=dict)
    trunks: dict[Name, Trunk] = Field(default_factory=dict)
    dids: dict[DidNumber, Did] = Field(default_factory=dict)
    queues: dict[Name, Queue] = Field(default_factory=dict)
    flows: dict[Name, Flow] = Field(default_factory=dict)
    source_dir: Path = Field(default=Path(), strict=False)
    """The directory this was loaded from; relative media paths start here."""
    warnings: tuple[str, ...] = Field(default=(), strict=False)
    """Problems that do not stop the server, as ``file: key: reason``."""

    @property
    def data_dir(self) -> Path:
        """``[server].data_dir`` made absolute against the working directory."""
        return Path(os.path.abspath(Path(self.server.data_dir).expanduser()))

    @property
    def database_url(self) -> str:
        """``[database].url`` with ``{data_dir}`` filled in, or SQLite in the data dir."""
        url = self.database.url or "sqlite+aiosqlite:///{data_dir}/ccserver.db"
        return url.replace("{data_dir}", self.data_dir.as_posix())

    @property
    def tts_cache_dir(self) -> Path:
        """``[tts].cache_dir`` made absolute, defaulting to ``<data_dir>/tts-cache``."""
        if self.tts.cache_dir is None:
            return self.data_dir / "tts-cache"
        return Path(os.path.abspath(Path(self.tts.cache_dir).expanduser()))

    def resolve_moh(self, moh: str) -> Path | None:
        """A ``moh`` setting as a WAV path, or None for the built-in tone."""
        if moh == "tone":
            return None
        return Path(os.path.abspath(self.source_dir / Path(moh).expanduser()))

    def queue_moh(self, queue: str) -> Path | None:
        """Hold music for ``queue`` (its own ``moh`` or ``[media].moh``); None is the tone."""
        own = self.queues[queue].moh
        return self.resolve_moh(own if own is not None else self.media.moh)

    def agents(self) -> dict[str, Extension]:
        """The extensions that are agent phones, by number."""
        return {number: ext for number, ext in self.extensions.items() if ext.agent}

    def trunk_for(self, address: str | IPv4Address | IPv6Address) -> str | None:
        """The trunk whose allow-list holds ``address`` (most specific wins), if any."""
        ip = _plain_ip(address)
        best: tuple[int, str] | None = None
        for name, trunk in self.trunks.items():
            for network in trunk.addresses:
                if ip in network and (best is None or network.prefixlen > best[0]):
                    best = (network.prefixlen, name)
        return None if best is None else best[1]


def _plain_ip(address: str | IPv4Address | IPv6Address) -> IPv4Address | IPv6Address:
    """An address with IPv4-mapped IPv6 (dual-stack sockets) turned back into IPv4."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
