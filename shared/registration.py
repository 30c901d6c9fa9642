"""RegisterAttendee's use case: bring ON24 to what a registration's newest CRM change says, exactly once.

A delivery runs in four steps (the rules themselves are pure, in ``shared.registration_rules``):

1. **Read and decide** without holding anything: the org's credentials row (no row: the integration is
   off, skip), the ledger row, and, when the message does not carry them, the CRM registration, event and
   contact. A stale message or a redelivery ends here with no ON24 call. All slow work (CRM reads, opening
   the credentials, Key Vault) happens now, before any lease is taken.
2. **Claim**: one etag-guarded write takes a lease on the row and records the intent (action, ON24 event,
   email) and the target as a pending registrant, before ON24 is touched.
3. **Act**: delete every registrant the row knows may exist except the target, then create or update the
   target. Before each ON24 call the lease must outlast the call's bound plus the time an unanswered
   request may still land; otherwise it is extended (or, if another delivery took the row over, the call
   is not made). Before a second call, and before the first when reading took long, the credentials row is
   read again, so an off switch stops a change between two calls.
4. **Record**: write the outcome back to CRM, then release the row with what ON24 now holds.

Nothing else writes over a live lease: skip and failure records wait for it, or raise a transient error.
Transient faults propagate (Service Bus redelivers); permanent ones are recorded in the ledger and in CRM
(publishing state = webinar provider error) and the message completes.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, TypeVar

from shared.crm import (
    PUBLISHING_STATE_PUBLISHED,
    PUBLISHING_STATE_WEBINAR_PROVIDER_ERROR,
    Contact,
    CrmEvent,
    CrmRegistration,
)
from shared.errors import BusyError, CredentialsRejectedError, NotFoundError, PermanentError, TransientError
from shared.ids import is_webinar_id
from shared.messages import ContactErasure, RegistrationCommand, attendee_from_crm
from shared.registration_rules import (
    MAX_CLOCK_SKEW,
    PRIORITY,
    Backoff,
    NoOp,
    Rank,
    after_interruption,
    last_rank,
    message_time,
    no_op,
    plan,
    remaining_after,
)
from shared.store.credentials import OrgRecord
from shared.store.ledger import Intent, LedgerEntry, LedgerState, RegistrantRef
from shared.store.parked import ParkedMessage
from shared.webinars import Person, Registrations

_log = logging.getLogger(__name__)

OutcomeStatus = Literal[
    "registered", "updated", "cancelled", "forgotten", "duplicate", "stale", "skipped", "failed", "parked"
]
DISABLED = "integration disabled: no ON24 credentials for org"


# ---- ports ----------------------------------------------------------------------------------------------------
class CrmRegistrations(Protocol):
    def get_registration(self, registration_id: str) -> CrmRegistration: ...
    def get_event(self, event_id: str) -> CrmEvent: ...
    def get_contact(self, contact_id: str) -> Contact: ...
    def update_registration_sync(
        self, registration_id: str, *, registrant_id: str | None, synced: bool, publishing_state: int | None
    ) -> None: ...


class OrgCredentials(Protocol):
    def get(self, org_id: str) -> OrgRecord | None: ...
    def set_parking(self, org_id: str, failures: int, until: datetime | None) -> bool: ...
    def set_status(self, org_id: str, status: Literal["active", "rejected"], reason: str | None) -> bool: ...


class ParkedStore(Protocol):
    def park(self, message: ParkedMessage) -> ParkedMessage: ...


class LedgerRows(Protocol):
    def get(self, org_id: str, registration_id: str) -> LedgerEntry | None: ...
    def write(self, entry: LedgerEntry) -> LedgerEntry | None: ...
    def registrations_of(self, org_id: str, *, contact_id: str | None, email: str | None) -> list[str]: ...


@dataclass(frozen=True)
class RegistrationPorts:
    """What the use case needs, and its timing.

    A delivery that fails transiently for the ``park_after_deliveries``-th time is parked (see ``park``).

    ``provider_for`` opens the org's credentials (may raise DecryptionError); ``crm_for`` returns None when no
    Dataverse URL is known for the org. ``call_seconds`` bounds one ON24 call (retry budget plus one
    attempt's timeouts); ``linger_seconds`` is how long after we stop waiting an unanswered request may still
    be applied by ON24. The lease must outlast both, plus ``lease_margin_seconds`` for clock differences.
    """

    credentials: OrgCredentials
    ledger: LedgerRows
    provider_for: Callable[[OrgRecord], Registrations]
    crm_for: Callable[[OrgRecord], CrmRegistrations | None]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    sleep: Callable[[float], None] = time.sleep
    lease_seconds: float = 90.0
    lease_wait_seconds: float = 5.0
    call_seconds: float = 55.0
    linger_seconds: float = 10.0
    lease_margin_seconds: float = 5.0
    org_recheck_seconds: float = 1.0
    parked: ParkedStore | None = None
    """Where registrations that keep failing are parked; None: they are only ever redelivered."""
    park_after_deliveries: int = 3
    backoff: Backoff = field(default_factory=lambda: Backoff())

    def __post_init__(self) -> None:
        if self.lease_seconds < self.call_seconds + self.linger_seconds + self.lease_margin_seconds:
            raise ValueError("lease_seconds must exceed one ON24 call's bound plus the linger time and the margin")


@dataclass(frozen=True)
class Outcome:
    """What one message did, for the log line and the tests."""

    status: OutcomeStatus
    reason: str | None = None
    on24_event_id: str | None = None
    event_user_id: str | None = None
    on24_answered: bool = False
    """ON24 answered this delivery's calls (a probe of an org that was unreachable got through)."""


@dataclass(frozen=True)
class _Desired:
    """What the message says ON24 should hold: ``target`` (with the person's fields) or nothing."""

    priority: int
    target: RegistrantRef | None
    attendee: Person | None
    status: OutcomeStatus  # for a removal: cancelled or skipped
    reason: str | None
    crm_event_id: str | None
    contact_id: str | None


class _Disabled(Exception):
    """The org's credentials were removed while a change was under way."""


# ---- the use case ---------------------------------------------------------------------------------------------
def handle_registration(
    cmd: RegistrationCommand,
    ports: RegistrationPorts,
    *,
    received_at: datetime,
    delivery_count: int | None = None,
    redrive: bool = False,
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

    Raises:
        TransientError: retry later (ON24/Dataverse/storage unavailable, or another delivery holds the row).
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
    org = ports.credentials.get(cmd.org_id)
    org_read_at = time.monotonic()
    if org is None:
        return _note_skip(ports, cmd, DISABLED)
    if org.parking and not redrive and ports.parked is not None:
        return park(ports, org, cmd, received_at, declared, "ON24 or CRM did not answer the org's last attempts")
    try:
        return _apply_message(ports, org, org_read_at, cmd, at, declared)
    except BusyError:
        raise  # another delivery is at it: not an outage
    except TransientError as exc:
        if redrive or ports.parked is None or (delivery_count or 0) < ports.park_after_deliveries:
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
) -> Outcome:
    """Keep the message durably for a later attempt, and park the org's next registrations at once.

    The message then completes: an outage of hours dead-letters nothing. ``shared.parking`` re-drives parked
    messages with exponential backoff, one probe per org while it stays unreachable.
    """
    assert ports.parked is not None
    now = ports.clock()
    if org.parking:  # the org already waits for its next probe: this message joins it
        failures, next_at = org.park_failures, org.park_until or now
    else:
        failures, next_at = 1, now + ports.backoff.delay(1)
        ports.credentials.set_parking(cmd.org_id, failures, next_at)
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
            parked_at=now,
            last_error=error,
        )
    )
    return Outcome("parked", f"{error}; next attempt at {kept.next_attempt_at.isoformat()}")


