"""RegisterAttendee's use case: apply one registration command to ON24 exactly once, then tell CRM.

The ledger row of (org, registration) decides what a delivery does:

* a message older than the last applied one is *stale* and changes nothing (ordering by message time);
* a register/cancel whose effect is already recorded is a *duplicate* and changes nothing;
* anything else takes a short lease on the row, makes its ON24 call, writes the ON24 id back to CRM, and
  records the outcome while dropping the lease, all guarded by the row's etag.

Transient faults propagate (Service Bus redelivers); permanent ones are recorded in the ledger and in
CRM (publishing state = webinar provider error) and the message completes.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from shared.dataverse import (
    PUBLISHING_STATE_PUBLISHED,
    PUBLISHING_STATE_WEBINAR_PROVIDER_ERROR,
    Contact,
    CrmEvent,
    CrmRegistration,
)
from shared.errors import NotFoundError, PermanentError, TransientError
from shared.ids import ON24_EVENT_ID_PATTERN
from shared.messages import Attendee, RegistrationCommand
from shared.on24 import Registrant, RegistrantFields
from shared.store.credentials import OrgRecord
from shared.store.ledger import LedgerEntry

_log = logging.getLogger(__name__)

OutcomeStatus = Literal["registered", "updated", "cancelled", "duplicate", "stale", "skipped", "failed"]


# ---- ports ----------------------------------------------------------------------------------------------------
class On24Registrations(Protocol):
    def create_registrant(self, event_id: int | str, registrant: RegistrantFields) -> Registrant: ...
    def update_registrant(self, event_id: int | str, registrant: RegistrantFields) -> Registrant: ...
    def delete_registrant(self, event_id: int | str, email: str) -> None: ...


class CrmRegistrations(Protocol):
    def get_registration(self, registration_id: str) -> CrmRegistration: ...
    def get_event(self, event_id: str) -> CrmEvent: ...
    def get_contact(self, contact_id: str) -> Contact: ...
    def update_registration_sync(
        self, registration_id: str, *, webinar_registration_id: str | None, synced: bool, publishing_state: int | None
    ) -> None: ...


class OrgCredentials(Protocol):
    def get(self, org_id: str) -> OrgRecord | None: ...


class LedgerRows(Protocol):
    def get(self, org_id: str, registration_id: str) -> LedgerEntry | None: ...
    def write(self, entry: LedgerEntry) -> LedgerEntry | None: ...


@dataclass(frozen=True)
class RegistrationPorts:
    """What the use case needs. ``on24_for`` opens the org's credentials (may raise DecryptionError);
    ``crm_for`` returns None when no Dataverse URL is known for the org."""

    credentials: OrgCredentials
    ledger: LedgerRows
    on24_for: Callable[[OrgRecord], On24Registrations]
    crm_for: Callable[[OrgRecord], CrmRegistrations | None]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    sleep: Callable[[float], None] = time.sleep
    lease_seconds: float = 90.0
    lease_wait_seconds: float = 5.0


@dataclass(frozen=True)
class Outcome:
    """What one message did, for the log line and the tests."""

    status: OutcomeStatus
    reason: str | None = None
    on24_event_id: str | None = None
    event_user_id: str | None = None


@dataclass(frozen=True)
class _Target:
    """The resolved inputs of an effect: where to register whom."""

    action: Literal["register", "update", "cancel"]
    on24_event_id: str | None
    attendee: Attendee | None
    crm_event_id: str | None
    contact_id: str | None


class _Skip(Exception):
    """Not an error: the registration is outside the integration (e.g. not an ON24 webinar)."""


# ---- the use case ---------------------------------------------------------------------------------------------
def handle_registration(cmd: RegistrationCommand, ports: RegistrationPorts, *, received_at: datetime) -> Outcome:
    """Apply ``cmd`` (idempotently) and return what happened.

    Args:
        cmd: the parsed message.
        ports: clients and stores.
        received_at: when Service Bus accepted the message; orders messages that carry no time of their own.

    Raises:
        TransientError: retry later (ON24/Dataverse/storage unavailable, or another delivery holds the lease).
        ConfigError: the app is misconfigured; retrying after a fix will work.
    """
    message_at = cmd.occurred_at or received_at
    org = ports.credentials.get(cmd.org_id)
    if org is None:
        return _note(ports, cmd, message_at, Outcome("skipped", "integration disabled: no ON24 credentials for org"))

    entry = ports.ledger.get(cmd.org_id, cmd.registration_id)
    crm = ports.crm_for(org)
    early = _already_done(entry, cmd.action, message_at, crm is not None)
    if early is not None:
        return early

    try:
        target = _resolve(cmd, entry, crm)
    except _Skip as skip:
        return _note(ports, cmd, message_at, Outcome("skipped", str(skip)))
    except PermanentError as exc:
        return _fail_without_lease(ports, cmd, crm, entry, message_at, str(exc))

    leased = _acquire(ports, cmd, entry, target.action, message_at, uuid.uuid4().hex, crm is not None)
    if isinstance(leased, Outcome):
        return leased
    return _apply(ports, org, crm, cmd, target, leased, message_at)


def _already_done(entry: LedgerEntry | None, action: str, message_at: datetime, crm_known: bool) -> Outcome | None:
    """The no-op answers that need no lease: stale messages and recorded duplicates."""
    if entry is None:
        return None
    if entry.last_message_at is not None and message_at < entry.last_message_at:
        return Outcome(
            "stale",
            f"older than the last applied message ({entry.last_message_at.isoformat()})",
            entry.on24_event_id,
            entry.event_user_id,
        )
    crm_pending = crm_known and not entry.crm_synced and entry.state in ("registered", "cancelled")
    same_update_again = action == "update" and entry.state == "registered" and message_at == entry.last_message_at
    if not crm_pending and (
        (action == "register" and entry.state == "registered")
        or (action == "cancel" and entry.state == "cancelled")
        or same_update_again  # a redelivery of the update already applied (same message time)
    ):
        return Outcome("duplicate", None, entry.on24_event_id, entry.event_user_id)
    return None


def _resolve(cmd: RegistrationCommand, entry: LedgerEntry | None, crm: CrmRegistrations | None) -> _Target:
    """Find the ON24 event and the person, reading CRM only for what the message does not carry."""
    action = cmd.action
    on24_event_id, attendee = cmd.on24_event_id, cmd.attendee
    crm_event_id, contact_id = cmd.event_id, cmd.contact_id
    if action == "cancel" and entry is not None and entry.on24_event_id and entry.email:
        return _Target("cancel", entry.on24_event_id, None, entry.crm_event_id, entry.contact_id)
    needs_crm = cmd.source == "dataverse" or on24_event_id is None or (attendee is None and action != "cancel")
    if needs_crm:
        if crm is None:
            raise PermanentError(
                "no Dataverse URL is configured for the org (dataverseUrl in its credentials, or DATAVERSE_URL), "
                "and the message does not carry the ON24 event id and the attendee"
            )
        if cmd.source == "dataverse" or crm_event_id is None or (attendee is None and contact_id is None):
            registration = crm.get_registration(cmd.registration_id)
            crm_event_id = crm_event_id or registration.event_id
            contact_id = contact_id or registration.contact_id
            if not registration.is_active:
                action = "cancel"  # CRM's current row is the truth for Dataverse-sourced changes
        if on24_event_id is None:
            if crm_event_id is None:
                raise PermanentError("the registration has no event")
            event = crm.get_event(crm_event_id)
            if not event.is_webinar or not ON24_EVENT_ID_PATTERN.fullmatch(event.webinar_id or ""):
                raise _Skip(f"not an ON24 webinar event (event {crm_event_id} has no numeric msevtmgt_webinarid)")
            on24_event_id = event.webinar_id
        if attendee is None and action != "cancel":
            if contact_id is None:
                raise PermanentError("the registration has no contact")
            attendee = _attendee_from_contact(crm.get_contact(contact_id))
    return _Target(action, on24_event_id, attendee, crm_event_id, contact_id)


def _attendee_from_contact(contact: Contact) -> Attendee:
    if not contact.email:
        raise PermanentError(f"contact {contact.id} has no email address (emailaddress1), which ON24 requires")
    return Attendee(
        email=contact.email,
        first_name=contact.first_name or "",
        last_name=contact.last_name or "",
        company=contact.company,
        job_title=contact.job_title,
        country=contact.country,
    )


def _acquire(
    ports: RegistrationPorts,
    cmd: RegistrationCommand,
    entry: LedgerEntry | None,
    action: str,
    message_at: datetime,
    lease_id: str,
    crm_known: bool,
) -> LedgerEntry | Outcome:
    """Take the row's lease (creating the row if needed), starting from the row as ``entry`` read it; after a
    lost race or while another delivery holds the lease, re-read and re-check for no-ops."""
    deadline = time.monotonic() + ports.lease_wait_seconds
    fresh = False
    while True:
        if fresh:
            entry = ports.ledger.get(cmd.org_id, cmd.registration_id)
        fresh = True
        early = _already_done(entry, action, message_at, crm_known)
        if early is not None:
            return early
        now = ports.clock()
        if entry is not None and entry.leased_by_other(lease_id, now):
            if time.monotonic() >= deadline:
                raise TransientError(
                    f"registration {cmd.registration_id} (org {cmd.org_id!r}) is being processed by another delivery"
                )
            ports.sleep(0.1)
            continue
        base = entry or LedgerEntry(org_id=cmd.org_id, registration_id=cmd.registration_id)
        leased = ports.ledger.write(
            replace(base, lease_id=lease_id, lease_until=now + timedelta(seconds=ports.lease_seconds))
        )
        if leased is not None:
            return leased


def _apply(
    ports: RegistrationPorts,
    org: OrgRecord,
    crm: CrmRegistrations | None,
    cmd: RegistrationCommand,
    target: _Target,
    entry: LedgerEntry,
    message_at: datetime,
) -> Outcome:
    done = replace(
        entry,
        lease_id=None,
        lease_until=None,
        last_message_at=max(message_at, entry.last_message_at or message_at),
        crm_event_id=target.crm_event_id or entry.crm_event_id,
        contact_id=target.contact_id or entry.contact_id,
        reason=None,
    )
    try:
        on24 = ports.on24_for(org)
        if target.action == "cancel":
            status: OutcomeStatus = "cancelled"
            if entry.state == "registered" and entry.on24_event_id and entry.email:
                on24.delete_registrant(entry.on24_event_id, entry.email)
            done = replace(done, state="cancelled")
        else:
            assert target.attendee is not None and target.on24_event_id is not None
            registrant = _apply_registration(on24, entry, target.on24_event_id, target.attendee, cmd.registration_id)
            status = "updated" if entry.state == "registered" else "registered"
            done = replace(
                done,
                state="registered",
                on24_event_id=target.on24_event_id,
                event_user_id=registrant.eventuserid,
                email=target.attendee.email,
            )
    except PermanentError as exc:
        reason = f"ON24 refused {target.action} in event {target.on24_event_id}: {exc}"
        done = replace(done, state="failed" if entry.state != "registered" else entry.state, reason=reason)
        _sync_crm(crm, cmd, done, failed=True)
        _release(ports, replace(done, last_outcome="failed", crm_synced=crm is not None))
        return Outcome("failed", reason, target.on24_event_id, entry.event_user_id)
    except TransientError:
        # Drop the lease so the redelivery need not wait for it to expire; the effect will be retried.
        _release(ports, replace(entry, lease_id=None, lease_until=None), quiet=True)
        raise

    try:
        synced = _sync_crm(crm, cmd, done, failed=False)
    except TransientError:
        _release(ports, replace(done, last_outcome=status, crm_synced=False))
        raise
    final = _release(ports, replace(done, last_outcome=status, crm_synced=synced))
    return Outcome(status, None, final.on24_event_id, final.event_user_id)


def _apply_registration(
    on24: On24Registrations, entry: LedgerEntry, event_id: str, attendee: Attendee, registration_id: str
) -> Registrant:
    """Create, update, or move the ON24 registrant so it matches ``attendee`` in ``event_id``."""
    fields = RegistrantFields(
        email=attendee.email,
        firstname=attendee.first_name or None,
        lastname=attendee.last_name or None,
        company=attendee.company,
        jobtitle=attendee.job_title,
        country=attendee.country,
        workphone=attendee.work_phone,
        city=attendee.city,
        state=attendee.state,
        zip=attendee.zip,
        addressstreet1=attendee.address_street1,
        exteventusercd=registration_id,
    )
    if entry.state == "registered" and entry.on24_event_id and entry.email:
        moved = entry.on24_event_id != event_id or entry.email.casefold() != attendee.email.casefold()
        if not moved:
            try:
                return on24.update_registrant(event_id, fields)
            except NotFoundError:
                pass  # ON24 lost it (or it was forgotten): register again below
        else:
            # ON24 keys registrants by email within an event: a new address or event means a new registrant.
            on24.delete_registrant(entry.on24_event_id, entry.email)
    return on24.create_registrant(event_id, fields)


def _sync_crm(crm: CrmRegistrations | None, cmd: RegistrationCommand, entry: LedgerEntry, *, failed: bool) -> bool:
    """Write the ON24 outcome onto the CRM registration. False when there is no CRM to write to."""
    if crm is None:
        return False
    try:
        crm.update_registration_sync(
            cmd.registration_id,
            webinar_registration_id=entry.event_user_id,
            synced=not failed and entry.state in ("registered", "cancelled"),
            publishing_state=PUBLISHING_STATE_WEBINAR_PROVIDER_ERROR if failed else PUBLISHING_STATE_PUBLISHED,
        )
    except NotFoundError:
        _log.warning(
            "CRM registration %s (org %s) no longer exists; ON24 outcome not written back",
            cmd.registration_id,
            cmd.org_id,
            extra={"org_id": cmd.org_id, "registration_id": cmd.registration_id},
        )
    except PermanentError as exc:
        _log.error(
            "CRM refused the ON24 outcome of registration %s (org %s): %s",
            cmd.registration_id,
            cmd.org_id,
            exc,
            extra={"org_id": cmd.org_id, "registration_id": cmd.registration_id},
        )
    return True


def _release(ports: RegistrationPorts, entry: LedgerEntry, *, quiet: bool = False) -> LedgerEntry:
    written = ports.ledger.write(entry)
    if written is None:
        if quiet:
            return entry
        raise TransientError(
            f"the lease on registration {entry.registration_id} (org {entry.org_id!r}) expired before the outcome "
            "was recorded; the redelivery will reconcile"
        )
    return written


def _note(ports: RegistrationPorts, cmd: RegistrationCommand, message_at: datetime, outcome: Outcome) -> Outcome:
    """Record a skip in the ledger without touching the effect state (retried on etag races)."""
    for _ in range(5):
        entry = ports.ledger.get(cmd.org_id, cmd.registration_id)
        base = entry or LedgerEntry(org_id=cmd.org_id, registration_id=cmd.registration_id, state="skipped")
        last = max(message_at, base.last_message_at) if base.last_message_at else message_at
        if (
            ports.ledger.write(
                replace(
                    base,
                    last_outcome=f"{outcome.status}: {outcome.reason}",
                    reason=outcome.reason,
                    last_message_at=last,
                )
            )
            is not None
        ):
            return outcome
    raise TransientError(f"could not record the outcome of registration {cmd.registration_id}: too many races")


def _fail_without_lease(
    ports: RegistrationPorts,
    cmd: RegistrationCommand,
    crm: CrmRegistrations | None,
    entry: LedgerEntry | None,
    message_at: datetime,
    reason: str,
) -> Outcome:
    """A permanent failure found before any ON24 call: record it in the ledger and CRM."""
    failed = Outcome("failed", reason)
    for _ in range(5):
        current = ports.ledger.get(cmd.org_id, cmd.registration_id) if entry is None else entry
        base = current or LedgerEntry(org_id=cmd.org_id, registration_id=cmd.registration_id)
        state = base.state if base.state == "registered" else "failed"
        written = ports.ledger.write(
            replace(base, state=state, reason=reason, last_outcome="failed", last_message_at=message_at)
        )
        if written is not None:
            try:
                _sync_crm(crm, cmd, written, failed=True)
            except TransientError:
                _log.warning("could not flag registration %s in CRM (will not retry)", cmd.registration_id)
            return failed
        entry = None
    raise TransientError(f"could not record the failure of registration {cmd.registration_id}: too many races")
