"""Finding a customer from the console: by name, phone number, account number or id.

``GET /api/customers?q=`` (agent role; route listed in cti/api.py) searches the
``customers`` tables of the contact store (the demo's CSV, or whatever a
deployment loads there) through the read engine, so a search never waits
behind the contact writer. A customer held only by an external CRM
(``[cti].crm``) is not searched here: the CRM has its own search.

What ``q`` matches:

- a phone number in any spelling (``0600000009``, ``+33 6 00 00 00 09``) is
  turned into E.164 and compared exactly, and at least four of its digits also
  match the end of a stored number (``0009``);
- an account number, compared without spaces or dashes, in upper case,
  anywhere in the stored number (``ACC-100009``, ``100009``);
- a customer id exactly (``C0009``), and any part of the name, case-insensitive
  for Latin letters (``whitfield``, ``王``).

User text goes into ``LIKE`` patterns escaped, so ``%`` and ``_`` match themselves.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import selectinload

from ccserver.calls.control import ControlError, customer_summary
from ccserver.storage.customers import CustomerAccountRow, CustomerPhoneRow, CustomerRow
from ccserver.storage.phone import normalize_account, to_e164
from cti.auth import Principal
from cti.customers import Customer, customer_from_row
from cti.openapi import QueryParam

__all__ = ["CUSTOMERS_QUERY", "SEARCH", "CustomerSearch", "get_customers"]

MIN_QUERY = 2
MAX_QUERY = 100
MAX_RESULTS = 50
_NON_DIGITS = re.compile(r"\D")


class CustomerSearch:
    """Customers of the contact store matching a typed text (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine, *, default_country_code: str) -> None:
        self.engine = engine
        self.default_country_code = default_country_code

    def _conditions(self, text: str) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [
            CustomerRow.id == text.upper(),
            func.lower(CustomerRow.name).contains(text.lower(), autoescape=True),
        ]
        e164 = to_e164(text, self.default_country_code)
        digits = _NON_DIGITS.sub("", text)
        phones: list[ColumnElement[bool]] = []
        if e164 is not None:
            phones.append(CustomerPhoneRow.number == e164)
        if len(digits) >= 4:
            phones.append(CustomerPhoneRow.number.contains(digits, autoescape=True))
        if len(digits) >= 6 and digits.startswith("0"):
            # The start of a national number: stored numbers have the country code instead.
            national = digits[1:]
            phones.append(CustomerPhoneRow.number.contains(national, autoescape=True))
        if phones:
            conditions.append(
                CustomerRow.id.in_(select(CustomerPhoneRow.customer_id).where(or_(*phones)))
            )
        account = normalize_account(text)
        if len(account) >= 3:
            conditions.append(
                CustomerRow.id.in_(
                    select(CustomerAccountRow.customer_id).where(
                        CustomerAccountRow.account_no.contains(account, autoescape=True)
                    )
                )
            )
        return conditions

    async def search(self, text: str, limit: int = 20) -> list[Customer]:
        query = (
            select(CustomerRow)
            .where(or_(*self._conditions(text.strip())))
            .options(
                selectinload(CustomerRow.phones),
                selectinload(CustomerRow.accounts),
                selectinload(CustomerRow.complaints),
            )
            .order_by(CustomerRow.name, CustomerRow.id)
            .limit(limit)
        )
        async with AsyncSession(self.engine) as session:
            rows = (await session.scalars(query)).all()
        return [customer_from_row(row) for row in rows]


SEARCH = web.AppKey("customer_search", CustomerSearch)

CUSTOMERS_QUERY = (
    QueryParam(
        "q",
        f"{MIN_QUERY} to {MAX_QUERY} characters (1 for a CJK character): part of a name, "
        "a phone number, an account number or a customer id",
        required=True,
    ),
    QueryParam("limit", f"at most this many customers, 1 to {MAX_RESULTS} (default 20)"),
)


def _invalid(field: str, message: str) -> ControlError:
    return ControlError(
        422,
        "invalid-query",
        f"invalid query parameters: {field}",
        {"errors": [{"field": field, "message": message}]},
    )


async def get_customers(request: web.Request, who: Principal) -> Any:
    text = request.query.get("q", "").strip()
    # One character is enough when it is not ASCII: a Chinese or Korean surname.
    if not (MIN_QUERY <= len(text) or (text and not text.isascii())) or len(text) > MAX_QUERY:
        raise _invalid("q", f"{MIN_QUERY} to {MAX_QUERY} characters (1 for a CJK character)")
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_RESULTS:
        raise _invalid("limit", f"a whole number from 1 to {MAX_RESULTS}")
    search = request.app.get(SEARCH)
    if search is None:
        raise ControlError(503, "customers-unavailable", "this node has no customer store")
    found = await search.search(text, limit)
    return {"query": text, "customers": [customer_summary(c) for c in found]}
