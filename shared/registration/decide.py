"""Step 1, read and decide: what the provider should hold for a registration, reading CRM only for what the
message does not carry."""

from __future__ import annotations

import logging
from typing import Any

from shared.crm import (
    CrmEvent,
)
from shared.errors import NotFoundError, PermanentError
from shared.fieldmap import CONTACT, EMPTY, REGISTRATION, FieldMapping
from shared.ids import is_webinar_id
from shared.messages import RegistrationCommand, person_from_crm
from shared.registration.ports import CrmRegistrations, Desired, OutcomeStatus
from shared.registration.rules import (
    PRIORITY,
)
from shared.store.ledger import LedgerEntry, RegistrantRef

_log = logging.getLogger(__name__)


def resolve(
    cmd: RegistrationCommand,
    entry: LedgerEntry | None,
    crm: CrmRegistrations | None,
    priority: int,
    mapping: FieldMapping = EMPTY,
) -> Desired:
    """What ON24 should hold, reading CRM only for what the message does not carry.

    The org's field mapping (``shared.fieldmap``) adds provider fields: constants always, CRM columns from the
    registration and contact reads this message makes anyway (their ``$select`` is extended, no extra request).
    A message that carries its attendee (a canonical message) reads no contact, so contact columns are not sent.

    A registration cancelled, deactivated or deleted in CRM, or whose contact was deleted, should hold
    nothing; so should one whose event is not (or no longer) an ON24 webinar.

    Raises:
        PermanentError: the data cannot be registered (no contact, no email, hostile values, webinar id 0).
    """
    crm_event_id = cmd.crm_event_id or (entry.crm_event_id if entry else None)
    contact_id = cmd.contact_id or (entry.contact_id if entry else None)

    def removal(status: OutcomeStatus, reason: str | None) -> Desired:
        return Desired(PRIORITY["cancel"], None, None, status, reason, crm_event_id, contact_id)

    if cmd.action == "forget":
        return Desired(PRIORITY["forget"], None, None, "forgotten", cmd.reason, crm_event_id, None)
    if cmd.action == "cancel":
        return removal("cancelled", None)
    webinar_id, attendee = cmd.webinar_id, cmd.person
    mapped: dict[str, dict[str, Any] | None] = {REGISTRATION: None, CONTACT: None}
    if cmd.source == "dataverse" or webinar_id is None or attendee is None:
        if crm is None:
            raise PermanentError(
                "no Dataverse URL is configured for the org (dataverseUrl in its credentials, or DATAVERSE_URL), "
                "and the message does not carry the ON24 event id and the attendee"
            )
        if cmd.source == "dataverse" or crm_event_id is None or (attendee is None and contact_id is None):
            try:
                registration = crm.get_registration(cmd.registration_id, columns=mapping.columns_of(REGISTRATION))
            except NotFoundError:
                return removal("cancelled", "the registration no longer exists in CRM")
            mapped[REGISTRATION] = registration.mapped
            crm_event_id = registration.event_id or crm_event_id
            contact_id = registration.contact_id or contact_id
            if not registration.is_active:
                return removal("cancelled", None)  # CRM's current row is the truth for Dataverse-sourced changes
        if webinar_id is None or cmd.source == "dataverse":
            if crm_event_id is None:
                raise PermanentError("the registration has no event")
            try:
                event = crm.get_event(crm_event_id)
            except NotFoundError:
                return removal("skipped", f"event {crm_event_id} no longer exists in CRM")
            webinar_id = _webinar_id_of(event)
            if webinar_id is None:
                return removal("skipped", f"not an ON24 webinar event (event {crm_event_id} has no ON24 webinar id)")
        if attendee is None:
            if contact_id is None:
                raise PermanentError("the registration has no contact")
            try:
                contact = crm.get_contact(contact_id, columns=mapping.columns_of(CONTACT))
            except NotFoundError:
                return removal("cancelled", f"contact {contact_id} no longer exists in CRM")
            attendee = person_from_crm(
                contact.id,
                email=contact.email,
                first_name=contact.first_name,
                last_name=contact.last_name,
                company=contact.company,
                job_title=contact.job_title,
                country=contact.country,
            )
            mapped[CONTACT] = contact.mapped
    if mapping.to_provider:
        attendee = attendee.model_copy(update={"extra": mapping.provider_fields(mapped[REGISTRATION], mapped[CONTACT])})
    target = RegistrantRef(webinar_id, attendee.email)
    return Desired(priority, target, attendee, "registered", None, crm_event_id, contact_id)


def _webinar_id_of(event: CrmEvent) -> str | None:
    """The event's ON24 id; None when it is not an ON24 webinar (no id, or not a number, e.g. a Teams id).

    Raises:
        PermanentError: the id is numeric but cannot be an ON24 event (0, or more than 18 digits).
    """
    raw = (event.webinar_id or "").strip()
    if not raw or not raw.isascii() or not raw.isdigit():
        return None
    if not is_webinar_id(raw):
        raise PermanentError(f"event {event.id}: msevtmgt_webinarid is not a valid ON24 event id (a positive number)")
    return str(int(raw))
