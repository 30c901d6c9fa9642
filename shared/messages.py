"""Parse a Service Bus queue message into a :class:`RegistrationCommand`.

Two body formats arrive on the registrations queue (design.md, "Message formats on the queue"):

* **canonical** ``{"schema": "webinar-registration/1", "orgId", "action", "registrationId", "eventId",
  "on24EventId"?, "attendee"?, "occurredAt"?}``, written by our own tools and by anyone who integrates with us;
* **Dataverse** ``RemoteExecutionContext`` JSON posted by a Dataverse service endpoint for Create/Update of
  ``msevtmgt_eventregistration`` (reference/dataverse-service-bus-message.md).

Everything here is pure: bytes and message properties in, a frozen command out. Whatever is wrong with a
body raises :class:`MessageError` (a :class:`~shared.errors.PermanentError`): redelivering the same bytes
cannot help, so the caller records the reason and completes the message. Reasons name the field path
(``attendee.email``) and never echo more than a short ``repr()`` of the offending value, with ``<``/``>``
escaped, so control characters and markup in hostile input stay inert in logs and in the ledger.

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
  must be complete: a syntactically valid ``email`` (ASCII, at most 100 characters) and non-empty
  ``firstName`` and ``lastName``. Names containing ``<`` or ``>`` are rejected as "not a person's name".
  Names longer than ON24's 50 characters are accepted (the ON24 client truncates); any text longer than
  1,000 characters is rejected.
* Every string is stripped of surrounding whitespace and must not contain control characters (C0/C1,
  including tab and newline inside the value), line/paragraph separators, bidirectional overrides or
  lone surrogates.
* ``occurredAt`` (optional) is ISO-8601 with an explicit offset (``Z`` or ``+hh:mm``); it is converted to UTC.

Decisions on the JSON layer: the body must be UTF-8 (a BOM is tolerated), at most 256 KiB, a JSON object;
``NaN``/``Infinity`` literals and nesting too deep to parse are errors; duplicate keys keep the last value
(Python's ``json`` behaviour; nothing else parses these bodies, so there is no parser disagreement to exploit).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from shared.errors import PermanentError
from shared.ids import canonical_org_id, is_org_id, is_webinar_id
from shared.webinars import Person

CANONICAL_SCHEMA = "webinar-registration/1"
"""The only canonical schema version this app reads."""

MAX_BODY_BYTES = 256 * 1024
"""Largest body accepted (Service Bus standard tier maximum; Dataverse trims its own at 192 KB)."""

MAX_TEXT_CHARS = 1000
"""Longest string accepted in any text field; anything longer is not a plausible attendee value."""

MAX_EMAIL_CHARS = 100
"""ON24's limit for ``email``."""

REGISTRATION_ENTITY = "msevtmgt_eventregistration"
"""The Dataverse table whose Create, Update and Delete messages are handled."""

CONTACT_ENTITY = "contact"
"""The Dataverse table whose Delete messages are handled (erasure of a person)."""

_PREVIEW_CHARS = 60
_MAX_INT_DIGITS = 64
_MAX_REASON_CHARS = 400
_JSON_MEDIA_TYPE = "application/json"
_SIZE_EXCEEDED_PROPERTY = "messagemaxsizeexceeded"
_FALSY_STRINGS = frozenset({"", "0", "false", "no", "off", "none", "null"})

_GUID_RE = re.compile(r"\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?")
_NIL_GUID = "00000000-0000-0000-0000-000000000000"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    rf"@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?"
)
_DOTNET_DATE_RE = re.compile(r"/Date\((-?[0-9]{1,15})(?:[+-][0-9]{4})?\)/")
# Characters that are never part of a legitimate value: bidi embeddings/overrides/isolates, marks, BOM.
_FORBIDDEN_FORMAT_CHARS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
# ON24 exports registrants to spreadsheets: an address starting with one of these would be a formula there.
_FORMULA_STARTS = frozenset("=+-")


class MessageError(PermanentError):
    """A queue message cannot be turned into a command; redelivery cannot help.

    Args:
        reason: what is wrong, without the offending value (or only a :func:`preview` of it).
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
        event_id: the ``msevtmgt_event`` id (lower-case GUID) when the message carries it.
        contact_id: the registrant's contact id (Dataverse format) when carried.
        on24_event_id: the ON24 event id (digits) when carried; otherwise looked up from the event.
        attendee: the person, when carried (canonical only); otherwise read from the contact.
        occurred_at: when the change happened (aware, UTC), when known.
        source: which format the message used.
        size_exceeded: the payload lacks the row's columns (Dataverse trimmed it, ``MessageMaxSizeExceeded``,
            or sent no Target): the caller must re-read the registration before acting.
        reason: why, when the change does not come from a person's registration (e.g. an erasure request).
    """

    model_config = ConfigDict(frozen=True)

    org_id: str
    action: Literal["register", "update", "cancel", "forget"]
    registration_id: str
    event_id: str | None = None
    contact_id: str | None = None
    on24_event_id: str | None = None
    attendee: Person | None = None
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