def _apply_message(
    ports: RegistrationPorts, org: OrgRecord, org_read_at: float, cmd: RegistrationCommand, at: datetime, declared: Rank
) -> Outcome:
    """``handle_registration`` for an org that is enabled and not parking."""
    # A register is usually the first message of its row: the claim tries to create the row before reading it.
    entry = None if cmd.action == "register" else ports.ledger.get(cmd.org_id, cmd.registration_id)
    try:
        # Opening the credentials (Key Vault) comes first: it is slow work to do before any lease, and it
        # authenticates the org row's clear columns, the Dataverse URL among them, before anything uses them.
        on24 = ports.provider_for(org)
    except PermanentError as exc:
        return _record_failure(ports, cmd, None, declared, str(exc))
    crm = ports.crm_for(org)
    early = no_op(entry, declared, crm_known=crm is not None)
    if early is not None and entry is not None:
        return _no_op_outcome(ports, cmd, crm, entry, early)
    try:
        desired = _resolve(cmd, entry, crm, declared.priority)
    except PermanentError as exc:
        return _record_failure(ports, cmd, crm, declared, str(exc))

    if time.monotonic() - org_read_at > ports.org_recheck_seconds:
        if ports.credentials.get(cmd.org_id) is None:
            return _note_skip(ports, cmd, DISABLED)
        org_read_at = time.monotonic()
    rank = Rank(at, max(declared.priority, desired.priority))
    lease_id = uuid.uuid4().hex
    claimed = _guarded(ports, cmd, entry, lambda row: _claim(ports, row, cmd, rank, desired, lease_id, crm))
    if isinstance(claimed, _NoOp):
        return _no_op_outcome(ports, cmd, crm, claimed.entry, claimed.kind)
    if claimed.lease_id != lease_id:  # nothing in ON24 to change: the decision is recorded
        _tell_crm(cmd, crm, claimed, failed=False, removed=False)
        return Outcome(desired.status, desired.reason, claimed.on24_event_id, claimed.event_user_id)
    outcome = _act(ports, cmd, crm, on24, claimed, rank, desired, org_read_at)
    if org.status == "rejected" and outcome.on24_answered and outcome.status != "failed":
        ports.credentials.set_status(cmd.org_id, "active", None)  # ON24 accepts the credentials again
    return outcome


