"""Who is calling: customer lookup for screen pops, bounded in time so no call waits on it.

A :class:`CustomerDirectory` answers ``lookup_by_number`` and ``lookup_by_account``
from a :class:`CustomerProvider` (our database, or a CRM over HTTP: cti/crm_http.py),
with three guarantees for the call path:

- **Bounded**: a lookup returns within ``timeout``. A provider that is slower
  gives None ("unknown caller", logged) and the call goes on; its answer, if it
  comes within ``background_timeout``, still fills the cache for the screen pop
  and the next call.
- **Cached**: answers (also "no such customer", for a shorter time) are kept
  ``ttl`` seconds in a bounded LRU, so a busy number costs one provider query.
  Concurrent lookups of the same number share one query.
- **Normalised**: caller ids in any spelling (``0600000009``, ``+33 6 00 00 00 09``,
  ``tel:+33600000009``) are turned into E.164 first (``ccserver.storage.phone``).

Customers are handed out as immutable :class:`Customer` values, safe to share
between calls and screen pops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import selectinload

from ccserver.storage.customers import CustomerAccountRow, CustomerPhoneRow, CustomerRow
from ccserver.storage.database import recent_contacts
from ccserver.storage.models import Contact
from ccserver.storage.phone import national_variants, normalize_account, to_e164

__all__ = [
    "Account",
    "Complaint",
    "Customer",
    "CustomerDirectory",
    "CustomerProvider",
    "DatabaseCustomerProvider",
    "DirectoryStats",
    "FallbackProvider",
    "Phone",
    "RecentContact",
    "customer_from_row",
]

log = logging.getLogger(__name__)


# -- what a lookup returns ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Phone:
    number: str
    """E.164."""
    label: str | None
    primary: bool


@dataclass(frozen=True, slots=True)
class Account:
    number: str
    """Normalised: no spaces or dashes, upper case."""
    kind: str | None


@dataclass(frozen=True, slots=True)
class Complaint:
    opened_on: date
    summary: str
    status: str
    closed_on: date | None


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer as the screen pop shows it."""

    id: str
    name: str
    tier: str
    phones: tuple[Phone, ...] = ()
    accounts: tuple[Account, ...] = ()
    email: str | None = None
    segment: str | None = None
    language: str | None = None
    account_manager: str | None = None
    notes: str | None = None
    complaints: tuple[Complaint, ...] = ()
    """Newest first."""

    @property
    def primary_number(self) -> str | None:
        return next((p.number for p in self.phones if p.primary), None)

    @property
    def open_complaints(self) -> tuple[Complaint, ...]:
        return tuple(c for c in self.complaints if c.status != "resolved")


@dataclass(frozen=True, slots=True)
class RecentContact:
    """One earlier contact of the caller, with how it ended: the screen pop's history."""

    contact_id: str
    arrived_at: datetime
    ended_at: datetime | None
    caller_number: str
    entry_point: str | None
    queue: str | None
    agent: str | None
    outcome: str | None
    disposition: str | None
    notes: str | None
    wait_seconds: float | None
    talk_seconds: float | None

    @classmethod
    def from_row(cls, row: Contact | Row[Any]) -> RecentContact:
        """From a stored contact or a row of ``RECENT_CONTACT_COLUMNS``."""
        return cls(
            contact_id=row.id,
            arrived_at=row.arrived_at,
            ended_at=row.ended_at,
            caller_number=row.caller_number,
            entry_point=row.entry_point,
            queue=row.queue,
            agent=row.agent,
            outcome=row.outcome,
            disposition=row.disposition,
            notes=row.notes,
            wait_seconds=row.wait_seconds,
            talk_seconds=row.talk_seconds,
        )


# -- providers ----------------------------------------------------------------------------


@runtime_checkable
class CustomerProvider(Protocol):
    """Where customers come from: our database, a CRM over HTTP (cti/crm_http.py).

    Numbers arrive in E.164 and account numbers normalised, so a provider only
    compares strings. A provider may be slow or raise: the directory bounds the
    wait, logs the error and treats the caller as unknown. Answer None for "no
    such customer", which is cached (for ``negative_ttl``); raise for "could not
    tell", which is not.
    """

    name: str

    async def by_number(self, e164: str) -> Customer | None: ...

    async def by_account(self, account_no: str) -> Customer | None: ...


@runtime_checkable
class _Closable(Protocol):
    async def close(self) -> None: ...


