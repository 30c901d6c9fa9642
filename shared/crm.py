"""Dynamics 365 event management as this app uses it: every ``msevtmgt_*`` name, option-set value and row shape.

Reads of registrations, events and contacts, the write-back of a registration's webinar outcome, and the event
check-ins metrics are written to: all over ``shared.dataverse``'s transport, none of it knowing HTTP. Columns and
values follow ``../shared/reference/dataverse-api.md``; the privileges they need are listed in the README (security
role).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from shared.crm_values import (
    STATECODE_ACTIVE,
    WebinarRegistrationsReader,
    _guid,
    _int,
    _text,
)
from shared.dataverse import BatchResult, DataverseClient

# msevtmgt_eventregistration.msevtmgt_syncedwithprovider
SYNCED_WITH_PROVIDER_NO: Final = 100000001
SYNCED_WITH_PROVIDER_YES: Final = 100000002

# msevtmgt_eventregistration.msevtmgt_publishingstate
PUBLISHING_STATE_PUBLISHED: Final = 100000001
PUBLISHING_STATE_WEBINAR_PROVIDER_ERROR: Final = 100000004
PUBLISHING_STATES: Final = frozenset(range(100000000, 100000005))

# msevtmgt_checkin.msevtmgt_checkintype
CHECKIN_TYPE_EVENT: Final = 100000001


CHECKIN_SET: Final = "msevtmgt_checkins"
REGISTRATION_SET: Final = "msevtmgt_eventregistrations"
CHECKIN_NAMESPACE: Final = uuid.UUID("5f0c3a52-0b7e-4f0e-9a3c-6f1d2e8b9c41")
"""Fixed namespace: check-in ids must stay the same across releases, or upserts would duplicate rows."""
CHECKIN_NAME: Final = "ON24 webinar attendance"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Contact(_Frozen):
    """A CRM contact as the ON24 registration needs it.

    Attributes:
        id: contactid (lower-case GUID).
        email: emailaddress1.
        first_name: firstname.
        last_name: lastname.
        job_title: jobtitle.
        country: address1_country.
        company: the *name* of the parent account (``parentcustomerid`` when it points to an account), or None.
            Never ``contact.company``: that column is the company's phone number.
    """

    id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    job_title: str | None = None
    country: str | None = None
    company: str | None = None
    mapped: dict[str, Any] = Field(default_factory=dict)
    """The columns the org's field mapping reads (``shared.fieldmap``), as Dataverse returned them."""


class CrmEvent(_Frozen):
    """An event-management event (``msevtmgt_event``).

    Attributes:
        id: msevtmgt_eventid.
        webinar_id: msevtmgt_webinarid, stripped; None when null or blank (then it is not a webinar).
    """

    id: str
    webinar_id: str | None = None


class CrmRegistration(_Frozen):
    """An event registration (``msevtmgt_eventregistration``).

    Attributes:
        id: msevtmgt_eventregistrationid.
        event_id: ``_msevtmgt_eventid_value``.
        contact_id: ``_msevtmgt_contactid_value``.
        is_canceled: msevtmgt_iscanceled (null reads as False).
        statecode: 0 active, 1 inactive.
        registrant_id: msevtmgt_webinarregistrationid (the ON24 registrant id), None when blank.
    """

    id: str
    event_id: str | None = None
    contact_id: str | None = None
    is_canceled: bool = False
    statecode: int | None = None
    registrant_id: str | None = None
    mapped: dict[str, Any] = Field(default_factory=dict)
    """The columns the org's field mapping reads (``shared.fieldmap``), as Dataverse returned them."""

    @property
    def is_active(self) -> bool:
        """Active (statecode 0 or unknown) and not cancelled."""
        return not self.is_canceled and self.statecode in (None, STATECODE_ACTIVE)


