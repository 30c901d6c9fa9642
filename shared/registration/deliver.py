"""A delivery from start to end: order the message, skip or park it, or read, decide, claim, act and record."""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from shared.errors import BusyError, CredentialsRejectedError, PermanentError, TransientError
from shared.fieldmap import FieldMapping
from shared.messages import ContactErasure, RegistrationCommand
from shared.registration.act import act
from shared.registration.decide import resolve
from shared.registration.forgotten import (
    address_only,
    addressable,
    forgotten_meanwhile,
    remember_forget,
    unless_forgotten,
)
from shared.registration.lease import LeaseHeld, claim, guarded
from shared.registration.ports import (
    DISABLED,
    CallPacer,
    NoOpFound,
    Outcome,
    OutcomeStatus,
    RegistrationPorts,
    Repair,
)
from shared.registration.record import no_op_outcome, note_skip, record_failure, retry_crm_write, tell_crm
from shared.registration.rules import (
    MAX_CLOCK_SKEW,
    PRIORITY,
    Rank,
    message_time,
    no_op,
)
from shared.store.credentials import OrgRecord
from shared.store.ledger import LedgerEntry
from shared.store.parked import ParkedMessage
from shared.store.tombstones import TOMBSTONE_SETTLE

_log = logging.getLogger(__name__)

REJECTED_PROBE = timedelta(hours=1)
"""How long the parked work of an org whose token ON24 refused waits for a probe, unless credentials are saved
again first (a save makes it due at once): one ON24 call an hour with a refused token, never a stream of them."""


def handle_registration(
    cmd: RegistrationCommand,
    ports: RegistrationPorts,
    *,
    received_at: datetime,
    delivery_count: int | None = None,
    redrive: bool = False,
    repair: Repair | None = None,
) -> Outcome:
    """Apply ``cmd`` (idempotently) and return what happened.

    Args:
        cmd: the parsed message.
        ports: clients, stores and timing.
        received_at: when Service Bus accepted the message: orders messages that carry no time of their own,
            and caps those whose time lies too far ahead of it.
        delivery_count: Service Bus's count of this delivery: from ``ports.park_after_deliveries`` on, a
            transient failure parks the message instead of raising.
        redrive: the message comes out of the parking (``shared.parking``): it is tried even while the org's
            registrations are being parked, and a transient failure raises for the caller to reschedule.
        repair: the command is a reconciliation's re-drive (``shared.reconcile``): see ``Repair``. It is never
            parked (the next reconciliation finds the drift again) and never re-registers a forgotten person.

    With a parking (``ports.parked``), a message of an org whose token ON24 refused (status ``rejected``) is parked
    at once, and one that ON24 refuses for the token now is parked instead of failed: not the registration's
    fault, and a credentials save re-drives it.

    A Service Bus delivery (``delivery_count`` given) that finds the row held by another delivery past the
    lease wait is parked alone until the row frees (``park_busy``): a lease orphaned by a killed worker lasts
    longer than all of the message's deliveries would.

    Raises:
        TransientError: retry later (ON24/Dataverse/storage unavailable, or another delivery holds the row).
        CredentialsRejectedError: only with ``redrive``: ON24 still refuses the org's token.
        ConfigError: the app is misconfigured; retrying after a fix will work.
    """
    at, clamped = message_time(cmd.occurred_at, received_at)
    if clamped:
        _log.warning(
            "registration %s (org %s): message time lies more than %s after its enqueue time; ordered by the "
            "enqueue time instead",
            cmd.registration_id,
            cmd.org_id,
            MAX_CLOCK_SKEW,
            extra={"org_id": cmd.org_id, "registration_id": cmd.registration_id, "clamped_time": True},
        )
    declared = Rank(at, PRIORITY[cmd.action])
    remember_forget(ports, cmd, declared)
    # A duplicate or stale message is known by its row alone: one Table read, no org row, no CRM read (issue 22).
    read = None if redrive or repair is not None else (ports.ledger.get(cmd.org_id, cmd.registration_id),)
    known = no_op(read[0], declared, crm_known=True) if read is not None and read[0] is not None else None
    if read is not None and read[0] is not None and known in ("duplicate", "stale"):
        return no_op_outcome(ports, cmd, None, read[0], known)
    org = ports.credentials.get(cmd.org_id)
    org_read_at = time.monotonic()
    if org is None:
        return note_skip(ports, cmd, DISABLED)
    if (org.parking or org.status == "rejected") and repair is not None:
        raise TransientError(f"org {cmd.org_id} is waiting for ON24 or CRM to answer again: repair deferred")
    if (org.parking or org.status == "rejected") and not redrive and ports.parked is not None:
        rejected = org.status == "rejected"
        why = "ON24 refused the org's credentials" if rejected else "ON24 or CRM did not answer the org's last attempts"
        return park(ports, org, cmd, received_at, declared, why, rejected=rejected)
    try:
        return _apply_message(ports, org, org_read_at, cmd, at, declared, read, repair)
    except LeaseHeld as exc:
        if redrive or ports.parked is None or delivery_count is None:
            raise
        return park_busy(ports, cmd, received_at, declared, exc)
    except BusyError:
        raise  # another delivery is at it: not an outage
    except CredentialsRejectedError as exc:  # raised only with a parking (see ``act``): recoverable by a save
        if redrive or repair is not None:
            raise
        reason = f"ON24 refused the org's credentials: {exc}"
        return park(ports, org, cmd, received_at, declared, reason, attempts=delivery_count or 0, rejected=True)
    except TransientError as exc:
        if redrive or repair is not None or ports.parked is None or (delivery_count or 0) < ports.park_after_deliveries:
            raise
        return park(ports, org, cmd, received_at, declared, str(exc), attempts=delivery_count or 0)