class FallbackProvider:
    """Ask ``primary`` (a CRM); when it cannot tell (it raised), ask ``secondary``.

    "No such customer" from the primary is its answer and is not second-guessed.
    """

    def __init__(self, primary: CustomerProvider, secondary: CustomerProvider) -> None:
        self.primary = primary
        self.secondary = secondary
        self.name = f"{primary.name}, else {secondary.name}"

    async def by_number(self, e164: str) -> Customer | None:
        try:
            return await self.primary.by_number(e164)
        except Exception as exc:
            self._fell_back(f"number {e164}", exc)
        return await self.secondary.by_number(e164)

    async def by_account(self, account_no: str) -> Customer | None:
        try:
            return await self.primary.by_account(account_no)
        except Exception as exc:
            self._fell_back(f"account {account_no}", exc)
        return await self.secondary.by_account(account_no)

    async def close(self) -> None:
        for provider in (self.primary, self.secondary):
            if isinstance(provider, _Closable):
                await provider.close()

    def _fell_back(self, what: str, exc: Exception) -> None:
        log.warning(
            "customer lookup by %s: %s provider failed (%s: %s), asking %s",
            what, self.primary.name, type(exc).__name__, exc, self.secondary.name,
        )  # fmt: skip


def customer_from_row(row: CustomerRow) -> Customer:
    """The immutable value of a stored customer (phones, accounts, complaints loaded)."""
    return Customer(
        id=row.id,
        name=row.name,
        tier=row.tier,
        phones=tuple(Phone(p.number, p.label, p.is_primary) for p in row.phones),
        accounts=tuple(Account(a.account_no, a.kind) for a in row.accounts),
        email=row.email,
        segment=row.segment,
        language=row.language,
        account_manager=row.account_manager,
        notes=row.notes,
        complaints=tuple(
            Complaint(c.opened_on, c.summary, c.status, c.closed_on) for c in row.complaints
        ),
    )


class DatabaseCustomerProvider:
    """Customers from the ``customers`` tables of the contact store."""

    name = "database"

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def by_number(self, e164: str) -> Customer | None:
        # Most callers of a busy line are nobody's number: say so with one plain
        # query before the ORM builds a session and loads a customer's details.
        known = select(CustomerPhoneRow.customer_id).where(CustomerPhoneRow.number == e164)
        async with self._engine.connect() as conn:
            if (await conn.execute(known.limit(1))).first() is None:
                return None
        query = (
            select(CustomerRow)
            .join(CustomerPhoneRow)
            .where(CustomerPhoneRow.number == e164)
            # A shared home phone: the customer whose primary number it is wins.
            .order_by(
                CustomerPhoneRow.is_primary.desc(), CustomerRow.updated_at.desc(), CustomerRow.id
            )
            .options(*_DETAILS)
            .limit(2)
        )
        async with AsyncSession(self._engine) as session:
            rows = list((await session.scalars(query)).all())
        return _pick(rows, f"number {e164}")

    async def by_account(self, account_no: str) -> Customer | None:
        query = (
            select(CustomerRow)
            .join(CustomerAccountRow)
            .where(CustomerAccountRow.account_no == account_no)
            .options(*_DETAILS)
        )
        async with AsyncSession(self._engine) as session:
            rows = list((await session.scalars(query)).all())
        return _pick(rows, f"account {account_no}")


_DETAILS = (
    selectinload(CustomerRow.phones),
    selectinload(CustomerRow.accounts),
    selectinload(CustomerRow.complaints),
)


def _pick(rows: list[CustomerRow], what: str) -> Customer | None:
    if not rows:
        return None
    if len(rows) > 1:
        log.info("%s matches several customers; taking %s", what, rows[0].id)
    return customer_from_row(rows[0])


# -- the directory ------------------------------------------------------------------------


@dataclass(slots=True)
class DirectoryStats:
    hits: int = 0
    misses: int = 0
    timeouts: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class _Entry:
    customer: Customer | None
    expires: float


_Key = tuple[str, str]