@dataclass(frozen=True)
class CheckIn:
    """One event check-in: the attendance of one registration, linked to its registration, event and contact.

    Attributes:
        registration_id: the CRM registration (always linked).
        crm_event_id, contact_id: linked when known.
        viewing_minutes: ``msevtmgt_viewingdurationinmins``.
        interactions: ``msevtmgt_numberofquestionsasked`` ("Number of interactions").
        checked_in_at, checked_out_at: first and last activity, when known.
    """

    registration_id: str
    crm_event_id: str | None
    contact_id: str | None
    viewing_minutes: int
    interactions: int
    checked_in_at: datetime | None
    checked_out_at: datetime | None

    def fields(self) -> dict[str, Any]:
        """The check-in's columns, as upserted (their hash decides whether a row is written again)."""
        fields: dict[str, Any] = {
            "msevtmgt_name": CHECKIN_NAME,
            "msevtmgt_checkintype": CHECKIN_TYPE_EVENT,
            "msevtmgt_RegistrationId@odata.bind": f"/msevtmgt_eventregistrations({self.registration_id})",
            "msevtmgt_viewingdurationinmins": self.viewing_minutes,
            "msevtmgt_numberofquestionsasked": self.interactions,
        }
        if self.crm_event_id:
            fields["msevtmgt_Event@odata.bind"] = f"/msevtmgt_events({self.crm_event_id})"
        if self.contact_id:
            fields["msevtmgt_Contact@odata.bind"] = f"/contacts({self.contact_id})"
        if self.checked_in_at is not None:
            fields["msevtmgt_checkintime"] = self.checked_in_at.astimezone(UTC)
        if self.checked_out_at is not None:
            fields["msevtmgt_checkouttime"] = self.checked_out_at.astimezone(UTC)
        return fields


def checkin_id(org_id: str, registration_id: str) -> str:
    """The check-in's primary key: the same (org, registration) always gives the same id."""
    return str(uuid.uuid5(CHECKIN_NAMESPACE, f"{org_id.lower()}|{registration_id.lower()}"))