def park(
    ports: RegistrationPorts,
    org: OrgRecord,
    cmd: RegistrationCommand,
    received_at: datetime,
    rank: Rank,
    error: str,
    *,
    attempts: int = 0,
    rejected: bool = False,
) -> Outcome:
    """Keep the message durably for a later attempt, and park the org's next registrations at once.

    The message then completes: an outage of hours dead-letters nothing. ``shared.parking`` re-drives parked
    messages with exponential backoff, one probe per org while it stays unreachable; with ``rejected`` (ON24
    refused the org's token) the first probe waits ``REJECTED_PROBE``, or for the next credentials save.
    """
    assert ports.parked is not None
    now = ports.clock()
    if org.parking:  # the org already waits for its next probe: this message joins it
        failures, next_at = org.park_failures, org.park_until or now
    else:
        failures, next_at = 1, now + (REJECTED_PROBE if rejected else ports.backoff.delay(1))
        ports.credentials.set_parking(cmd.org_id, failures, next_at)
    return _keep(ports, cmd, received_at, rank, next_at, error, attempts=attempts)


def park_busy(
    ports: RegistrationPorts, cmd: RegistrationCommand, received_at: datetime, rank: Rank, busy: LeaseHeld
) -> Outcome:
    """Keep one message whose row another delivery holds, due when the row frees; the message then completes.

    Only this message waits: the org is not parking, its other registrations go on as usual. RetryParked finds
    the message by its own due time (``ParkedMessages.due_org_ids``); it keeps its rank, and a newer message
    of the same registration parked later replaces it.
    """
    return _keep(ports, cmd, received_at, rank, busy.until, str(busy))


def _keep(
    ports: RegistrationPorts,
    cmd: RegistrationCommand,
    received_at: datetime,
    rank: Rank,
    next_at: datetime,
    error: str,
    *,
    attempts: int = 0,
) -> Outcome:
    """Store the message in the parking with its rank, due at ``next_at``; the delivery completes as parked."""
    assert ports.parked is not None
    kept = ports.parked.park(
        ParkedMessage(
            org_id=cmd.org_id,
            key=cmd.registration_id,
            command=cmd.model_dump_json(),
            received_at=received_at,
            message_at=rank.at,
            priority=rank.priority,
            attempts=attempts,
            next_attempt_at=next_at,
            parked_at=ports.clock(),
            last_error=error,
        )
    )
    return Outcome("parked", f"{error}; next attempt at {kept.next_attempt_at.isoformat()}")


