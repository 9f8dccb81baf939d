"""The call model's data: one inbound contact and the settings the call service runs with."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ccserver.calls.leg import CallLog, Leg
from ivr import flow as ivr

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO"
SERVER = "ccserver"


@dataclass
class CallSettings:
    """What the call service needs from the configuration, decoupled from its schema."""

    host: str  # our address in Via, Contact and SDP
    codecs: Sequence[str]
    trunk_networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
    dids: dict[str, tuple[str, str]]  # number -> ("flow" | "queue", name)
    flows: dict[str, Any]
    queue_ring_timeout: dict[str, float]
    extensions: set[str] = field(default_factory=set)
    config_dir: Path = Path()  # audio files of flows are relative to it
    data_dir: Path = Path("data")  # recordings go under it
    outbound: tuple[str, int] | None = None  # the carrier for external numbers
    queue_callback_key: dict[str, str] = field(default_factory=dict)  # queue -> key
    queue_voicemail_seconds: dict[str, float] = field(default_factory=dict)


@dataclass(eq=False)
class Call:
    """One inbound contact: the caller's leg, its flow, its queue, its agent leg."""

    contact_id: str
    caller: Leg
    log: CallLog
    caller_number: str
    dialed: str = ""
    state: str = "ivr"  # ivr | queued | ringing | dialing | bridged | voicemail | leaving | ended
    flow: ivr.FlowRun | None = None
    flow_timer: asyncio.TimerHandle | None = None
    queue: str | None = None
    agent_leg: Leg | None = None  # the agent's leg once answered
    ringing: dict[str, Leg] = field(default_factory=dict)  # agent -> leg being rung
    ring_timer: asyncio.TimerHandle | None = None
    customer: Any = None  # the CTI lookup's Customer, if the caller is known
    tier: str | None = None  # the customer's tier, for the queue priority
    voice: str = "en"  # the language the caller is spoken to in
    play_seq: int = 0  # bumped by every prompt start/stop, so a stale render is not played
    attributes: dict[str, str] = field(default_factory=dict)  # call-attached data
    callback_number: str | None = None
    callback_to: str | None = None  # queue callback: the caller hung up, we call this number
    speech: Any = None  # the running speech Recognition, if listening
    recording: Any = None  # (path, chunks, listener) while recording a voicemail
    recording_path: str | None = None
    survey_after: bool = False  # the agent hung up and the caller is in the survey
    held_by_control: bool = False  # held from the console or API (media hold)
    hold_started: float | None = None  # the current hold period's start (calls.hold)
    answered: bool = False
    holds: int = 0
    hold_seconds: float = 0.0
    holders: set[str] = field(default_factory=set)  # what holds the caller now (calls.hold)
    hold_agent: str | None = None  # the agent whose router hold clock runs for this call
    side: Any = None  # supervisor, conference and consult legs (calls.sidelegs.SideState)
    origination: Any = None  # a click-to-call's details (ccserver.calls.outbound.Origination)
    transfer_target: str | None = None  # what a blind transfer asked by software rings


def utcnow() -> datetime:
    return datetime.now(UTC)