def forget_registration(
    org_id: str, registration_id: str, ports: RegistrationPorts, *, requested_at: datetime, reason: str
) -> Outcome:
    """Erase one registration: remove (ON24's forget) every registrant it may have in ON24, then keep only its
    ids and message order in the ledger. Ordered like a message at ``requested_at`` with the highest priority:
    older registers stay stale; a register sent later registers the person again.

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
            ),
            ports,
            received_at=received_at,
            delivery_count=delivery_count,
        ).status
        for registration_id in found
    )
    summary = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())) or "none known"
    return Outcome("forgotten", f"registrations of contact {cmd.contact_id}: {summary}")


# ---- step 1: read and decide ----------------------------------------------------------------------------------
def _resolve(
    cmd: RegistrationCommand, entry: LedgerEntry | None, crm: CrmRegistrations | None, priority: int
) -> _Desired:
    """What ON24 should hold, reading CRM only for what the message does not carry.

    A registration cancelled, deactivated or deleted in CRM, or whose contact was deleted, should hold
    nothing; so should one whose event is not (or no longer) an ON24 webinar.

    Raises:
        PermanentError: the data cannot be registered (no contact, no email, hostile values, webinar id 0).
    """
    crm_event_id = cmd.event_id or (entry.crm_event_id if entry else None)
    contact_id = cmd.contact_id or (entry.contact_id if entry else None)

    def removal(status: OutcomeStatus, reason: str | None) -> _Desired:
        return _Desired(PRIORITY["cancel"], None, None, status, reason, crm_event_id, contact_id)

    if cmd.action == "forget":
        return _Desired(PRIORITY["forget"], None, None, "forgotten", cmd.reason, crm_event_id, None)
    if cmd.action == "cancel":
        return removal("cancelled", None)
    on24_event_id, attendee = cmd.on24_event_id, cmd.attendee
    if cmd.source == "dataverse" or on24_event_id is None or attendee is None:
        if crm is None:
            raise PermanentError(
                "no Dataverse URL is configured for the org (dataverseUrl in its credentials, or DATAVERSE_URL), "
                "and the message does not carry the ON24 event id and the attendee"
            )
        if cmd.source == "dataverse" or crm_event_id is None or (attendee is None and contact_id is None):
            try:
                registration = crm.get_registration(cmd.registration_id)
            except NotFoundError:
                return removal("cancelled", "the registration no longer exists in CRM")
            crm_event_id = registration.event_id or crm_event_id
            contact_id = registration.contact_id or contact_id
            if not registration.is_active:
                return removal("cancelled", None)  # CRM's current row is the truth for Dataverse-sourced changes
        if on24_event_id is None or cmd.source == "dataverse":
            if crm_event_id is None:
                raise PermanentError("the registration has no event")
            try:
                event = crm.get_event(crm_event_id)
            except NotFoundError:
                return removal("skipped", f"event {crm_event_id} no longer exists in CRM")
            on24_event_id = _on24_event_id(event)
            if on24_event_id is None:
                return removal("skipped", f"not an ON24 webinar event (event {crm_event_id} has no ON24 webinar id)")
        if attendee is None:
            if contact_id is None:
                raise PermanentError("the registration has no contact")
            try:
                contact = crm.get_contact(contact_id)
            except NotFoundError:
                return removal("cancelled", f"contact {contact_id} no longer exists in CRM")
            attendee = attendee_from_crm(
                contact.id,
                email=contact.email,
                first_name=contact.first_name,
                last_name=contact.last_name,
                company=contact.company,
                job_title=contact.job_title,
                country=contact.country,
            )
    target = RegistrantRef(on24_event_id, attendee.email)
    return _Desired(priority, target, attendee, "registered", None, crm_event_id, contact_id)


def _on24_event_id(event: CrmEvent) -> str | None:
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


@dataclass(frozen=True)
class _NoOp:
    """A fresh read showed that the message needs no ON24 call."""

    kind: NoOp
    entry: LedgerEntry


def _no_op_outcome(
    ports: RegistrationPorts, cmd: RegistrationCommand, crm: CrmRegistrations | None, entry: LedgerEntry, kind: NoOp
) -> Outcome:
    if kind == "crm_pending":
        return _retry_crm_write(ports, cmd, crm, entry)
    reason = None
    if kind == "stale" and entry.last_message_at is not None:
        reason = f"older than the last applied message ({entry.last_message_at.isoformat()})"
    return Outcome(kind, reason, entry.on24_event_id, entry.event_user_id)


# ---- step 2: claim --------------------------------------------------------------------------------------------
def _claim(
    ports: RegistrationPorts,
    current: LedgerEntry | None,
    cmd: RegistrationCommand,
    rank: Rank,
    desired: _Desired,
    lease_id: str,
    crm: CrmRegistrations | None,
) -> LedgerEntry | _NoOp:
    """The row with this delivery's lease and intent; or, when ON24 needs no call, the recorded decision."""
    kind = no_op(current, rank, crm_known=crm is not None)
    if kind is not None and current is not None:
        return _NoOp(kind, current)
    if current is not None:
        current = after_interruption(current)  # the row is not busy: an intent left on it was never confirmed
    base = current or LedgerEntry(org_id=cmd.org_id, registration_id=cmd.registration_id)
    if plan(current, desired.target).calls == 0:
        return _decided(base, rank, desired, current=None, pending=(), status=desired.status)
    pending = base.pending
    if desired.target is not None and not any(desired.target.same(ref) for ref in base.known_registrants()):
        pending = (*pending, desired.target)
    return replace(
        base,
        pending=pending,
        intent=Intent("remove" if desired.target is None else cmd.action, desired.target, rank.at, rank.priority),
        lease_id=lease_id,
        lease_until=ports.clock() + timedelta(seconds=ports.lease_seconds),
    )


