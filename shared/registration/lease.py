"""The ledger row under a lease: the claim that records the intent, guarded writes that never replace another
delivery's live lease, keeping the lease through the provider calls, and the release with the quiet time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TypeVar

from shared.errors import BusyError, TransientError
from shared.messages import RegistrationCommand
from shared.registration.ports import CrmRegistrations, Desired, NoOpFound, RegistrationPorts, Repair
from shared.registration.rules import (
    Rank,
    after_interruption,
    content_fingerprint,
    holds_content,
    last_rank,
    no_op,
    observed,
    planned,
)
from shared.store.ledger import Intent, LedgerEntry, LedgerState, RegistrantRef
from shared.webinars import Registrations

_log = logging.getLogger(__name__)


class LeaseHeld(BusyError):
    """The row stayed busy for the whole wait; ``until`` is when it frees at the latest (its lease, or its quiet
    time, runs out), so the message can be parked until then instead of using up Service Bus deliveries."""

    def __init__(self, message: str, *, until: datetime) -> None:
        super().__init__(message)
        self.until = until


class SlotLater(LeaseHeld):
    """ON24's call limit for the org's account leaves no slot within the delivery's wait budget: the message
    parks alone until ``until``, its slot, like a message whose row is held (issue 22)."""


def free_at(entry: LedgerEntry) -> datetime | None:
    """When a busy row frees at the latest: the end of its lease, or of its quiet time if that is later."""
    ends = [t for t in (entry.lease_until if entry.lease_id else None, entry.quiet_until) if t is not None]
    return max(ends, default=None)


# ---- step 2: claim --------------------------------------------------------------------------------------------
def claim(
    ports: RegistrationPorts,
    current: LedgerEntry | None,
    cmd: RegistrationCommand,
    rank: Rank,
    desired: Desired,
    lease_id: str,
    crm: CrmRegistrations | None,
    repair: Repair | None = None,
) -> LedgerEntry | NoOpFound:
    """The row with this delivery's lease and intent; or, when ON24 needs no call, the recorded decision.

    A message whose content ON24 already holds (``holds_content``) only moves the row's rank forward, so that
    newest-wins still holds; the row then carries no lease of this delivery, which tells the caller. A repair
    (``repair``) never trusts that: it saw ON24's list, and the row first learns what the list showed.
    """
    kind = no_op(current, rank, crm_known=crm is not None, again=repair is not None)
    if kind is not None and current is not None:
        return NoOpFound(kind, current)
    if repair is None and current is not None and holds_content(current, desired.target, desired.person):
        return with_rank(replace(current, lease_id=None, lease_until=None), rank)
    if current is not None:
        current = after_interruption(current)  # the row is not busy: an intent left on it was never confirmed
    if repair is not None:  # a reconciliation saw ON24's list: the row learns what it showed
        base_row = current or LedgerEntry(org_id=cmd.org_id, registration_id=cmd.registration_id)
        current = observed(base_row, repair.webinar_id, repair.seen)
    base = current or LedgerEntry(org_id=cmd.org_id, registration_id=cmd.registration_id)
    email = cmd.person.email if cmd.person else None
    if planned(current, desired.target, forget=desired.status == "forgotten", email=email).calls == 0:
        return decided(base, rank, desired, current=None, pending=(), status=desired.status)
    pending = base.pending
    if desired.target is not None and not any(desired.target.same(ref) for ref in base.known_registrants()):
        pending = (*pending, desired.target)
    return replace(
        base,
        pending=pending,
        intent=Intent("remove" if desired.target is None else cmd.action, desired.target, rank.at, rank.priority),
        lease_id=lease_id,
        lease_until=ports.clock() + timedelta(seconds=ports.lease_seconds),
        fingerprint=None,  # from here on, what ON24 holds is known again only when this delivery confirms it
    )


_T = TypeVar("_T")


def guarded(
    ports: RegistrationPorts,
    cmd: RegistrationCommand,
    entry: LedgerEntry | None,
    change: Callable[[LedgerEntry | None], LedgerEntry | _T],
) -> LedgerEntry | _T:
    """Write ``change(row)`` under the row's etag, never over another delivery's live lease.

    ``entry`` is the row as last read, or None for a row assumed not to exist yet (the write then creates
    it). A busy row (a live lease, or a quiet time while an unanswered request may still land) is re-read every
    50 ms for up to ``lease_wait_seconds``: its holder usually releases it within. A lost race re-reads and
    decides again. ``change`` may return something other than a row to stop without writing.

    Raises:
        LeaseHeld: the row stayed busy: the message is parked until the row frees
            (``shared.registration.deliver.park_busy``), or (without a parking) Service Bus redelivers it.
    """
    deadline = time.monotonic() + ports.lease_wait_seconds
    current = entry
    while True:
        if current is not None and current.busy(now := ports.clock()):
            if time.monotonic() >= deadline:
                until = free_at(current) or now
                raise LeaseHeld(
                    f"registration {cmd.registration_id} (org {cmd.org_id!r}) is held by another delivery, or a "
                    f"request of one may still land, until {until.isoformat()}",
                    until=until,
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


def decided(
    base: LedgerEntry,
    rank: Rank,
    desired: Desired,
    *,
    current: RegistrantRef | None,
    pending: tuple[RegistrantRef, ...],
    status: str,
    registrant_id: str | None = None,
) -> LedgerEntry:
    """The row after a decision: what ON24 holds (and the fingerprint of the content it confirmed for
    ``current``), the message's rank, and no lease or intent."""
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
        webinar_id=current.webinar_id if current else base.webinar_id,
        email=current.email if current else base.email,
        registrant_id=registrant_id if current is not None else base.registrant_id,
        crm_event_id=desired.crm_event_id or base.crm_event_id,
        contact_id=desired.contact_id or base.contact_id,
        pending=pending,
        intent=None,
        last_outcome=f"skipped: {desired.reason}" if status == "skipped" and desired.reason else status,
        reason=desired.reason,
        crm_settled=False,
        lease_id=None,
        lease_until=None,
        fingerprint=content_fingerprint(current, desired.person) if current and desired.person else None,
    )
    return with_rank(row, rank)


