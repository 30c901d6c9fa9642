"""Forget tombstones in a delivery (issue 18): a register or update ranked before a forget of its registration, or
of its person's address, never reaches ON24, wherever it comes from (late, parked, replayed from dead letters).

The check runs once the delivery knows the address (after reading CRM) and before it claims the row; a message
ranked after the forget registers the person as usual. The tombstones themselves are kept by
``shared.store.tombstones``; a forget message leaves one by registration id before anything else.

The race with an erasure that runs at the same time: the erasure writes its tombstone, then looks for the
person's rows; the register checks the tombstones, then claims its row. If the register checked before the
tombstone was written and claimed after the erasure looked, neither would see the other. So the erasure waits
``TOMBSTONE_SETTLE`` between its two steps, and a register whose check and claim took longer than that checks
the tombstones once more under its lease (``forgotten_meanwhile``): one of the two always sees the other.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from shared.messages import RegistrationCommand
from shared.registration.ports import Desired, RegistrationPorts
from shared.registration.rules import PRIORITY, Rank
from shared.store.ledger import LedgerEntry
from shared.store.tombstones import TOMBSTONE_SETTLE
from shared.webinars import Person

_log = logging.getLogger(__name__)


def remember_forget(ports: RegistrationPorts, cmd: RegistrationCommand, rank: Rank) -> None:
    """A forget message leaves a tombstone by registration id at its rank (also when it is parked or skipped).

    Raises:
        TransientError: storage unavailable (the message is redelivered).
    """
    if ports.tombstones is not None and cmd.action == "forget":
        ports.tombstones.record(cmd.org_id, rank.at, registration_ids=[cmd.registration_id])


def unless_forgotten(
    ports: RegistrationPorts, cmd: RegistrationCommand, desired: Desired, rank: Rank, *, strict: bool = False
) -> Desired:
    """``desired``; or, when a forget ranked after this message (``strict``, a reconciliation's repair: any
    forget at all), a forget of the registration instead.

    Raises:
        TransientError: storage or Key Vault unavailable (the message is redelivered).
        ConfigError: the pinned hash key can no longer be read (see ``shared.emailhash``).
    """
    if ports.tombstones is None or desired.target is None:
        return desired
    email = desired.person.email if desired.person is not None else desired.target.email
    forgotten_at = ports.tombstones.forgotten_at(cmd.org_id, cmd.registration_id, email)
    if forgotten_at is None or (not strict and rank > Rank(forgotten_at, PRIORITY["forget"])):
        return desired
    _log.info(
        "registration %s (org %s): its person was forgotten by an erasure ranked after this %s; not registered",
        cmd.registration_id,
        cmd.org_id,
        cmd.action,
        extra={"org_id": cmd.org_id, "registration_id": cmd.registration_id, "tombstone": forgotten_at.isoformat()},
    )
    reason = (
        f"the person was forgotten by an erasure at {forgotten_at.isoformat()}, after this {cmd.action}; "
        "only a change made after the erasure registers them again"
    )
    return Desired(PRIORITY["forget"], None, None, "forgotten", reason, desired.crm_event_id, None)


def forgotten_meanwhile(
    ports: RegistrationPorts, cmd: RegistrationCommand, desired: Desired, declared: Rank, rank: Rank, checked: float
) -> tuple[Desired, Rank]:
    """After the claim: the check again when it lies more than ``TOMBSTONE_SETTLE`` back (see the module
    docstring); a forget found now removes what the claim recorded (ON24 answers a forget of nobody as done)."""
    if desired.target is None or time.monotonic() - checked < TOMBSTONE_SETTLE:
        return desired, rank
    again = unless_forgotten(ports, cmd, desired, declared)
    return again, Rank(rank.at, max(rank.priority, again.priority))


def address_only(email: str | None) -> Person | None:
    """A forget's carrier of the address it was given (route body, contact pre-image): it registers nobody."""
    return Person(email=email, first_name="", last_name="") if email else None


def addressable(
    cmd: RegistrationCommand, entry: LedgerEntry | None, desired: Desired
) -> tuple[LedgerEntry | None, str | None]:
    """For a removal: the row to plan from, and why ON24 cannot be reached (None: it can).

    ON24 removes and forgets registrants by address. When retention cleared the address of a row whose registrant
    ON24 still holds, a forget uses the address it was given; without one, the removal cannot reach ON24, and
    says so (a recorded failure, on the status route) instead of reporting ``cancelled`` or ``forgotten``.
    """
    if desired.target is not None or entry is None or entry.state != "registered" or entry.email:
        return entry, None
    if not entry.webinar_id:
        return entry, None
    given = cmd.person.email if cmd.person is not None else None
    if given:
        return replace(entry, email=given), None
    done = "forgotten" if cmd.action == "forget" else "removed"
    return entry, (
        f"ON24 registrant {entry.registrant_id or '(id unknown)'} in event {entry.webinar_id} cannot be {done}: "
        f"retention cleared the address ON24 needs and this {cmd.action} did not carry it; forget the person "
        "through the admin forget route, which is given the address"
    )