_T = TypeVar("_T")


def _guarded(
    ports: RegistrationPorts,
    cmd: RegistrationCommand,
    entry: LedgerEntry | None,
    change: Callable[[LedgerEntry | None], LedgerEntry | _T],
) -> LedgerEntry | _T:
    """Write ``change(row)`` under the row's etag, never over another delivery's live lease.

    ``entry`` is the row as last read, or None for a row assumed not to exist yet (the write then creates
    it). A busy row is re-read every 50 ms for up to ``lease_wait_seconds``; a lost race re-reads and
    decides again. ``change`` may return something other than a row to stop without writing.

    Raises:
        TransientError: the row stayed busy: Service Bus redelivers the message later.
    """
    deadline = time.monotonic() + ports.lease_wait_seconds
    current = entry
    while True:
        if current is not None and current.busy(ports.clock()):
            if time.monotonic() >= deadline:
                raise BusyError(
                    f"registration {cmd.registration_id} (org {cmd.org_id!r}) is being processed by another delivery"
                )
            ports.sleep(0.05)
            current = ports.ledger.get(cmd.org_id, cmd.registration_id)
            continue
        result = change(current)
        if not isinstance(result, LedgerEntry):
            return result
        if current is not None and current.lease_id and result.lease_id == current.lease_id:
            # An expired lease is never carried over by another delivery's write (its intent and pending stay).
            result = replace(result, lease_id=None, lease_until=None)
        written = ports.ledger.write(replace(result, etag=current.etag if current else None))
        if written is not None:
            return written
        current = ports.ledger.get(cmd.org_id, cmd.registration_id)


