"""Reading many registrations of a webinar's events at once (reconciliation), and the value parsers every CRM
read shares: kept apart from ``shared.crm`` so that each module stays small. ``shared.crm`` re-exports the names."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from shared.dataverse import DataverseClient, query_pages

STATECODE_ACTIVE: Final = 0
_GUID_RE: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class WebinarRegistration:
    """A registration of a webinar's event as reconciliation reads it (many at once): the row, its contact's email.

    ``email`` is held in memory for the comparison only, never stored; ``modified_on`` is the row's
    ``modifiedon`` (None when Dataverse did not send it).
    """

    id: str
    event_id: str | None
    contact_id: str | None
    email: str | None
    is_active: bool
    modified_on: datetime | None


class WebinarRegistrationsReader:
    """``Crm``'s paged read of a webinar's registrations."""

    _client: DataverseClient

    def webinar_registrations(self, webinar_id: str, *, page_size: int = 5000) -> Iterator[list[WebinarRegistration]]:
        """Every registration (active or not) of the events whose ``msevtmgt_webinarid`` is ``webinar_id``, one
        page at a time (OData paging), with the contact's email expanded: one query for the events, then one
        call per page of registrations.

        Raises:
            ValueError: a malformed webinar id; InvalidDataError, ConfigError, TransientError: as ``get_row``.
        """
        if not webinar_id.isascii() or not webinar_id.isdigit():
            raise ValueError("webinar id must be digits")
        events = [
            guid
            for page in query_pages(self._client, "msevtmgt_events", select=["msevtmgt_eventid"],
                                    where=f"msevtmgt_webinarid eq '{webinar_id}'")
            for row in page
            if (guid := _guid(row.get("msevtmgt_eventid"))) is not None
        ]  # fmt: skip
        for start in range(0, len(events), 20):  # a short $filter per 20 events keeps the URL small
            where = " or ".join(f"_msevtmgt_eventid_value eq {guid}" for guid in events[start : start + 20])
            pages = query_pages(
                self._client,
                "msevtmgt_eventregistrations",
                select=["msevtmgt_eventregistrationid", "_msevtmgt_eventid_value", "_msevtmgt_contactid_value",
                        "msevtmgt_iscanceled", "statecode", "modifiedon"],
                where=where,
                expand="msevtmgt_ContactId($select=emailaddress1)",
                page_size=page_size,
            )  # fmt: skip
            for page in pages:
                yield [registration for row in page if (registration := _webinar_registration(row)) is not None]



def _webinar_registration(row: dict[str, Any]) -> WebinarRegistration | None:
    row_id = _guid(row.get("msevtmgt_eventregistrationid"))
    if row_id is None:
        return None
    contact = row.get("msevtmgt_ContactId")
    statecode = _int(row.get("statecode"))
    return WebinarRegistration(
        id=row_id,
        event_id=_guid(row.get("_msevtmgt_eventid_value")),
        contact_id=_guid(row.get("_msevtmgt_contactid_value")),
        email=_text(contact.get("emailaddress1")) if isinstance(contact, dict) else None,
        is_active=row.get("msevtmgt_iscanceled") is not True and statecode in (None, STATECODE_ACTIVE),
        modified_on=_moment(row.get("modifiedon")),
    )


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _guid(value: object) -> str | None:
    return value.lower() if isinstance(value, str) and _GUID_RE.match(value) else None
