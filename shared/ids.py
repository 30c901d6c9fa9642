"""Identifier formats shared by the queue messages, the admin API and the state tables.

An org id becomes a Table Storage PartitionKey and part of a URL route, so it is restricted to a safe
alphabet (no ``/ \\ # ?``, no control characters). Dataverse's OrganizationId is a GUID, which fits.
"""

from __future__ import annotations

import re
import uuid

ORG_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ON24_EVENT_ID_PATTERN = re.compile(r"^[0-9]{1,18}$")


def is_org_id(value: str) -> bool:
    """True when ``value`` is an acceptable org id (1-64 chars of letters, digits, ``. _ -``)."""
    return bool(ORG_ID_PATTERN.fullmatch(value))


def normalize_guid(value: str) -> str | None:
    """The lower-case canonical form of a GUID (braces tolerated), or None when it is not one."""
    try:
        return str(uuid.UUID(value.strip().strip("{}")))
    except (ValueError, AttributeError):
        return None