def _decided(
    base: LedgerEntry,
    rank: Rank,
    desired: _Desired,
    *,
    current: RegistrantRef | None,
    pending: tuple[RegistrantRef, ...],
    status: str,
    event_user_id: str | None = None,
) -> LedgerEntry:
    """The row after a decision: what ON24 holds, the message's rank, and no lease or intent."""
    if current is not None:
        state: LedgerState = "registered"
    elif desired.target is None:
        state = desired.status if desired.status in ("cancelled", "forgotten") else "skipped"
    else:
        state = "failed"
    if state == "forgotten" and not pending:  # erased: keep the ids and the message order, nothing personal
        base = replace(base, email=None, contact_id=None)
    row = replace(
        base,
        state=state,
        on24_event_id=current.on24_event_id if current else base.on24_event_id,
        email=current.email if current else base.email,
        event_user_id=event_user_id if current is not None else base.event_user_id,
        crm_event_id=desired.crm_event_id or base.crm_event_id,
        contact_id=desired.contact_id or base.contact_id,
        pending=pending,
        intent=None,
        last_outcome=f"skipped: {desired.reason}" if status == "skipped" and desired.reason else status,
        reason=desired.reason,
        crm_synced=False,
        lease_id=None,
        lease_until=None,
    )
    return _with_rank(row, rank)


def _with_rank(entry: LedgerEntry, rank: Rank) -> LedgerEntry:
    """Record ``rank`` as the newest message decided (it only ever moves forward)."""
    last = last_rank(entry)
    if last is not None and last >= rank:
        return entry
    return replace(entry, last_message_at=rank.at, last_priority=rank.priority)