def with_rank(entry: LedgerEntry, rank: Rank) -> LedgerEntry:
    """Record ``rank`` as the newest message decided (it only ever moves forward)."""
    last = last_rank(entry)
    if last is not None and last >= rank:
        return entry
    return replace(entry, last_message_at=rank.at, last_priority=rank.priority)


def keep_lease(ports: RegistrationPorts, cmd: RegistrationCommand, lease: LedgerEntry) -> LedgerEntry:
    """Make sure the lease outlasts the next ON24 call and its linger time; extend it when it would not.

    Raises:
        TransientError: another delivery took the row over: the call must not be made.
    """
    now = ports.clock()
    needed = timedelta(seconds=ports.call_seconds + ports.linger_seconds + ports.lease_margin_seconds)
    if lease.lease_until is not None and lease.lease_until - now >= needed:
        return lease
    extended = write_own(ports, cmd, replace(lease, lease_until=now + timedelta(seconds=ports.lease_seconds)))
    if extended is None:
        raise TransientError(
            f"the lease on registration {cmd.registration_id} (org {cmd.org_id!r}) was taken over; no ON24 call made"
        )
    return extended


def interrupted(
    lease: LedgerEntry, current: RegistrantRef | None, pending: tuple[RegistrantRef, ...], *, failed: bool
) -> LedgerEntry:
    """The row after a plan stopped part-way: ON24 holds ``current`` for sure and may hold ``pending``.

    Without a confirmed registrant a permanent failure leaves the row ``failed``; a transient stop leaves
    its state as it was, except that a registrant no longer confirmed is not ``registered`` any more.
    """
    if current is not None:
        return replace(lease, state="registered", webinar_id=current.webinar_id, email=current.email, pending=pending)
    state: LedgerState = "failed" if failed else ("new" if lease.state == "registered" else lease.state)
    return replace(lease, state=state, pending=pending)


def release(
    ports: RegistrationPorts,
    cmd: RegistrationCommand,
    provider: Registrations,
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
    unanswered = provider.last_unanswered_at
    if unanswered is not None:
        left = ports.linger_seconds - (time.monotonic() - unanswered)
        if left > 0:
            quiet_until = ports.clock() + timedelta(seconds=left)
    row = replace(final, intent=None, lease_until=None, quiet_until=quiet_until, lease_id=lease.lease_id)
    written = write_own(ports, cmd, replace(row, etag=lease.etag), release=True)
    if written is None:
        if not must:
            return row
        raise TransientError(
            f"the lease on registration {cmd.registration_id} (org {cmd.org_id!r}) was lost before the outcome "
            "was recorded; the redelivery will reconcile"
        )
    return written


def write_own(
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