class CustomerDirectory:
    """Time-bounded, cached customer lookups for the call path and screen pops."""

    def __init__(
        self,
        provider: CustomerProvider,
        *,
        default_country_code: str,
        contact_store: AsyncEngine | None = None,
        timeout: float = 0.5,
        ttl: float = 300.0,
        negative_ttl: float = 30.0,
        max_entries: int = 10_000,
        background_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``contact_store`` is where :meth:`recent_contacts` reads history from (None:
        no history). ``clock`` drives cache expiry only, so tests can move it."""
        if timeout <= 0 or background_timeout < timeout:
            raise ValueError("need 0 < timeout <= background_timeout")
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        to_e164("0600000000", default_country_code)  # ValueError for a bad country code
        self.provider = provider
        self.default_country_code = default_country_code
        self.timeout = timeout
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self.background_timeout = background_timeout
        self.stats = DirectoryStats()
        self._contacts = contact_store
        self._clock = clock
        self._cache: OrderedDict[_Key, _Entry] = OrderedDict()
        self._inflight: dict[_Key, asyncio.Task[Customer | None]] = {}

    async def lookup_by_number(self, number: str, *, call: str | None = None) -> Customer | None:
        """The customer calling from ``number`` (any spelling), or None if unknown or too slow."""
        e164 = to_e164(number, self.default_country_code)
        if e164 is None:
            log.debug("%s%r is not a phone number: unknown caller", _prefix(call), number)
            return None
        return await self._lookup(("number", e164), partial(self.provider.by_number, e164), call)

    async def lookup_by_account(
        self, account_no: str, *, call: str | None = None
    ) -> Customer | None:
        """The customer holding ``account_no`` (spaces and dashes ignored), or None."""
        normalized = normalize_account(account_no)
        if not normalized:
            return None
        return await self._lookup(
            ("account", normalized), partial(self.provider.by_account, normalized), call
        )

    async def recent_contacts(
        self, who: Customer | str, limit: int = 5, *, call: str | None = None
    ) -> list[RecentContact]:
        """The latest contacts of a customer (any of their numbers) or of a number, newest first.

        Bounded by the same ``timeout``: an empty list rather than a late screen pop.
        """
        if self._contacts is None or limit < 1:
            return []
        customer_id: str | None = None
        numbers: list[str] = []
        cc = self.default_country_code
        if isinstance(who, Customer):
            customer_id = who.id
            for phone in who.phones:
                numbers.extend(national_variants(phone.number, cc))
        else:
            e164 = to_e164(who, cc)
            numbers = national_variants(e164, cc) if e164 is not None else [who]
            numbers.append(who)  # exactly as a trunk delivered it before
        try:
            async with asyncio.timeout(self.timeout):
                rows = await recent_contacts(
                    self._contacts, customer_id=customer_id, caller_numbers=numbers, limit=limit
                )
        except TimeoutError:
            log.warning(
                "%scontact history took longer than %.0f ms: none shown",
                _prefix(call),
                self.timeout * 1000,
            )
            return []
        except Exception as exc:
            log.warning("%scontact history unavailable: %s", _prefix(call), exc)
            return []
        return [RecentContact.from_row(row) for row in rows]

    def invalidate(self, customer_id: str | None = None) -> None:
        """Forget cached answers: all of them, or those about one customer (after an edit)."""
        if customer_id is None:
            self._cache.clear()
            return
        for key in [
            k for k, e in self._cache.items() if e.customer and e.customer.id == customer_id
        ]:
            del self._cache[key]

    async def close(self) -> None:
        """Cancel lookups still running in the background; close the provider (its HTTP
        session) if it has something to close."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._inflight.clear()
        if isinstance(self.provider, _Closable):
            await self.provider.close()

    # -- internals --

    async def _lookup(
        self,
        key: _Key,
        fetch: Callable[[], Awaitable[Customer | None]],
        call: str | None,
    ) -> Customer | None:
        entry = self._cache.get(key)
        if entry is not None:
            if entry.expires > self._clock():
                self._cache.move_to_end(key)
                self.stats.hits += 1
                return entry.customer
            del self._cache[key]
        self.stats.misses += 1
        task = self._inflight.get(key)
        if task is None:
            # Owned by the directory (close() cancels it): it may outlive this
            # caller's wait so that a late answer still reaches the cache.
            task = asyncio.create_task(self._fetch(key, fetch), name=f"customer-lookup {key}")
            self._inflight[key] = task
            task.add_done_callback(partial(self._fetched, key))
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.shield(task)
        except TimeoutError:
            self.stats.timeouts += 1
            log.warning(
                "%scustomer lookup by %s %s took longer than %.0f ms: unknown caller",
                _prefix(call),
                key[0],
                key[1],
                self.timeout * 1000,
            )
            return None
        except Exception:
            self.stats.errors += 1  # logged once, by _fetched
            return None

    async def _fetch(
        self, key: _Key, fetch: Callable[[], Awaitable[Customer | None]]
    ) -> Customer | None:
        async with asyncio.timeout(self.background_timeout):
            customer = await fetch()
        ttl = self.ttl if customer is not None else self.negative_ttl
        now = self._clock()
        cache = self._cache
        cache[key] = _Entry(customer, now + ttl)
        cache.move_to_end(key)
        # Least recently used first: drop it while it has expired, so a stream of
        # new numbers holds negative_ttl of them, not max_entries (memory_soak.py).
        while cache and (
            len(cache) > self.max_entries or next(iter(cache.values())).expires <= now
        ):
            cache.popitem(last=False)
        return customer

    def _fetched(self, key: _Key, task: asyncio.Task[Customer | None]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.warning(
                "customer lookup by %s %s failed (%s provider): %s: %s",
                key[0],
                key[1],
                self.provider.name,
                type(exc).__name__,
                exc,
            )


def _prefix(call: str | None) -> str:
    return f"[{call}] " if call else ""