# ---- step 3: act ----------------------------------------------------------------------------------------------
def _act(
    ports: RegistrationPorts,
    cmd: RegistrationCommand,
    crm: CrmRegistrations | None,
    on24: Registrations,
    leased: LedgerEntry,
    rank: Rank,
    desired: _Desired,
    org_read_at: float,
) -> Outcome:
    """Run the plan under the lease, then record its outcome (in CRM, then in the ledger)."""
    steps = plan(leased, desired.target)
    deleted: list[RegistrantRef] = []
    confirmed: str | None = None  # the registrant id the provider confirmed
    lease = leased
    calls = 0
    where: str | None = None  # the ON24 event of the call under way
    deleting: RegistrantRef | None = None  # the registrant whose delete is under way

    def before_call(ref: RegistrantRef) -> None:
        nonlocal lease, calls, org_read_at, where
        lease = _keep_lease(ports, cmd, lease)
        if calls > 0 or time.monotonic() - org_read_at > ports.org_recheck_seconds:
            if ports.credentials.get(cmd.org_id) is None:
                raise _Disabled
            org_read_at = time.monotonic()
        calls += 1
        where = ref.on24_event_id

    try:
        remove = on24.forget if desired.status == "forgotten" else on24.remove
        for ref in steps.deletes:
            before_call(ref)
            deleting = ref
            remove(ref.on24_event_id, ref.email)
            deleting = None
            deleted.append(ref)
        if steps.upsert is not None:
            person = desired.attendee
            assert person is not None
            before_call(steps.upsert)
            if steps.patch:
                try:
                    confirmed = on24.update(steps.upsert.on24_event_id, person, registration_id=cmd.registration_id)
                except NotFoundError:  # ON24 lost it (or it was forgotten): register again
                    before_call(steps.upsert)
                    confirmed = on24.register(steps.upsert.on24_event_id, person, registration_id=cmd.registration_id)
            else:
                confirmed = on24.register(steps.upsert.on24_event_id, person, registration_id=cmd.registration_id)
    except _Disabled:
        current, pending = remaining_after(leased, steps, tuple(deleted), False)
        stopped = _interrupted(lease, current, pending, failed=False)
        _release(ports, cmd, on24, lease, replace(stopped, last_outcome=f"skipped: {DISABLED}", reason=DISABLED))
        return Outcome("skipped", DISABLED, lease.on24_event_id, lease.event_user_id)
    except (PermanentError, ValueError) as exc:
        reason = f"ON24 refused the change in event {where}: {exc}"
        if isinstance(exc, CredentialsRejectedError):  # the whole org is affected: show it on the org's status
            ports.credentials.set_status(cmd.org_id, "rejected", f"ON24 rejected the org's credentials: {exc}")
        current, pending = remaining_after(leased, steps, tuple(deleted), False, unsure=deleting)
        failed = _with_rank(replace(_interrupted(lease, current, pending, failed=True), reason=reason), rank)
        failed = replace(failed, on24_event_id=failed.on24_event_id or where)  # PullMetrics finds the webinar
        failed = _release(ports, cmd, on24, lease, replace(failed, last_outcome="failed"))
        _tell_crm(cmd, crm, failed, failed=True, removed=False)
        return Outcome("failed", reason, where, lease.event_user_id, on24_answered=True)
    except BaseException:
        # Transient faults and anything unexpected: give the row back, knowing what ON24 may now hold.
        current, pending = remaining_after(leased, steps, tuple(deleted), False, unsure=deleting)
        _release(ports, cmd, on24, lease, _interrupted(lease, current, pending, failed=False), must=False)
        raise

    current, pending = remaining_after(leased, steps, tuple(deleted), confirmed is not None)
    status: OutcomeStatus = desired.status
    if desired.target is not None:
        status = "updated" if leased.current is not None else "registered"
    done = _decided(
        lease,
        rank,
        desired,
        current=current,
        pending=pending,
        status=status,
        event_user_id=confirmed,
    )
    try:
        synced = _tell_crm(cmd, crm, done, failed=False, removed=bool(deleted))
    except BaseException:
        _release(ports, cmd, on24, lease, done, must=False)
        raise
    final = _release(ports, cmd, on24, lease, replace(done, crm_synced=synced))
    return Outcome(status, desired.reason, final.on24_event_id, final.event_user_id, on24_answered=True)


