"""What a queue message asks for, whichever format it came in, and the error a message that cannot be read raises."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import PermanentError
from shared.http import truncate
from shared.webinars import Person

_MAX_REASON_CHARS = 400
_GUID_RE = re.compile(r"\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?")
NIL_GUID = "00000000-0000-0000-0000-000000000000"


class MessageError(PermanentError):
    """A queue message cannot be turned into a command; redelivery cannot help.

    Args:
        reason: the field's rule that is broken, never the offending value (it may hold personal data).
        field: dotted path of the offending field (``attendee.email``), when one is to blame.

    Attributes:
        reason: the sanitised reason.
        field: the field path, or None for body-level problems.
    """

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.reason = _sanitise(reason)
        self.field = _sanitise(field) if field is not None else None
        super().__init__(f"{self.field}: {self.reason}" if self.field else self.reason)


class RegistrationCommand(BaseModel):
    """What a queue message asks for, whichever format it came in.

    Attributes:
        org_id: the CRM organization (canonical ``orgId``; Dataverse ``OrganizationId``, lower-case GUID).
        action: ``register``, ``update``, ``cancel`` or ``forget`` (erase: remove the ON24 registrant and the
            personal data kept for it).
        registration_id: the ``msevtmgt_eventregistrationid``, lower-case GUID.
        crm_event_id: the ``msevtmgt_event`` id (lower-case GUID) when the message carries it.
        contact_id: the registrant's contact id (Dataverse format) when carried.
        webinar_id: the webinar id (ON24's event id, digits) when carried; otherwise looked up from the event.
        person: the person to register, when carried (canonical only); otherwise read from the contact.
        occurred_at: when the change happened (aware, UTC), when known.
        source: which format the message used.
        size_exceeded: the payload lacks the row's columns (Dataverse trimmed it, ``MessageMaxSizeExceeded``,
            or sent no Target): the caller must re-read the registration before acting.
        reason: why, when the change does not come from a person's registration (e.g. an erasure request).

    A parked message keeps its command as JSON under the names of the first release (``event_id``,
    ``on24_event_id``, ``attendee``): the aliases keep that stored format, read and written.
    """

    model_config = ConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    org_id: str
    action: Literal["register", "update", "cancel", "forget"]
    registration_id: str
    crm_event_id: str | None = Field(default=None, alias="event_id")
    contact_id: str | None = None
    webinar_id: str | None = Field(default=None, alias="on24_event_id")
    person: Person | None = Field(default=None, alias="attendee")
    occurred_at: datetime | None = None
    source: Literal["canonical", "dataverse", "admin"]
    size_exceeded: bool = False
    reason: str | None = None


class ContactErasure(BaseModel):
    """A CRM contact was deleted (Dataverse ``Delete`` of ``contact``): forget every registration of it.

    Attributes:
        org_id: the CRM organization (lower-case GUID).
        contact_id: the deleted contact (lower-case GUID).
        email: the contact's ``emailaddress1``, when the step sent a pre-image with it (registrations made from
            canonical messages are known by email only).
        occurred_at: when it was deleted (aware, UTC), when known.
    """

    model_config = ConfigDict(frozen=True)

    org_id: str
    contact_id: str
    email: str | None = None
    occurred_at: datetime | None = None


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _sanitise(text: str) -> str:
    """Escape anything unprintable and markup in a reason, and cap its length."""
    out = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    out = out.replace("<", "\\x3c").replace(">", "\\x3e")
    return truncate(out, _MAX_REASON_CHARS)


def normalise_guid(value: str) -> str | None:
    match = _GUID_RE.fullmatch(value)
    if match is None or (value.startswith("{") != value.endswith("}")):
        return None
    return match.group(1).lower()


