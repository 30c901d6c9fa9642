"""How the stores turn Python values into Table Storage properties and back, in one place.

Table Storage cannot unset a property with a merge and has no null time, so "no time" is stored as the Unix epoch
(``EPOCH``) and read back as None; text columns store "" for None. A row read from the table carries its etag
in its metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Stands for "no time" in a time column."""


def moment(value: Any) -> datetime | None:
    """A time column as read: None for the epoch (no time), a missing or non-time value."""
    return value if isinstance(value, datetime) and value > EPOCH else None


def text(value: Any) -> str | None:
    """A text column as read: None for "" or a missing value."""
    return str(value) if value else None


def etag_of(entity: Any) -> str | None:
    """The etag of a row read from the table (None for a row built in memory)."""
    return entity.metadata.get("etag") if hasattr(entity, "metadata") else None