def parse_message(
    body: bytes,
    *,
    content_type: str | None = None,
    application_properties: Mapping[str, object] | None = None,
) -> RegistrationCommand | ContactErasure:
    """Parse a queue message body in either supported format.

    Args:
        body: the raw message body (``msg.get_body()``).
        content_type: the message's ``ContentType``; ``application/json`` (parameters allowed), None or empty.
        application_properties: the message's application (user) properties; only
            ``MessageMaxSizeExceeded`` (bare or with a claims prefix) is read.

    Returns:
        The command the message carries: a registration change, or the erasure of a deleted contact.

    Raises:
        MessageError: the body is too large, not UTF-8 JSON, not a known format, or a field is invalid.
        TypeError: ``body`` is not bytes (a programming error, not a bad message).
    """
    data = _load_json_object(body, content_type)
    if "schema" in data:
        return _parse_canonical(data)
    if any(key in data for key in ("MessageName", "PrimaryEntityName", "InputParameters")):
        return _parse_dataverse(data, size_exceeded=_size_exceeded(application_properties))
    raise MessageError(
        "unrecognised message format: expected a canonical message with "
        f'"schema": "{CANONICAL_SCHEMA}" or a Dataverse RemoteExecutionContext'
    )


def org_id_hint(body: bytes) -> str | None:
    """The org a body that could not be parsed seems to belong to (``orgId`` or ``OrganizationId``), if any.

    Best effort, for filing a rejected body under its org (so that a purge of the org removes it too): never
    raises, and returns None for anything that is not a JSON object naming a well-formed org id.
    """
    try:
        data = json.loads(bytes(body).decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    for key in ("orgId", "OrganizationId"):
        value = data.get(key)
        if isinstance(value, str):
            found = canonical_org_id(value.strip().strip("{}"))
            if found is not None:
                return found
    return None


def preview(value: object) -> str:
    """A short, inert rendering of an untrusted value for error messages.

    Args:
        value: anything taken from a message.

    Returns:
        ``repr()`` of at most 60 characters of it (``...`` appended when cut), with ``<`` and ``>`` escaped.
    """
    if isinstance(value, str):
        text = repr(value[:_PREVIEW_CHARS]) + ("..." if len(value) > _PREVIEW_CHARS else "")
    elif value is None or isinstance(value, bool | int | float):
        text = repr(value)[:_PREVIEW_CHARS]
    else:
        text = f"a JSON {_json_type(value)}"
    return text.replace("<", "\\x3c").replace(">", "\\x3e")


# --- body --------------------------------------------------------------------------------------------


def _load_json_object(body: bytes, content_type: str | None) -> dict[str, Any]:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError(f"body must be bytes, not {type(body).__name__}")
    _check_content_type(content_type)
    size = len(body) if not isinstance(body, memoryview) else body.nbytes
    if size > MAX_BODY_BYTES:
        raise MessageError(f"body is {size} bytes; the maximum is {MAX_BODY_BYTES} bytes")
    raw = bytes(body)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw[:4]:
        raise MessageError("body looks like UTF-16/UTF-32; messages must be UTF-8 JSON")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MessageError(f"body is not valid UTF-8 (bad byte at offset {exc.start})") from None
    stripped = text.strip()
    if not stripped:
        raise MessageError("body is empty")
    if stripped.startswith("<"):
        raise MessageError("body is XML, not JSON: the Dataverse service endpoint must use the JSON message format")
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
    except RecursionError:
        raise MessageError("body is not valid JSON: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise MessageError(f"body is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:  # raised by our hooks, with our own text
        raise MessageError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MessageError(f"body must be a JSON object, not a JSON {_json_type(data)}")
    return data


def _check_content_type(content_type: str | None) -> None:
    if content_type is None or not content_type.strip():
        return
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() != _JSON_MEDIA_TYPE:
        raise MessageError(
            f"content type {preview(media_type.strip())} is not supported: "
            "the service endpoint must use the JSON message format (application/json)"
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in {"utf-8", "utf8"}:
            raise MessageError(f"charset {preview(value.strip())} is not supported: messages must be UTF-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _parse_int(literal: str) -> int:
    if len(literal) > _MAX_INT_DIGITS:
        raise ValueError(f"an integer literal has more than {_MAX_INT_DIGITS} digits")
    return int(literal)


def _json_type(value: object) -> str:
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
    return out if len(out) <= _MAX_REASON_CHARS else out[: _MAX_REASON_CHARS - 3] + "..."


# --- canonical format -----------------------------------------------------------------------------------


def _text_problem(value: str) -> str | None:
    """Why a (stripped) string is unacceptable, or None."""
    for index, ch in enumerate(value):
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES or ch in _FORBIDDEN_FORMAT_CHARS:
            return f"contains disallowed character U+{ord(ch):04X} (control, format or surrogate) at position {index}"
    return None


def _clean_text(value: str) -> str:
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


def _optional_text(value: str | None) -> str | None:
    if value is None:
        return None
    value = _clean_text(value)
    return value or None


def _required_text(value: str) -> str:
    value = _clean_text(value)
    if not value:
        raise PydanticCustomError("empty", "must not be empty")
    return value


def _person_name(value: str) -> str:
    value = _required_text(value)
    if "<" in value or ">" in value:
        raise PydanticCustomError("not_a_name", "contains angle brackets: not a person's name")
    return value


def _email(value: str) -> str:
    value = _required_text(value)
    if len(value) > MAX_EMAIL_CHARS:
        raise PydanticCustomError(
            "too_long",
            "is {length} characters; the maximum is {maximum}",
            {"length": len(value), "maximum": MAX_EMAIL_CHARS},
        )
    # The address itself never goes into the reason: reasons reach logs and the ledger.
    if not _EMAIL_RE.fullmatch(value):
        raise PydanticCustomError("email", "is not a valid email address")
    if value[0] in _FORMULA_STARTS:
        raise PydanticCustomError("email", "starts with a spreadsheet formula character (= + -)")
    return value


def _guid_or_error(value: str) -> str:
    value = _clean_text(value)
    guid = _normalise_guid(value)
    if guid is None:
        raise PydanticCustomError("guid", "must be a GUID, not {value}", {"value": preview(value)})
    if guid == _NIL_GUID:
        raise PydanticCustomError("guid", "must not be the nil GUID")
    return guid


def _org_id(value: str) -> str:
    value = _clean_text(value)
    if not is_org_id(value):
        raise PydanticCustomError(
            "org_id",
            "must be 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit, not {value}",
            {"value": preview(value)},
        )
    return _normalise_guid(value) or value


def _on24_event_id(value: object) -> object:
    """Before-validator: accept digits as a string or a positive JSON integer; return the decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        digits = str(value)
    elif isinstance(value, str):
        digits = _clean_text(value)
    elif value is None:
        return None
    else:
        raise PydanticCustomError("on24_event_id_type", "must be a string of digits or an integer")
    if not is_webinar_id(digits):
        raise PydanticCustomError(
            "on24_event_id", "must be a positive number of up to 18 digits, not {value}", {"value": preview(value)}
        )
    return str(int(digits))


def _occurred_at(value: object) -> object:
    """Before-validator: an ISO-8601 string becomes an aware UTC datetime; other types are an error."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", "must be an ISO-8601 date-time string")
    return _iso_datetime(value)


def _iso_datetime(value: str) -> datetime:
    value = _clean_text(value)
    if len(value) > 64:
        raise PydanticCustomError("datetime", "is not an ISO-8601 date-time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError(
            "datetime", "is not an ISO-8601 date-time: {value}", {"value": preview(value)}
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise PydanticCustomError("datetime", "must carry a UTC offset ('Z' or '+hh:mm')")
    return parsed.astimezone(UTC)


_OptionalText = Annotated[str | None, AfterValidator(_optional_text)]
_Guid = Annotated[str, AfterValidator(_guid_or_error)]


class _CanonicalAttendee(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    email: Annotated[str, AfterValidator(_email)]
    first_name: Annotated[str, AfterValidator(_person_name)] = Field(alias="firstName")
    last_name: Annotated[str, AfterValidator(_person_name)] = Field(alias="lastName")
    company: _OptionalText = None
    job_title: _OptionalText = Field(default=None, alias="jobTitle")
    country: _OptionalText = None
    work_phone: _OptionalText = Field(default=None, alias="workPhone")
    city: _OptionalText = None
    state: _OptionalText = None
    zip: _OptionalText = None
    address_street1: _OptionalText = Field(default=None, alias="addressStreet1")


class _CanonicalMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    schema_: Literal["webinar-registration/1"] = Field(alias="schema")
    org_id: Annotated[str, AfterValidator(_org_id)] = Field(alias="orgId")
    action: Literal["register", "update", "cancel", "forget"]
    registration_id: _Guid = Field(alias="registrationId")
    event_id: _Guid | None = Field(default=None, alias="eventId")

    @model_validator(mode="after")
    def _event_required(self) -> _CanonicalMessage:
        if self.event_id is None and self.action != "forget":
            raise PydanticCustomError("event_required", "eventId is required unless action is 'forget'")
        return self
    on24_event_id: Annotated[str | None, BeforeValidator(_on24_event_id)] = Field(default=None, alias="on24EventId")
    attendee: _CanonicalAttendee | None = None
    occurred_at: Annotated[datetime | None, BeforeValidator(_occurred_at)] = Field(default=None, alias="occurredAt")


class _CrmContact(BaseModel):
    """A CRM contact's columns under the same text rules as a canonical attendee (names may be empty)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, hide_input_in_errors=True)

    emailaddress1: Annotated[str, AfterValidator(_email)]
    firstname: _OptionalText = None
    lastname: _OptionalText = None
    jobtitle: _OptionalText = None
    address1_country: _OptionalText = None
    account_name: _OptionalText = None


def attendee_from_crm(
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
        error = _from_pydantic(exc.errors(include_url=False, include_input=False))
        column = "parentcustomerid (account name)" if error.field == "account_name" else error.field
        raise PermanentError(f"contact {contact_id}: {column} {error.reason}") from None
    return Person(
        email=contact.emailaddress1,
        first_name=contact.firstname or "",
        last_name=contact.lastname or "",
        company=contact.account_name,
        job_title=contact.jobtitle,
        country=contact.address1_country,
    )


_PYDANTIC_REASONS = {
    "missing": "is required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
}


def _parse_canonical(data: dict[str, Any]) -> RegistrationCommand:
    schema = data.get("schema")
    if schema != CANONICAL_SCHEMA:
        if isinstance(schema, str) and schema.startswith("webinar-registration/"):
            raise MessageError(
                f"unsupported version {preview(schema)}; this app reads {CANONICAL_SCHEMA!r}", field="schema"
            )
        raise MessageError(f"unknown schema {preview(schema)}; expected {CANONICAL_SCHEMA!r}", field="schema")
    try:
        message = _CanonicalMessage.model_validate(data)
    except PydanticValidationError as exc:
        raise _from_pydantic(exc.errors(include_url=False, include_input=False)) from None
    attendee = None
    if message.attendee is not None:
        attendee = Person(**message.attendee.model_dump(by_alias=False))
    return RegistrationCommand(
        org_id=message.org_id,
        action=message.action,
        registration_id=message.registration_id,
        event_id=message.event_id,
        contact_id=None,
        on24_event_id=message.on24_event_id,
        attendee=attendee,
        occurred_at=message.occurred_at,
        source="canonical",
    )


def _from_pydantic(errors: list[ErrorDetails]) -> MessageError:
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


# --- Dataverse RemoteExecutionContext -------------------------------------------------------------------


def _size_exceeded(properties: Mapping[str, object] | None) -> bool:
    """True when an application property ``MessageMaxSizeExceeded`` (bare or prefixed) is truthy."""
    if not properties:
        return False
    for key, value in properties.items():
        if not isinstance(key, str):
            continue
        name = key.rstrip("/").rsplit("/", 1)[-1].lower()
        if name == _SIZE_EXCEEDED_PROPERTY and _truthy(value):
            return True
    return False


def _truthy(value: object) -> bool:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        return value.strip().lower() not in _FALSY_STRINGS
    return bool(value)


def _parse_dataverse(data: dict[str, Any], *, size_exceeded: bool) -> RegistrationCommand | ContactErasure:
    message_name = _dv_string(data, "MessageName")
    entity_name = _dv_string(data, "PrimaryEntityName")
    if message_name.lower() == "delete" and entity_name.lower() in {REGISTRATION_ENTITY, CONTACT_ENTITY}:
        return _parse_dataverse_delete(data, entity_name.lower())
    if entity_name.lower() != REGISTRATION_ENTITY or message_name.lower() not in {"create", "update"}:
        raise MessageError(
            f"Dataverse message {preview(message_name)} on entity {preview(entity_name)} is not handled: "
            f"only Create, Update and Delete of {REGISTRATION_ENTITY}, and Delete of {CONTACT_ENTITY}"
        )
    is_create = message_name.lower() == "create"
    org_id = _dv_guid(data.get("OrganizationId"), "OrganizationId")
    if org_id is None:
        raise MessageError("is required (a GUID)", field="OrganizationId")

    inputs = _key_values(data.get("InputParameters"), "InputParameters")
    target = inputs.get("Target")
    target_attrs: dict[str, Any] = {}
    target_id = None
    if target is not None:
        if not isinstance(target, dict):
            raise MessageError(
                f"must be an Entity object, not a JSON {_json_type(target)}", field="InputParameters.Target"
            )
        logical_name = target.get("LogicalName")
        if logical_name is not None and (
            not isinstance(logical_name, str) or logical_name.lower() != entity_name.lower()
        ):
            raise MessageError(
                f"is {preview(logical_name)}, not {REGISTRATION_ENTITY}", field="InputParameters.Target.LogicalName"
            )
        target_id = _dv_guid(target.get("Id"), "InputParameters.Target.Id", allow_nil=True)
        target_attrs = _key_values(target.get("Attributes"), "InputParameters.Target.Attributes")
    else:
        size_exceeded = True  # nothing tells us the row's state: the caller must re-read it

    primary_id = _dv_guid(data.get("PrimaryEntityId"), "PrimaryEntityId", allow_nil=True)
    if primary_id is not None and target_id is not None and primary_id != target_id:
        raise MessageError("names a different row than InputParameters.Target.Id", field="PrimaryEntityId")
    registration_id = primary_id or target_id
    if registration_id is None:
        raise MessageError("is required (the registration's GUID)", field="PrimaryEntityId")

    columns: dict[str, Any] = {}
    columns.update(_image_attributes(data.get("PreEntityImages"), "PreEntityImages"))
    columns.update(_image_attributes(data.get("PostEntityImages"), "PostEntityImages"))
    columns.update(target_attrs)

    cancelled = _is_cancelled(columns)
    if is_create:
        action: Literal["register", "update", "cancel"] = "cancel" if cancelled else "register"
    else:
        action = "cancel" if cancelled else "update"

    occurred_at = _dv_date(data.get("OperationCreatedOn"), "OperationCreatedOn")
    for column in ("modifiedon", "createdon"):
        if occurred_at is None:
            occurred_at = _dv_date(columns.get(column), f"Attributes.{column}")

    return RegistrationCommand(
        org_id=org_id,
        action=action,
        registration_id=registration_id,
        event_id=_dv_reference_id(columns.get("msevtmgt_eventid"), "Attributes.msevtmgt_eventid"),
        contact_id=_dv_reference_id(columns.get("msevtmgt_contactid"), "Attributes.msevtmgt_contactid"),
        on24_event_id=None,
        attendee=None,
        occurred_at=occurred_at,
        source="dataverse",
        size_exceeded=size_exceeded,
    )


def _parse_dataverse_delete(data: dict[str, Any], entity: str) -> RegistrationCommand | ContactErasure:
    """A deleted registration is forgotten; a deleted contact has every registration of it forgotten.

    Delete's ``Target`` is an EntityReference (no attributes); ``PrimaryEntityId`` names the row.
    """
    org_id = _dv_guid(data.get("OrganizationId"), "OrganizationId")
    if org_id is None:
        raise MessageError("is required (a GUID)", field="OrganizationId")
    target = _key_values(data.get("InputParameters"), "InputParameters").get("Target")
    target_id = _dv_reference_id(target, "InputParameters.Target") if target is not None else None
    primary_id = _dv_guid(data.get("PrimaryEntityId"), "PrimaryEntityId", allow_nil=True)
    if primary_id is not None and target_id is not None and primary_id != target_id:
        raise MessageError("names a different row than InputParameters.Target.Id", field="PrimaryEntityId")
    row_id = primary_id or target_id
    if row_id is None:
        raise MessageError("is required (the deleted row's GUID)", field="PrimaryEntityId")
    occurred_at = _dv_date(data.get("OperationCreatedOn"), "OperationCreatedOn")
    if entity == CONTACT_ENTITY:
        email = _image_attributes(data.get("PreEntityImages"), "PreEntityImages").get("emailaddress1")
        try:
            email = _email(email) if isinstance(email, str) else None
        except PydanticCustomError:
            email = None  # a malformed address cannot have been registered
        return ContactErasure(org_id=org_id, contact_id=row_id, email=email, occurred_at=occurred_at)
    return RegistrationCommand(
        org_id=org_id, action="forget", registration_id=row_id, occurred_at=occurred_at, source="dataverse"
    )


def _dv_string(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        raise MessageError("is required", field=key)
    if not isinstance(value, str):
        raise MessageError(f"must be a string, not a JSON {_json_type(value)}", field=key)
    return value.strip()


def _normalise_guid(value: str) -> str | None:
    match = _GUID_RE.fullmatch(value)
    if match is None or (value.startswith("{") != value.endswith("}")):
        return None
    return match.group(1).lower()


def _dv_guid(value: object, field: str, *, allow_nil: bool = False) -> str | None:
    """A Dataverse GUID (bare string) normalised to lower case; None when absent (or nil, if allowed)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageError(f"must be a GUID string, not a JSON {_json_type(value)}", field=field)
    guid = _normalise_guid(value.strip())
    if guid is None:
        raise MessageError(f"must be a GUID, not {preview(value)}", field=field)
    if guid == _NIL_GUID:
        if allow_nil:
            return None
        raise MessageError("must not be the nil GUID", field=field)
    return guid


def _key_values(value: object, field: str) -> dict[str, Any]:
    """A DataContract dictionary (``[{"key": k, "value": v}, ...]``) as a dict; null or absent is empty."""
    if value is None:
        return {}
    if isinstance(value, dict):  # tolerate a plain object, should a newer serializer write one
        return value
    if not isinstance(value, list):
        raise MessageError(f"must be an array of key/value pairs, not a JSON {_json_type(value)}", field=field)
    result: dict[str, Any] = {}
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise MessageError('must be an object with a string "key"', field=f"{field}[{index}]")
        result[item["key"]] = item.get("value")
    return result


def _image_attributes(value: object, field: str) -> dict[str, Any]:
    """The attributes of every image in a PreEntityImages/PostEntityImages collection, merged in order."""
    merged: dict[str, Any] = {}
    for alias, image in _key_values(value, field).items():
        if image is None:
            continue
        if not isinstance(image, dict):
            raise MessageError(f"must be an Entity object, not a JSON {_json_type(image)}", field=f"{field}.{alias}")
        merged.update(_key_values(image.get("Attributes"), f"{field}.{alias}.Attributes"))
    return merged


def _unwrap(value: object) -> object:
    """The plain value of an OptionSetValue/Money (``{"Value": n}``); anything else unchanged."""
    if isinstance(value, dict) and "Value" in value and "Id" not in value:
        return value["Value"]
    return value


def _is_cancelled(columns: Mapping[str, Any]) -> bool:
    if _unwrap(columns.get("msevtmgt_iscanceled")) is True:
        return True
    statecode = _unwrap(columns.get("statecode"))
    return isinstance(statecode, int) and not isinstance(statecode, bool) and statecode == 1


def _dv_reference_id(value: object, field: str) -> str | None:
    """The id of an EntityReference value (a bare GUID string is tolerated); None when absent or cleared."""
    if value is None:
        return None
    if isinstance(value, dict):
        return _dv_guid(value.get("Id"), f"{field}.Id", allow_nil=True)
    if isinstance(value, str):
        return _dv_guid(value, field, allow_nil=True)
    raise MessageError(f"must be an EntityReference, not a JSON {_json_type(value)}", field=field)


def _dv_date(value: object, field: str) -> datetime | None:
    r"""A ``\/Date(ms[+-hhmm])\/`` value (or ISO-8601 with offset) as an aware UTC datetime; None when absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageError(f"must be a date string, not a JSON {_json_type(value)}", field=field)
    match = _DOTNET_DATE_RE.fullmatch(value.strip())
    if match is not None:
        try:  # the +hhmm suffix only marks local kind: the milliseconds are UTC
            return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(match.group(1)))
        except OverflowError:
            raise MessageError(f"is out of range: {preview(value)}", field=field) from None
    try:
        return _iso_datetime(value)
    except PydanticCustomError:
        raise MessageError(
            f"must be /Date(ms)/ or ISO-8601 with an offset, not {preview(value)}", field=field
        ) from None


__all__ = [
    "CANONICAL_SCHEMA",
    "MAX_BODY_BYTES",
    "ContactErasure",
    "MessageError",
    "RegistrationCommand",
    "attendee_from_crm",
    "org_id_hint",
    "parse_message",
    "preview",
]
