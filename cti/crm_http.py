"""A CRM over HTTP as the customer provider: ``[cti] provider = "http"`` and ``[cti.crm]``.

One GET per lookup, to a URL template (``https://crm/api/customers?phone={number}``)
with the caller's E.164 number filled in, bounded by ``[cti.crm].timeout``. The
JSON answer is turned into our :class:`~cti.customers.Customer` by
:func:`customer_from_json`, a pure function: a customer object (or a list of
them, the first taken), optionally under a dotted ``result`` path, with field
names mapped by ``fields`` (docs/contacts.md, "A CRM over HTTP").

Answers, in the terms of :class:`~cti.customers.CustomerProvider`:

- 200 with a customer: that customer;
- 404, 204, ``null`` or an empty list: "no such customer" (None, cached briefly);
- a timeout, a refused connection, another status, or an answer that is not
  the expected JSON: :class:`CrmError`, "could not tell". The directory logs it
  and the caller is unknown, unless ``fallback = "database"`` asks our own
  customers table instead (:class:`~cti.customers.FallbackProvider`).

The call never waits longer than ``[cti] lookup_timeout`` whatever the CRM does:
the directory bounds every lookup (cti/customers.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import date
from typing import Any, Final
from urllib.parse import quote

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from ccserver.config.schema import CrmConfig, CtiConfig
from ccserver.storage.phone import normalize_account, to_e164
from cti.customers import (
    Account,
    Complaint,
    Customer,
    CustomerProvider,
    DatabaseCustomerProvider,
    FallbackProvider,
    Phone,
)

__all__ = [
    "CrmAnswerError",
    "CrmError",
    "HttpCrmProvider",
    "customer_from_json",
    "provider_from_config",
]

log = logging.getLogger(__name__)

USER_AGENT: Final = "ccserver-crm/1"
MAX_ANSWER_BYTES: Final = 1 << 20
"""A customer record is a few kilobytes; a megabyte is a CRM answering something else."""
_STRINGS: Final = ("email", "segment", "language", "account_manager", "notes")


class CrmError(Exception):
    """The CRM could not tell who is calling (down, slow, refused, answered garbage)."""


class CrmAnswerError(CrmError, ValueError):
    """The CRM answered, but not the JSON shape documented in docs/contacts.md."""


# -- the JSON answer -> Customer (pure) ---------------------------------------------------


def _path(doc: Any, dotted: str) -> Any:
    """``doc["a"]["b"]`` for ``"a.b"``; None when a step is missing."""
    for key in dotted.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _text(value: Any, what: str, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise CrmAnswerError(f"customer has no {what}")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise CrmAnswerError(f"{what} must be a string, not {type(value).__name__}")
    return str(value)


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise CrmAnswerError(f"{what} must be a list, not {type(value).__name__}")
    return value


def _date(value: Any, what: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise CrmAnswerError(f"{what} is not an ISO date: {value!r}") from None


def _phones(raw: Any, country_code: str, asked: str | None) -> tuple[Phone, ...]:
    phones: list[Phone] = []
    for i, item in enumerate(_list(raw, "phones")):
        if isinstance(item, dict):
            number = _text(item.get("number"), f"phones[{i}].number", required=True)
            label = _text(item.get("label"), f"phones[{i}].label")
            primary = bool(item.get("primary", False))
        else:
            number, label, primary = _text(item, f"phones[{i}]", required=True), None, False
        assert number is not None
        e164 = to_e164(number, country_code)
        if e164 is None:
            continue  # an extension or a note in a phone field: not a number to match
        if all(p.number != e164 for p in phones):
            phones.append(Phone(e164, label, primary))
    if phones and not any(p.primary for p in phones):
        phones[0] = Phone(phones[0].number, phones[0].label, True)
    if asked is not None and all(p.number != asked for p in phones):
        # The number the CRM matched on is the customer's, even if its record
        # does not list it: the pop finds the caller's history by it.
        phones.append(Phone(asked, None, not phones))
    return tuple(phones)


def _accounts(raw: Any) -> tuple[Account, ...]:
    accounts: list[Account] = []
    for i, item in enumerate(_list(raw, "accounts")):
        if isinstance(item, dict):
            number = _text(
                item.get("number", item.get("account_no")), f"accounts[{i}].number", required=True
            )
            kind = _text(item.get("kind"), f"accounts[{i}].kind")
        else:
            number, kind = _text(item, f"accounts[{i}]", required=True), None
        assert number is not None
        accounts.append(Account(normalize_account(number), kind))
    return tuple(accounts)


def _complaints(raw: Any) -> tuple[Complaint, ...]:
    complaints: list[Complaint] = []
    for i, item in enumerate(_list(raw, "complaints")):
        if not isinstance(item, dict):
            raise CrmAnswerError(f"complaints[{i}] must be an object")
        opened = _date(item.get("opened_on"), f"complaints[{i}].opened_on")
        if opened is None:
            raise CrmAnswerError(f"complaints[{i}] has no opened_on")
        summary = _text(item.get("summary"), f"complaints[{i}].summary", required=True)
        assert summary is not None
        status = _text(item.get("status"), f"complaints[{i}].status") or "open"
        closed = _date(item.get("closed_on"), f"complaints[{i}].closed_on")
        complaints.append(Complaint(opened, summary, status, closed))
    complaints.sort(key=lambda c: c.opened_on, reverse=True)  # newest first, as ours
    return tuple(complaints)


def customer_from_json(
    doc: Any,
    *,
    default_country_code: str,
    result: str | None = None,
    fields: Mapping[str, str] | None = None,
    number: str | None = None,
) -> Customer | None:
    """Our customer from a CRM's decoded JSON answer; None for "no such customer".

    ``result`` is the dotted path to the customer or list of customers (None:
    the document itself); ``fields`` maps our field names to dotted paths in the
    CRM's object (unmapped fields are read under their own name). ``number`` is
    the E.164 number that was looked up. Raises :class:`CrmAnswerError` for
    anything else, naming what is wrong.
    """
    found = _path(doc, result) if result else doc
    if isinstance(found, list):
        if len(found) > 1:
            log.info("the CRM knows %d customers for this lookup: taking the first", len(found))
        found = found[0] if found else None
    if found is None:
        return None
    if not isinstance(found, dict):
        raise CrmAnswerError(f"expected a customer object, got {type(found).__name__}")
    names = dict(fields or {})

    def get(name: str) -> Any:
        return _path(found, names.get(name, name))

    customer_id = _text(get("id"), "id", required=True)
    name = _text(get("name"), "name", required=True)
    assert customer_id is not None and name is not None
    extra = {key: _text(get(key), key) for key in _STRINGS}
    return Customer(
        id=customer_id,
        name=name,
        tier=_text(get("tier"), "tier") or "standard",
        phones=_phones(get("phones"), default_country_code, number),
        accounts=_accounts(get("accounts")),
        complaints=_complaints(get("complaints")),
        **extra,
    )


# -- the provider ---------------------------------------------------------------------------


class HttpCrmProvider:
    """Customers from a CRM's HTTP API (one GET per lookup); ``close()`` when done."""

    name = "http"

    def __init__(self, cfg: CrmConfig, *, default_country_code: str) -> None:
        self.cfg = cfg
        self.default_country_code = default_country_code
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **cfg.headers}
        if cfg.token is not None:
            headers["Authorization"] = f"Bearer {cfg.token}"
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    async def by_number(self, e164: str) -> Customer | None:
        url = self.cfg.url.replace("{number}", quote(e164, safe=""))
        return await self._get(url, e164)

    async def by_account(self, account_no: str) -> Customer | None:
        if self.cfg.account_url is None:
            return None  # this CRM is not asked by account: nobody holds it here
        url = self.cfg.account_url.replace("{account}", quote(account_no, safe=""))
        return await self._get(url, None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get(self, url: str, number: str | None) -> Customer | None:
        if self._session is None:
            # Created on first use: a session belongs to the running loop.
            self._session = aiohttp.ClientSession(headers=self._headers)
        try:
            async with self._session.get(url, timeout=self._timeout) as resp:
                if resp.status in (204, 404):
                    return None
                if resp.status != 200:
                    raise CrmError(f"HTTP {resp.status} from {url}")
                if resp.content_length is not None and resp.content_length > MAX_ANSWER_BYTES:
                    raise CrmAnswerError(f"answer of {resp.content_length} bytes from {url}")
                body = await resp.content.read(MAX_ANSWER_BYTES + 1)
        except TimeoutError:
            raise CrmError(f"no answer from {url} within {self.cfg.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise CrmError(f"{type(exc).__name__} from {url}: {exc}") from None
        if len(body) > MAX_ANSWER_BYTES:
            raise CrmAnswerError(f"answer larger than {MAX_ANSWER_BYTES} bytes from {url}")
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise CrmAnswerError(f"answer from {url} is not JSON: {exc}") from None
        return customer_from_json(
            doc,
            default_country_code=self.default_country_code,
            result=self.cfg.result,
            fields=self.cfg.fields,
            number=number,
        )


def provider_from_config(cti: CtiConfig, engine: AsyncEngine) -> CustomerProvider:
    """The provider ``[cti]`` asks for: the database, a CRM, or a CRM backed by the database."""
    database = DatabaseCustomerProvider(engine)
    if cti.provider != "http":
        return database
    assert cti.crm is not None  # the schema insists
    crm = HttpCrmProvider(cti.crm, default_country_code=cti.default_country_code)
    if cti.crm.fallback == "database":
        return FallbackProvider(crm, database)
    return crm