def _apply_message(
    ports: RegistrationPorts,
    org: OrgRecord,
    org_read_at: float,
    cmd: RegistrationCommand,
    at: datetime,
    declared: Rank,
    read: tuple[LedgerEntry | None] | None,
    repair: Repair | None = None,
) -> Outcome:
    """``handle_registration`` for an org that is enabled and not parking; ``read``: the row as read first, if."""
    if read is not None:
        entry = read[0]
    else:  # a re-drive: a register is usually the first message of its row, the claim tries to create it first
        entry = None if cmd.action == "register" else ports.ledger.get(cmd.org_id, cmd.registration_id)
    try:
        # Opening the credentials (Key Vault) comes first: it is slow work to do before any lease, and it
        # authenticates the org row's clear columns, the Dataverse URL among them, before anything uses them.
        provider = ports.provider_for(org)
    except PermanentError as exc:
        return record_failure(ports, cmd, None, declared, str(exc))
    crm = ports.crm_for(org)
    early = no_op(entry, declared, crm_known=crm is not None, again=repair is not None)
    if early is not None and entry is not None:
        return no_op_outcome(ports, cmd, crm, entry, early)
    try:
        desired = resolve(cmd, entry, crm, declared.priority, FieldMapping.from_json(org.field_mapping))
    except PermanentError as exc:
        return record_failure(ports, cmd, crm, declared, str(exc))
    checked = time.monotonic()  # before the tombstone query is sent (see ``forgotten.TOMBSTONE_SETTLE``)
    desired = unless_forgotten(ports, cmd, desired, declared, strict=repair is not None)
    entry, unreachable = addressable(cmd, entry, desired)
    if unreachable is not None:
        return record_failure(ports, cmd, crm, declared, unreachable)

    if time.monotonic() - org_read_at > ports.org_recheck_seconds:
        if ports.credentials.get(cmd.org_id) is None:
            return note_skip(ports, cmd, DISABLED)
        org_read_at = time.monotonic()
    rank = Rank(at, max(declared.priority, desired.priority))
    lease_id = uuid.uuid4().hex
    claimed = guarded(ports, cmd, entry, lambda row: claim(ports, row, cmd, rank, desired, lease_id, crm, repair))
    if isinstance(claimed, NoOpFound):
        return no_op_outcome(ports, cmd, crm, claimed.entry, claimed.kind)
    if claimed.lease_id != lease_id and desired.target is not None:  # ON24 holds this content already
        if crm is not None and not claimed.crm_settled:
            return retry_crm_write(ports, cmd, crm, claimed)
        return Outcome("duplicate", "ON24 already holds this content", claimed.webinar_id, claimed.registrant_id)
    if claimed.lease_id != lease_id:  # nothing in ON24 to change: the decision is recorded
        tell_crm(cmd, crm, claimed, failed=False, removed=False)
        return Outcome(desired.status, desired.reason, claimed.webinar_id, claimed.registrant_id)
    desired, rank = forgotten_meanwhile(ports, cmd, desired, declared, rank, checked)
    outcome = act(ports, cmd, crm, provider, claimed, rank, desired, org_read_at, pacer=_pacer(ports, org))
    if org.status == "rejected" and outcome.provider_answered and outcome.status != "failed":
        ports.credentials.set_status(cmd.org_id, "active", None)  # ON24 accepts the credentials again
    return outcome


def _pacer(ports: RegistrationPorts, org: OrgRecord) -> Callable[[str], CallPacer | None]:
    """The org's ON24 account's pacing by call kind (``registrant`` or ``forget``); None when not paced."""
    pacer_for = ports.pacer_for
    if pacer_for is None:
        return lambda _kind: None
    return lambda kind: pacer_for(org, "forget" if kind == "forget" else "registrant")


def forget_registration(
    org_id: str,
    registration_id: str,
    ports: RegistrationPorts,
    *,
    requested_at: datetime,
    reason: str,
    email: str | None = None,
) -> Outcome:
    """Erase one registration: remove (ON24's forget) every registrant it may have in ON24, then keep only its
    ids and message order in the ledger. Ordered like a message at ``requested_at`` with the highest priority:
    older registers stay stale; a register sent later registers the person again. ``email``, the address the
    erasure was given, reaches a registrant whose address retention cleared from the row.

    Raises:
        TransientError, ConfigError: as ``handle_registration``.
    """
    cmd = RegistrationCommand(
        org_id=org_id,
        action="forget",
        registration_id=registration_id,
        occurred_at=requested_at,
        source="admin",
        reason=reason,
        person=address_only(email),
    )
    return handle_registration(cmd, ports, received_at=requested_at)


def handle_contact_erasure(
    cmd: ContactErasure, ports: RegistrationPorts, *, received_at: datetime, delivery_count: int | None = None
) -> Outcome:
    """A contact deleted in CRM: forget each of its registrations (found by contact id, or by email).

    Raises:
        TransientError, ConfigError: as ``handle_registration``; the redelivery repeats the erasures still due
            (those done are duplicates by then).
    """
    at, _ = message_time(cmd.occurred_at, received_at)
    if ports.tombstones is not None and cmd.email:  # a register of this address still on its way stays undone
        ports.tombstones.record(cmd.org_id, at, email=cmd.email)
        ports.sleep(TOMBSTONE_SETTLE)  # a register that checked before it has claimed its row by now
    found = ports.ledger.registrations_of(cmd.org_id, contact_id=cmd.contact_id, email=cmd.email)
    statuses = Counter(
        handle_registration(
            RegistrationCommand(
                org_id=cmd.org_id,
                action="forget",
                registration_id=registration_id,
                contact_id=cmd.contact_id,
                occurred_at=at,
                source="dataverse",
                reason=f"contact {cmd.contact_id} was deleted in CRM",
                person=address_only(cmd.email),
            ),
            ports,
            received_at=received_at,
            delivery_count=delivery_count,
        ).status
        for registration_id in found
    )
    summary = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())) or "none known"
    # Not "forgotten" when one of them could not be: the failure or the skip is the outcome (issue 18).
    worst: OutcomeStatus = "failed" if statuses["failed"] else "skipped" if statuses["skipped"] else "forgotten"
    return Outcome(worst, f"registrations of contact {cmd.contact_id}: {summary}")
