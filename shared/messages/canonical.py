"""The canonical message format (``"schema": "webinar-registration/1"``), and a CRM contact checked by the same
rules.

Decisions on the canonical format:

* Unknown keys are ignored at the top level and in ``attendee`` (forward compatibility); known keys are
  strictly typed: a string field given a number, a bool or an object is an error, never coerced.
* ``schema`` must be exactly ``webinar-registration/1``; ``action`` is ``register``, ``update`` or ``cancel``
  (lower-case, exact); ``registrationId`` and ``eventId`` are required GUIDs for every action, normalised to
  lower case without braces; ``orgId`` follows :data:`shared.ids.ORG_ID_PATTERN` and is lower-cased when it is a
  GUID, so the canonical and the Dataverse format key the same org identically.
* ``on24EventId`` (optional) is a string of digits or a JSON integer (ON24 ids are numeric and JSON producers
  emit either); it is normalised to its decimal string without leading zeros and must be positive.
* ``attendee`` is optional for every action (the caller then reads the contact from Dataverse); when present it
  must be complete: an ``email`` address (internationalized addresses included, see ``shared.emails``; its
  domain is sent in ASCII form, at most 100 characters in all) and non-empty
  ``firstName`` and ``lastName``. Names containing ``<`` or ``>`` are rejected as "not a person's name".
  Names longer than ON24's 50 characters are accepted (the ON24 client truncates); any text longer than
  1,000 characters is rejected.
* Every string is stripped of surrounding whitespace and must not contain control characters (C0/C1,
  including tab and newline inside the value), line/paragraph separators, bidirectional overrides or
  lone surrogates.
* ``occurredAt`` (optional) is ISO-8601 with an explicit offset (``Z`` or ``+hh:mm``); it is converted to UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from shared.errors import PermanentError
from shared.messages._commands import MessageError, RegistrationCommand
from shared.messages._text import (
    Guid,
    OptionalText,
    email_address,
    person_name,
    valid_occurred_at,
    valid_org_id,
    valid_webinar_id,
)
from shared.webinars import Person

CANONICAL_SCHEMA = "webinar-registration/1"
"""The only canonical schema version this app reads."""


class _CanonicalAttendee(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    email: Annotated[str, AfterValidator(email_address)]
    first_name: Annotated[str, AfterValidator(person_name)] = Field(alias="firstName")
    last_name: Annotated[str, AfterValidator(person_name)] = Field(alias="lastName")
    company: OptionalText = None
    job_title: OptionalText = Field(default=None, alias="jobTitle")
    country: OptionalText = None
    work_phone: OptionalText = Field(default=None, alias="workPhone")
    city: OptionalText = None
    state: OptionalText = None
    zip: OptionalText = None
    address_street1: OptionalText = Field(default=None, alias="addressStreet1")


class _CanonicalMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    schema_: Literal["webinar-registration/1"] = Field(alias="schema")
    org_id: Annotated[str, AfterValidator(valid_org_id)] = Field(alias="orgId")
    action: Literal["register", "update", "cancel", "forget"]
    registration_id: Guid = Field(alias="registrationId")
    event_id: Guid | None = Field(default=None, alias="eventId")

    @model_validator(mode="after")
    def _event_required(self) -> _CanonicalMessage:
        if self.event_id is None and self.action != "forget":
            raise PydanticCustomError("event_required", "eventId is required unless action is 'forget'")
        return self
    webinar_id: Annotated[str | None, BeforeValidator(valid_webinar_id)] = Field(default=None, alias="on24EventId")
    attendee: _CanonicalAttendee | None = None
    occurred_at: Annotated[datetime | None, BeforeValidator(valid_occurred_at)] = Field(
        default=None, alias="occurredAt"
    )


class _CrmContact(BaseModel):
    """A CRM contact's columns under the same text rules as a canonical attendee (names may be empty)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, hide_input_in_errors=True)

    email: Annotated[str, AfterValidator(email_address)] = Field(alias="emailaddress1")
    first_name: OptionalText = Field(default=None, alias="firstname")
    last_name: OptionalText = Field(default=None, alias="lastname")
    job_title: OptionalText = Field(default=None, alias="jobtitle")
    country: OptionalText = Field(default=None, alias="address1_country")
    account_name: OptionalText = None


def person_from_crm(
    contact_id: str,
    *,
    email: str | None,
    first_name: str | None = None,
    last_name: str | None = None,
    company: str | None = None,
    job_title: str | None = None,
    country: str | None = None,
) -> Person:
    """The person to register, from a CRM contact, checked by the rules that apply to canonical messages.

    CRM data is as untrusted as a message body: control characters (CR/LF included), format characters,
    over-long values and malformed or formula-like addresses are refused, never cleaned into something else.

    Raises:
        PermanentError: a column breaks a rule; the message names the contact and the column, not the value.
    """
    if email is None or not email.strip():
        raise PermanentError(f"contact {contact_id} has no email address (emailaddress1), which ON24 requires")
    try:
        contact = _CrmContact.model_validate(
            {
                "emailaddress1": email,
                "firstname": first_name,
                "lastname": last_name,
                "jobtitle": job_title,
                "address1_country": country,
                "account_name": company,
            }
        )
    except PydanticValidationError as exc:
        error = from_pydantic(exc.errors(include_url=False, include_input=False))
        column = "parentcustomerid (account name)" if error.field == "account_name" else error.field
        raise PermanentError(f"contact {contact_id}: {column} {error.reason}") from None
    return Person(
        email=contact.email,
        first_name=contact.first_name or "",
        last_name=contact.last_name or "",
        company=contact.account_name,
        job_title=contact.job_title,
        country=contact.country,
    )


_PYDANTIC_REASONS = {
    "missing": "is required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
}


def parse_canonical(data: dict[str, Any]) -> RegistrationCommand:
    schema = data.get("schema")
    if schema != CANONICAL_SCHEMA:
        if isinstance(schema, str) and schema.startswith("webinar-registration/"):
            raise MessageError(f"is an unsupported version; this app reads {CANONICAL_SCHEMA!r}", field="schema")
        raise MessageError(f"is not a known schema; expected {CANONICAL_SCHEMA!r}", field="schema")
    try:
        message = _CanonicalMessage.model_validate(data)
    except PydanticValidationError as exc:
        raise from_pydantic(exc.errors(include_url=False, include_input=False)) from None
    person = None
    if message.attendee is not None:
        person = Person(**message.attendee.model_dump(by_alias=False))
    return RegistrationCommand(
        org_id=message.org_id,
        action=message.action,
        registration_id=message.registration_id,
        crm_event_id=message.event_id,
        contact_id=None,
        webinar_id=message.webinar_id,
        person=person,
        occurred_at=message.occurred_at,
        source="canonical",
    )


def from_pydantic(errors: list[ErrorDetails]) -> MessageError:
    """The first validation error as a MessageError naming its field (pydantic's text never echoes input)."""
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    reason = _PYDANTIC_REASONS.get(first["type"], first["msg"])
    if first["type"] == "literal_error" and field == "action":
        reason = "must be 'register', 'update', 'cancel' or 'forget'"
    if first["type"] == "event_required":
        field, reason = "eventId", "is required unless action is 'forget'"
    if len(errors) > 1:
        reason += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return MessageError(reason, field=field)