class Crm(WebinarRegistrationsReader):
    """Event management's reads and writes in one org's Dataverse.

    Args:
        client: the org's Dataverse client (shared by every use of that org URL).
    """

    def __init__(self, client: DataverseClient) -> None:
        self._client = client

    @property
    def url(self) -> str:
        """The org URL."""
        return self._client.url

    def get_contact(self, contact_id: str, columns: Sequence[str] = ()) -> Contact:
        """Read the contact fields an ON24 registrant needs (and ``columns``, the mapping's, in the same read).

        The company name comes from the parent account
        (``$expand=parentcustomerid_account($select=name)``); when the parent is a contact or unset, ``company`` is
        None. ``contact.company`` is deliberately not read: despite its name it holds the company's phone number.

        Args:
            contact_id: contactid GUID.

        Returns:
            The contact.

        Raises:
            NotFoundError: no such contact.
            ValueError, InvalidDataError, PermanentError, TransientError: as for ``get_row``.
        """
        row = self._client.get_row(
            "contacts",
            contact_id,
            select=_with(
                ["contactid", "emailaddress1", "firstname", "lastname", "jobtitle", "address1_country"], columns
            ),
            expand="parentcustomerid_account($select=name)",
        )
        account = row.get("parentcustomerid_account")
        company = _text(account.get("name")) if isinstance(account, dict) else None
        return Contact(
            id=_guid_or(row.get("contactid"), contact_id),
            email=_text(row.get("emailaddress1")),
            first_name=_text(row.get("firstname")),
            last_name=_text(row.get("lastname")),
            job_title=_text(row.get("jobtitle")),
            country=_text(row.get("address1_country")),
            company=company,
            mapped={name: row.get(name) for name in columns},
        )

    def get_event(self, event_id: str) -> CrmEvent:
        """Read an event; ``webinar_id`` None means it is not an ON24 webinar.

        Args:
            event_id: msevtmgt_eventid GUID.

        Returns:
            The event.

        Raises:
            NotFoundError: no such event.
            ValueError, InvalidDataError, PermanentError, TransientError: as for ``get_row``.
        """
        row = self._client.get_row("msevtmgt_events", event_id, select=["msevtmgt_eventid", "msevtmgt_webinarid"])
        webinar_id = _text(row.get("msevtmgt_webinarid"))
        return CrmEvent(id=_guid_or(row.get("msevtmgt_eventid"), event_id), webinar_id=webinar_id)

    def get_registration(self, registration_id: str, columns: Sequence[str] = ()) -> CrmRegistration:
        """Read an event registration (and ``columns``, the mapping's, in the same read).

        Args:
            registration_id: msevtmgt_eventregistrationid GUID.

        Returns:
            The registration.

        Raises:
            NotFoundError: no such registration.
            ValueError, InvalidDataError, PermanentError, TransientError: as for ``get_row``.
        """
        row = self._client.get_row(
            "msevtmgt_eventregistrations",
            registration_id,
            select=_with(
                [
                    "msevtmgt_eventregistrationid",
                    "_msevtmgt_eventid_value",
                    "_msevtmgt_contactid_value",
                    "msevtmgt_iscanceled",
                    "statecode",
                    "msevtmgt_webinarregistrationid",
                ],
                columns,
            ),
        )
        return CrmRegistration(
            id=_guid_or(row.get("msevtmgt_eventregistrationid"), registration_id),
            event_id=_guid(row.get("_msevtmgt_eventid_value")),
            contact_id=_guid(row.get("_msevtmgt_contactid_value")),
            is_canceled=row.get("msevtmgt_iscanceled") is True,
            statecode=_int(row.get("statecode")),
            registrant_id=_text(row.get("msevtmgt_webinarregistrationid")),
            mapped={name: row.get(name) for name in columns},
        )

    def update_registration_sync(
        self,
        registration_id: str,
        *,
        registrant_id: str | None,
        synced: bool,
        publishing_state: int | None,
    ) -> None:
        """Record the ON24 outcome on a registration (update only: never creates a registration).

        Uncertain (reference §5): storing the ON24 registrant id in ``msevtmgt_webinarregistrationid`` and setting
        ``msevtmgt_syncedwithprovider`` is inferred from the column names, not documented.

        Args:
            registration_id: msevtmgt_eventregistrationid GUID.
            registrant_id: the ON24 registrant id; None clears the column.
            synced: written as ``SYNCED_WITH_PROVIDER_YES`` / ``SYNCED_WITH_PROVIDER_NO``.
            publishing_state: a ``PUBLISHING_STATE_*`` value, or None to leave the column unchanged.

        Raises:
            ValueError: unknown publishing state or malformed id (before any I/O).
            NotFoundError: the registration does not exist.
            InvalidDataError, PermanentError, TransientError: as for ``update_row``.
        """
        if publishing_state is not None and publishing_state not in PUBLISHING_STATES:
            raise ValueError(f"unknown msevtmgt_publishingstate {publishing_state}")
        if registrant_id is not None and len(registrant_id) > 100:
            raise ValueError("registrant_id is longer than the column's 100 characters")
        fields: dict[str, Any] = {
            "msevtmgt_webinarregistrationid": registrant_id,
            "msevtmgt_syncedwithprovider": SYNCED_WITH_PROVIDER_YES if synced else SYNCED_WITH_PROVIDER_NO,
        }
        if publishing_state is not None:
            fields["msevtmgt_publishingstate"] = publishing_state
        self._client.update_row("msevtmgt_eventregistrations", registration_id, fields, must_exist=True)

    def upsert_checkins(self, rows: Sequence[tuple[str, dict[str, Any]]], *, max_parallel: int = 4) -> BatchResult:
        """Upsert check-ins by id (``checkin_id``) in ``$batch`` requests; rows Dataverse refuses are reported.

        Raises:
            TransientError, ConfigError, InvalidDataError: as ``DataverseClient.batch_upsert``.
        """
        return self._client.batch_upsert(CHECKIN_SET, rows, max_parallel=max_parallel)


    def update_registrations(
        self, rows: Sequence[tuple[str, dict[str, Any]]], *, max_parallel: int = 4
    ) -> BatchResult:
        """Update columns of registrations (the org's field mapping, the no-show mark) in ``$batch`` requests;
        update only (``If-Match: *``): a registration deleted meanwhile is reported failed, never re-created.

        Raises:
            TransientError, ConfigError, InvalidDataError: as ``DataverseClient.batch_upsert``.
        """
        return self._client.batch_upsert(REGISTRATION_SET, rows, max_parallel=max_parallel, must_exist=True)


def _with(select: list[str], columns: Sequence[str]) -> list[str]:
    return select + [name for name in columns if name not in select]


def _guid_or(value: object, fallback: str) -> str:
    return _guid(value) or fallback.lower()
