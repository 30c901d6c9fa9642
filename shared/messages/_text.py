"""The rules every text of a message (or of a CRM contact) must meet, as pydantic validators.

Every string is stripped of surrounding whitespace and must not contain control characters (C0/C1, including tab
and newline inside the value), line/paragraph separators, bidirectional overrides or lone surrogates; any text longer
than 1,000 characters is refused. Hostile data is refused, never cleaned into something else.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from shared.emails import EmailError, normalise_email
from shared.ids import is_org_id, is_webinar_id
from shared.messages._commands import NIL_GUID, normalise_guid

MAX_TEXT_CHARS = 1000
"""Longest string accepted in any text field; anything longer is not a plausible attendee value."""

MAX_EMAIL_CHARS = 100
"""ON24's limit for ``email``."""

# Characters that are never part of a legitimate value: bidi embeddings/overrides/isolates, marks, BOM.
_FORBIDDEN_FORMAT_CHARS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
# ON24 exports registrants to spreadsheets: an address starting with one of these would be a formula there.
_FORMULA_STARTS = frozenset("=+-@")


def _text_problem(value: str) -> str | None:
    """Why a (stripped) string is unacceptable, or None."""
    for index, ch in enumerate(value):
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES or ch in _FORBIDDEN_FORMAT_CHARS:
            return f"contains disallowed character U+{ord(ch):04X} (control, format or surrogate) at position {index}"
    return None


def checked_text(value: str) -> str:
    if len(value) > MAX_TEXT_CHARS:
        raise PydanticCustomError(
            "too_long",
            "is {length} characters; the maximum is {maximum}",
            {"length": len(value), "maximum": MAX_TEXT_CHARS},
        )
    value = value.strip()
    problem = _text_problem(value)
    if problem:
        raise PydanticCustomError("control_char", problem)
    return value


def optional_text(value: str | None) -> str | None:
    if value is None:
        return None
    value = checked_text(value)
    return value or None


def required_text(value: str) -> str:
    value = checked_text(value)
    if not value:
        raise PydanticCustomError("empty", "must not be empty")
    return value


def person_name(value: str) -> str:
    value = required_text(value)
    if "<" in value or ">" in value:
        raise PydanticCustomError("not_a_name", "contains angle brackets: not a person's name")
    return value


def email_address(value: str) -> str:
    """An address in its normal form (:func:`shared.emails.normalise_email`: IDN domain in ASCII), at most
    ON24's 100 characters in that form; hostile text (control characters, formula starts) is refused."""
    value = required_text(value)
    if value[0] in _FORMULA_STARTS:
        raise PydanticCustomError("email", "starts with a spreadsheet formula character (= + - @)")
    # The address itself never goes into the reason: reasons reach logs and the ledger.
    try:
        value = normalise_email(value)
    except EmailError as exc:
        raise PydanticCustomError("email", str(exc)) from None
    if len(value) > MAX_EMAIL_CHARS:
        raise PydanticCustomError(
            "too_long",
            "is {length} characters (domain in ASCII form); the maximum is {maximum}",
            {"length": len(value), "maximum": MAX_EMAIL_CHARS},
        )
    return value


def guid(value: str) -> str:
    value = checked_text(value)
    guid = normalise_guid(value)
    if guid is None:
        raise PydanticCustomError("guid", "must be a GUID")
    if guid == NIL_GUID:
        raise PydanticCustomError("guid", "must not be the nil GUID")
    return guid


def valid_org_id(value: str) -> str:
    value = checked_text(value)
    if not is_org_id(value):
        raise PydanticCustomError(
            "org_id", "must be 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit"
        )
    return normalise_guid(value) or value


def valid_webinar_id(value: object) -> object:
    """Before-validator: accept digits as a string or a positive JSON integer; return the decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        digits = str(value)
    elif isinstance(value, str):
        digits = checked_text(value)
    elif value is None:
        return None
    else:
        raise PydanticCustomError("on24_event_id_type", "must be a string of digits or an integer")
    if not is_webinar_id(digits):
        raise PydanticCustomError("on24_event_id", "must be a positive number of up to 18 digits")
    return str(int(digits))


def valid_occurred_at(value: object) -> object:
    """Before-validator: an ISO-8601 string becomes an aware UTC datetime; other types are an error."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", "must be an ISO-8601 date-time string")
    return iso_datetime(value)


def iso_datetime(value: str) -> datetime:
    value = checked_text(value)
    if len(value) > 64:
        raise PydanticCustomError("datetime", "is not an ISO-8601 date-time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("datetime", "is not an ISO-8601 date-time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise PydanticCustomError("datetime", "must carry a UTC offset ('Z' or '+hh:mm')")
    return parsed.astimezone(UTC)


OptionalText = Annotated[str | None, AfterValidator(optional_text)]
Guid = Annotated[str, AfterValidator(guid)]


