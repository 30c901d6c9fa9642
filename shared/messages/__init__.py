"""Queue messages into commands: a Service Bus body (canonical or Dataverse format) becomes a frozen
``RegistrationCommand`` (or a ``ContactErasure``), or a ``MessageError`` naming the field at fault.

Pure: bytes and message properties in, a command out. Redelivering the same bytes cannot help a body that fails,
so the caller records the reason and completes the message (the README's *Queue messages* has the formats). Reasons
name the field path (``attendee.email``) and the rule it breaks, never the offending value: any field may hold
an email or a name, and reasons reach logs, the ledger and the status route.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from shared.ids import canonical_org_id
from shared.messages._commands import ContactErasure, MessageError, RegistrationCommand
from shared.messages._json import MAX_BODY_BYTES, load_json_object
from shared.messages._text import MAX_EMAIL_CHARS, MAX_TEXT_CHARS
from shared.messages.canonical import CANONICAL_SCHEMA, parse_canonical, person_from_crm
from shared.messages.dataverse import CONTACT_ENTITY, REGISTRATION_ENTITY, parse_dataverse, size_exceeded


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
    data = load_json_object(body, content_type)
    if "schema" in data:
        return parse_canonical(data)
    if any(key in data for key in ("MessageName", "PrimaryEntityName", "InputParameters")):
        return parse_dataverse(data, size_exceeded=size_exceeded(application_properties))
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


__all__ = [
    "CANONICAL_SCHEMA",
    "CONTACT_ENTITY",
    "MAX_BODY_BYTES",
    "MAX_EMAIL_CHARS",
    "MAX_TEXT_CHARS",
    "REGISTRATION_ENTITY",
    "ContactErasure",
    "MessageError",
    "RegistrationCommand",
    "org_id_hint",
    "parse_message",
    "person_from_crm",
]
