"""What the client sends ON24: checked event ids and attendee-list queries, and registrant form bodies.

Everything here runs before any I/O: a malformed argument is a ``ValueError`` and nothing is sent.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final

from shared.errors import InvalidDataError
from shared.ids import is_webinar_id
from shared.on24._models import RegistrantFields, one_line

_log = logging.getLogger(__name__)

MAX_PAGE_SIZE: Final = 100  # "limit of 100 per page" (DOC-catt)
# Maximum characters per registration form field (DOC-reg). Phones: DOC-phone says 1000, DOC-reg 100; the
# smaller is used. ``email`` is never truncated: a longer address is refused with InvalidDataError.
FIELD_MAX_LENGTHS: Final[Mapping[str, int]] = {
    "email": 100,
    "firstname": 50,
    "lastname": 50,
    **dict.fromkeys(
        (
            "company", "jobtitle", "jobfunction", "addressstreet1", "addressstreet2", "city", "state", "zip",
            "country", "workphone", "homephone", "fax", "companyindustry", "companysize", "username",
            "exteventusercd", "partnerref", "other", "notes", "emailformat",
            *(f"std{n}" for n in range(1, 11)),
        ),
        100,
    ),
}  # fmt: skip
_PHONE_FIELDS: Final = frozenset({"workphone", "homephone", "fax"})
# Text sent to ON24 ends up in spreadsheet exports: a value starting with one of these would be a formula there.
_FORMULA_STARTS: Final = ("=", "+", "-", "@")
_PHONE_SHAPE = re.compile(r"\+[0-9][0-9 ()./-]*")
# Zero-width joiner and non-joiner are part of how some scripts (Persian, Indic, emoji) are written.
_KEPT_FORMAT_CHARS: Final = frozenset("\u200c\u200d")
_MIN_PHONE_DIGITS: Final = 7


def attendee_query(
    event_id: int | str, start: datetime | None, end: datetime | None, page_size: int, mode: str | None = None
) -> tuple[str, dict[str, str]]:
    """Validate attendee-list arguments (before any I/O) and build the date filter parameters (``mode``: the
    ``dateFilterMode``, sent with dates only)."""
    eid = check_event_id(event_id)
    if isinstance(page_size, bool) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    params: dict[str, str] = {}
    for name, moment in (("start", start), ("end", end)):
        if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
            raise ValueError(f"{name} must be a timezone-aware datetime")
    if start is not None and end is not None and end < start:
        raise ValueError("end must not be before start")
    if start is not None:
        params["startDate"] = start.replace(microsecond=0).isoformat()
    if end is not None:  # round up to whole seconds so the last fraction of a second stays included
        whole = end.replace(microsecond=0) + (timedelta(seconds=1) if end.microsecond else timedelta())
        params["endDate"] = whole.isoformat()
    if mode and params:
        params["dateFilterMode"] = mode
    return eid, params


def check_event_id(event_id: int | str) -> str:
    if isinstance(event_id, bool) or not isinstance(event_id, int | str):
        raise ValueError("ON24 event id must be a positive number")
    text = str(event_id).strip()
    if not is_webinar_id(text):
        raise ValueError("ON24 event id must be a positive number")
    return str(int(text))


def check_email(email: str) -> str:
    address = one_line(email) if isinstance(email, str) else ""
    if not address:
        raise ValueError("registrant email must not be empty")
    if len(address) > FIELD_MAX_LENGTHS["email"]:
        raise InvalidDataError(f"registrant email is longer than ON24's {FIELD_MAX_LENGTHS['email']}-character limit")
    return address


def registrant_form(fields: RegistrantFields) -> dict[str, str]:
    """The form body for a registrant: lowercase names, cleaned and truncated values, email first."""
    form = {"email": check_email(fields.email)}
    for name, value in fields.model_dump(exclude={"email"}, exclude_none=True).items():
        if isinstance(value, bool):
            form[name] = "Y" if value else "N"
            continue
        text = one_line(str(value))
        if not text:
            continue
        if name in _PHONE_FIELDS and sum(char.isdigit() for char in text) < _MIN_PHONE_DIGITS:
            _log.debug("leaving out %s: fewer than %d digits, ON24 would refuse it", name, _MIN_PHONE_DIGITS)
            continue
        if name != "exteventusercd":
            text = spreadsheet_safe(text, phone=name in _PHONE_FIELDS)
        form[name] = text[: FIELD_MAX_LENGTHS[name]].rstrip()
    return form


def spreadsheet_safe(text: str, *, phone: bool = False) -> str:
    """Free text as it may be stored in ON24, whose exports are opened in spreadsheets.

    Invisible format characters (Unicode category Cf, e.g. U+200B) are removed, except the zero-width
    joiner and non-joiner that some scripts need. A value that starts with ``=``, ``+``, ``-`` or ``@`` gets a
    leading apostrophe, so a spreadsheet shows it as text instead of evaluating it (OWASP, "CSV Injection");
    a phone number that is only ``+`` and digits is left as it is.
    """
    text = "".join(ch for ch in text if ch in _KEPT_FORMAT_CHARS or unicodedata.category(ch) != "Cf").strip()
    if text.startswith(_FORMULA_STARTS) and not (phone and _PHONE_SHAPE.fullmatch(text)):
        return "'" + text
    return text