def _keep_lease(ports: RegistrationPorts, cmd: RegistrationCommand, lease: LedgerEntry) -> LedgerEntry:
    """Make sure the lease outlasts the next ON24 call and its linger time; extend it when it would not.

    Raises:
        TransientError: another delivery took the row over: the call must not be made.
    """
    now = ports.clock()
    needed = timedelta(seconds=ports.call_seconds + ports.linger_seconds + ports.lease_margin_seconds)
    if lease.lease_until is not None and lease.lease_until - now >= needed:
        return lease
    extended = _write_own(ports, cmd, replace(lease, lease_until=now + timedelta(seconds=ports.lease_seconds)))
    if extended is None:
        raise TransientError(
            f"the lease on registration {cmd.registration_id} (org {cmd.org_id!r}) was taken over; no ON24 call made"
        )
    return extended


# ---- step 4: record -------------------------------------------------------------------------------------------
def _interrupted(
    lease: LedgerEntry, current: RegistrantRef | None, pending: tuple[RegistrantRef, ...], *, failed: bool
) -> LedgerEntry:
    """The row after a plan stopped part-way: ON24 holds ``current`` for sure and may hold ``pending``.

    Without a confirmed registrant a permanent failure leaves the row ``failed``; a transient stop leaves
    its state as it was, except that a registrant no longer confirmed is not ``registered`` any more.
    """
    if current is not None:
        return replace(
            lease, state="registered", on24_event_id=current.on24_event_id, email=current.email, pending=pending
        )
    state: LedgerState = "failed" if failed else ("new" if lease.state == "registered" else lease.state)
    return replace(lease, state=state, pending=pending)


def _release(
    ports: RegistrationPorts,
    cmd: RegistrationCommand,
    on24: Registrations,
    lease: LedgerEntry,
    final: LedgerEntry,
    *,
    must: bool = True,
) -> LedgerEntry:
    """Store ``final`` and drop the lease; keep the row quiet while an unanswered request may still land.

    Raises:
        TransientError: the lease was lost before the outcome was recorded (the redelivery reconciles); not
            raised when ``not must`` (on the way out of an error that is being raised anyway).
    """
    quiet_until = None
    unanswered = on24.last_unanswered_at
    if unanswered is not None:
        left = ports.linger_seconds - (time.monotonic() - unanswered)
        if left > 0:
            quiet_until = ports.clock() + timedelta(seconds=left)
    row = replace(final, intent=None, lease_until=None, quiet_until=quiet_until, lease_id=lease.lease_id)
    written = _write_own(ports, cmd, replace(row, etag=lease.etag), release=True)
    if written is None:
        if not must:
            return row
        raise TransientError(
            f"the lease on registration {cmd.registration_id} (org {cmd.org_id!r}) was lost before the outcome "
            "was recorded; the redelivery will reconcile"
        )
    return written


def _write_own(
    ports: RegistrationPorts, cmd: RegistrationCommand, entry: LedgerEntry, *, release: bool = False
) -> LedgerEntry | None:
    """Write a row this delivery holds the lease on (``release``: and drop the lease).

    A write that lost only to a metrics-hash update (the lease is still ours) is repeated on the fresh
    version. Returns None when the lease is no longer ours.
    """
    lease_id = entry.lease_id
    for _ in range(5):
        written = ports.ledger.write(replace(entry, lease_id=None) if release else entry)
        if written is not None:
            return written
        fresh = ports.ledger.get(cmd.org_id, cmd.registration_id)
        if fresh is None or fresh.lease_id != lease_id:
            return None
        entry = replace(entry, metrics_hash=fresh.metrics_hash, etag=fresh.etag)
    return None


