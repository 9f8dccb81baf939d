"""Telephone numbers to E.164 (ITU-T E.164: ``+``, country code, national number; 15 digits).

Caller ids arrive as whatever the carrier or phone sent: ``0600000001`` (national,
with the trunk prefix), ``+33 6 00 00 00 01``, ``0033600000001`` (international
prefix), ``33600000001`` (E.164 without the ``+``, common on SIP trunks),
``tel:+33-6-00-00-00-01`` or a SIP URI's user part with parameters. Customer
numbers are stored in E.164 and caller ids are normalised the same way before a
lookup, so every spelling finds the same customer.

This is deliberately small: it knows the international and trunk prefixes and
the country-code length, not each country's numbering plan (the ``phonenumbers``
package does; we do not need its 10 MB of metadata to match a caller to a row).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["national_variants", "normalize_account", "to_e164"]

# Visual separators people and CRMs put in numbers (ITU-T E.123 and common habits).
_SEPARATORS: Final = re.compile(r"[\s\-.()/\u00a0]")
_DIGITS: Final = re.compile(r"\d+")
# E.164 §6: at most 15 digits; shorter than 7 is an extension or a service number.
_MIN_DIGITS: Final = 7
_MAX_DIGITS: Final = 15


def _check_country_code(country_code: str) -> None:
    if not (country_code.isdigit() and 1 <= len(country_code) <= 3 and country_code[0] != "0"):
        raise ValueError(f"country code must be 1 to 3 digits, not {country_code!r}")


def to_e164(
    number: str,
    default_country_code: str,
    *,
    international_prefix: str = "00",
    trunk_prefix: str = "0",
) -> str | None:
    """The E.164 form of ``number`` (``+33600000001``), or None when it is not a phone number.

    ``default_country_code`` (``"33"``, ``"82"``, ``"1"``) is the country of numbers
    written nationally. None for extensions, ``anonymous`` and anything with
    letters: an unknown caller, not an error, since caller ids come from the wire.
    """
    _check_country_code(default_country_code)
    text = number.strip()
    lowered = text.lower()
    for scheme in ("tel:", "sip:", "sips:"):
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    # A URI's user part ends at "@"; tel: parameters (RFC 3966 §3) start at ";".
    text = text.split("@", 1)[0].split(";", 1)[0]
    # "+33 (0)6 …": the bracketed trunk prefix is dialled only from inside the country.
    text = _SEPARATORS.sub("", text.replace("(0)", ""))
    if not text:
        return None
    if text.startswith("+"):
        digits = text[1:]
    elif international_prefix and text.startswith(international_prefix):
        digits = text[len(international_prefix) :]
    elif trunk_prefix and text.startswith(trunk_prefix):
        digits = default_country_code + text[len(trunk_prefix) :]
    elif (
        text.startswith(default_country_code)
        and len(text) - len(default_country_code) >= _MIN_DIGITS + 1
    ):
        # E.164 without its "+": long enough to carry the country code in front
        # of a full national number.
        digits = text
    else:
        digits = default_country_code + text
    if not _DIGITS.fullmatch(digits) or digits[0] == "0":
        return None
    if not _MIN_DIGITS <= len(digits) <= _MAX_DIGITS:
        return None
    return "+" + digits


def national_variants(
    e164: str,
    default_country_code: str,
    *,
    international_prefix: str = "00",
    trunk_prefix: str = "0",
) -> list[str]:
    """The spellings a caller id of ``e164`` may have been stored with, E.164 first.

    Contact records keep the caller number exactly as received, so finding a
    customer's past contacts means asking for each form a trunk sends.
    """
    _check_country_code(default_country_code)
    if not e164.startswith("+") or not e164[1:].isdigit():
        raise ValueError(f"not an E.164 number: {e164!r}")
    digits = e164[1:]
    variants = [e164, digits, international_prefix + digits]
    if digits.startswith(default_country_code):
        variants.append(trunk_prefix + digits[len(default_country_code) :])
    return list(dict.fromkeys(variants))


def normalize_account(account_no: str) -> str:
    """Account numbers compare without spaces or dashes and in upper case (IBAN style)."""
    return _SEPARATORS.sub("", account_no).upper()
