"""Outbound webhooks: bus events POSTed as JSON to HTTP endpoints, signed, retried.

Each endpoint has its own bounded subscription on the event bus and one worker
task that delivers its events one at a time, so deliveries to an endpoint keep
the bus order and a slow endpoint slows nobody else. Publishing never waits:
when an endpoint falls behind by more than ``queue_size`` events the oldest
are dropped (the bus subscription does that) and the worker logs how many.

Request::

    POST <url>
    Content-Type: application/json
    X-Ccserver-Event: call.answered
    X-Ccserver-Delivery: <uuid4 hex, the same on every attempt of one event>
    X-Ccserver-Timestamp: <unix seconds of this attempt>
    X-Ccserver-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

    {"type": ..., "at": ..., "contact_id": ..., "agent": ..., "queue": ..., "data": {...}}

A 2xx is delivered. Connection errors, timeouts, 408, 429 and 5xx are retried
with exponential back-off and full jitter (0.5 s doubling, at most 60 s) up to
``max_attempts``; any other status is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp

from ccserver.config.schema import Webhook
from ccserver.events import Event, EventBus, Subscription

__all__ = [
    "RETRY_STATUSES",
    "EndpointStats",
    "WebhookDispatcher",
    "sign",
    "verify",
]

log = logging.getLogger(__name__)

RETRY_STATUSES: Final = frozenset({408, 429})
"""Statuses below 500 that still say "try again later"."""
USER_AGENT: Final = "ccserver-webhooks/1"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Ccserver-Signature`` value: ``sha256=`` and the HMAC of ``timestamp.body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def _json_default(value: object) -> object:
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


@dataclass(slots=True)
class EndpointStats:
    """Counters of one endpoint since start."""

    delivered: int = 0
    failed: int = 0
    """Events given up (attempts exhausted or a final status)."""
    dropped: int = 0
    """Events lost because the endpoint's queue was full."""
    attempts: int = 0


class _Endpoint:
    def __init__(self, name: str, cfg: Webhook, sub: Subscription) -> None:
        self.name = name
        self.cfg = cfg
        self.sub = sub
        self.stats = EndpointStats()
        self.task: asyncio.Task[None] | None = None


class WebhookDispatcher:
    """Delivers bus events to the configured webhooks; ``start()`` then ``stop()``.

    ``backoff_base`` and ``backoff_max`` (seconds) and ``rng`` are arguments so
    tests can make retries immediate and deterministic. ``on_outcome(endpoint,
    event, delivered)`` is called once per event when it is delivered or given
    up (metrics, tests).
    """

    def __init__(
        self,
        bus: EventBus,
        webhooks: Mapping[str, Webhook],
        *,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        rng: Callable[[], float] = random.random,
        on_outcome: Callable[[str, Event, bool], None] | None = None,
    ) -> None:
        self.bus = bus
        self.webhooks = dict(webhooks)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._rng = rng
        self._on_outcome = on_outcome
        self._session: aiohttp.ClientSession | None = None
        self._endpoints: dict[str, _Endpoint] = {}

    @property
    def stats(self) -> dict[str, EndpointStats]:
        return {name: ep.stats for name, ep in self._endpoints.items()}

    async def start(self) -> None:
        """Subscribe each endpoint and start its worker; does nothing without webhooks."""
        if not self.webhooks or self._session is not None:
            return
        self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        for name, cfg in self.webhooks.items():
            sub = self.bus.subscribe(cfg.events, maxsize=cfg.queue_size)
            ep = _Endpoint(name, cfg, sub)
            ep.task = asyncio.create_task(self._run(ep), name=f"webhook-{name}")
            self._endpoints[name] = ep
        log.info("webhooks: %s", ", ".join(f"{n} -> {c.url}" for n, c in self.webhooks.items()))

    async def stop(self) -> None:
        """Cancel the workers (events still queued are not sent) and close the session."""
        tasks = []
        for ep in self._endpoints.values():
            ep.sub.close()
            if ep.task is not None:
                ep.task.cancel()
                tasks.append(ep.task)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self, ep: _Endpoint) -> None:
        seen_dropped = 0
        async for event in ep.sub:
            if ep.sub.dropped != seen_dropped:
                lost = ep.sub.dropped - seen_dropped
                seen_dropped = ep.sub.dropped
                ep.stats.dropped += lost
                log.warning(
                    "webhook %s: %d event(s) dropped, endpoint too slow (queue_size %d)",
                    ep.name,
                    lost,
                    ep.cfg.queue_size,
                )
            try:
                delivered = await self._deliver(ep, event)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end the endpoint's deliveries
                delivered = False
                ep.stats.failed += 1
                log.exception("webhook %s: delivery of %s failed", ep.name, event.type)
            if self._on_outcome is not None:
                self._on_outcome(ep.name, event, delivered)

    def backoff(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: full jitter over a doubling ceiling."""
        ceiling: float = min(self.backoff_max, self.backoff_base * 2.0 ** (attempt - 1))
        return ceiling * self._rng()

    async def _deliver(self, ep: _Endpoint, event: Event) -> bool:
        """Send ``event`` with retries; True once delivered, False when given up."""
        assert self._session is not None
        cfg = ep.cfg
        body = json.dumps(event.as_dict(), default=_json_default, ensure_ascii=False).encode()
        delivery = uuid.uuid4().hex
        prefix = f"[{event.contact_id or event.agent or '-'}] webhook {ep.name}"
        timeout = aiohttp.ClientTimeout(total=cfg.timeout)
        for attempt in range(1, cfg.max_attempts + 1):
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "X-Ccserver-Event": event.type,
                "X-Ccserver-Delivery": delivery,
                "X-Ccserver-Timestamp": timestamp,
            }
            if cfg.secret is not None:
                headers["X-Ccserver-Signature"] = sign(cfg.secret, timestamp, body)
            ep.stats.attempts += 1
            try:
                async with self._session.post(
                    cfg.url, data=body, headers=headers, timeout=timeout
                ) as resp:
                    status = resp.status
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if 200 <= status < 300:
                    ep.stats.delivered += 1
                    return True
                if status < 500 and status not in RETRY_STATUSES:
                    ep.stats.failed += 1
                    log.warning("%s: %s refused with %d, not retried", prefix, event.type, status)
                    return False
                problem = f"HTTP {status}"
            if attempt == cfg.max_attempts:
                break
            delay = self.backoff(attempt)
            log.info(
                "%s: %s attempt %d/%d failed (%s), retry in %.1f s",
                prefix, event.type, attempt, cfg.max_attempts, problem, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
        ep.stats.failed += 1
        log.warning(
            "%s: %s given up after %d attempts (%s)", prefix, event.type, cfg.max_attempts, problem
        )
        return False
