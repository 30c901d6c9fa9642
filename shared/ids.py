"""Identifier formats shared by the queue messages, the admin API, the clients and the state tables: each rule once.

An org id becomes a Table Storage PartitionKey and part of a URL route, so it is restricted to a safe
alphabet (no ``/ \\ # ?``, no control characters). Dataverse's OrganizationId is a GUID, which fits.

Org ids are normalised once, at the edge (admin routes, queue messages, the store): a GUID in its
hyphenated 8-4-4-4-12 form is lower-cased, so ``7D1F...`` and ``7d1f...`` are the same org everywhere;
any other id is kept exactly as given. ``shared.messages`` applies the same rule to queue messages.
"""

from __future__ import annotations

import re

ORG_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
WEBINAR_ID_PATTERN = re.compile(r"^[0-9]{1,18}$")
"""A webinar id (ON24's event id): decimal digits; ``is_webinar_id`` also requires it to be positive."""
ACCOUNT_ID_PATTERN = re.compile(r"^[0-9]{1,19}$")
"""The webinar provider's account id (ON24's client id): decimal digits."""
_FIELD_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_GUID_PATTERN = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")


def is_webinar_id(value: str) -> bool:
    """True when ``value`` is a webinar id: 1-18 digits, not zero (leading zeros allowed; normalise with ``int``)."""
    return bool(WEBINAR_ID_PATTERN.fullmatch(value)) and int(value) > 0


def is_guid(value: str) -> bool:
    """True when ``value`` is a hyphenated GUID (a CRM row id), in either case."""
    return _GUID_PATTERN.fullmatch(value) is not None


def is_field_name(value: str) -> bool:
    """Whether a JSON key is shaped like a field name (an ASCII identifier of up to 64 characters): only such a
    key may be quoted in an error, since a key can hold data (an email) as well as a value can."""
    return _FIELD_NAME_PATTERN.fullmatch(value) is not None


def is_org_id(value: str) -> bool:
    """True when ``value`` is an acceptable org id (1-64 chars of letters, digits, ``. _ -``)."""
    return bool(ORG_ID_PATTERN.fullmatch(value))


def canonical_org_id(value: str) -> str | None:
    """The one spelling of an org id used for keys and comparisons, or None when ``value`` is not an org id.

    A hyphenated GUID is lower-cased (Dataverse and people write GUIDs in either case); any other id is
    returned unchanged.
    """
    if not isinstance(value, str) or not is_org_id(value):
        return None
    return value.lower() if _GUID_PATTERN.fullmatch(value) else value


def is_canonical_org_id(value: str) -> bool:
    """True when ``value`` is an org id already in its canonical spelling (see ``canonical_org_id``)."""
    return canonical_org_id(value) == value