def _tell_crm(
    cmd: RegistrationCommand, crm: CrmRegistrations | None, entry: LedgerEntry, *, failed: bool, removed: bool
) -> bool:
    """Write the ON24 outcome onto the CRM registration. False when there is no CRM to write to.

    A skip is written only when it removed a registrant (the CRM row then no longer carries its ON24 id).

    Raises:
        TransientError: CRM could not be reached (the outcome is recorded; the redelivery retries this write).
    """
    if crm is None:
        return False
    if entry.state == "forgotten":
        return True  # the person asked to be forgotten: CRM keeps (or has deleted) its own row
    if failed:
        webinar_id, synced, publishing = entry.current and entry.event_user_id, False, _PROVIDER_ERROR
    elif entry.state in ("registered", "cancelled"):
        webinar_id, synced, publishing = entry.event_user_id, True, PUBLISHING_STATE_PUBLISHED
    elif removed:
        webinar_id, synced, publishing = None, False, None
    else:
        return True
    try:
        crm.update_registration_sync(
            cmd.registration_id,
            registrant_id=webinar_id or None,
            synced=synced,
            publishing_state=publishing,
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


_PROVIDER_ERROR = PUBLISHING_STATE_WEBINAR_PROVIDER_ERROR


def _retry_crm_write(
    ports: RegistrationPorts, cmd: RegistrationCommand, crm: CrmRegistrations | None, entry: LedgerEntry
) -> Outcome:
    """A redelivery of a change whose ON24 effect is recorded but CRM was not told: only tell CRM."""
    _tell_crm(cmd, crm, entry, failed=False, removed=False)

    def change(current: LedgerEntry | None) -> LedgerEntry | None:
        same = current is not None and current.last_message_at == entry.last_message_at and current.state == entry.state
        return replace(current, crm_synced=True) if same and current is not None else None

    _guarded(ports, cmd, entry, change)
    return Outcome("duplicate", None, entry.on24_event_id, entry.event_user_id)


def _note_skip(ports: RegistrationPorts, cmd: RegistrationCommand, reason: str) -> Outcome:
    """Record a skip (the integration is off) without changing the effect state or the message order, so a
    replay after the org is switched on again is applied."""

    def change(current: LedgerEntry | None) -> LedgerEntry:
        base = current or LedgerEntry(org_id=cmd.org_id, registration_id=cmd.registration_id, state="skipped")
        return replace(base, last_outcome=f"skipped: {reason}", reason=reason)

    _guarded(ports, cmd, ports.ledger.get(cmd.org_id, cmd.registration_id), change)
    return Outcome("skipped", reason)


def _record_failure(
    ports: RegistrationPorts, cmd: RegistrationCommand, crm: CrmRegistrations | None, rank: Rank, reason: str
) -> Outcome:
    """A permanent failure found before any ON24 call: record it in the ledger, then flag CRM.

    Raises:
        TransientError: CRM could not be flagged; the redelivery finds the failure and tries again.
    """

    def change(current: LedgerEntry | None) -> LedgerEntry | _NoOp:
        kind = no_op(current, rank, crm_known=crm is not None)
        if kind is not None and current is not None:
            return _NoOp(kind, current)
        base = current or LedgerEntry(org_id=cmd.org_id, registration_id=cmd.registration_id)
        state: LedgerState = "registered" if base.state == "registered" else "failed"
        return _with_rank(replace(base, state=state, reason=reason, last_outcome="failed"), rank)

    written = _guarded(ports, cmd, ports.ledger.get(cmd.org_id, cmd.registration_id), change)
    if isinstance(written, _NoOp):
        return _no_op_outcome(ports, cmd, crm, written.entry, written.kind)
    _tell_crm(cmd, crm, written, failed=True, removed=False)
    return Outcome("failed", reason)
