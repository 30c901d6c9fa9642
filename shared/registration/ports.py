"""What RegisterAttendee works with: its ports (clients and stores as protocols), its timing, and its outcomes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from shared.crm import (
    Contact,
    CrmEvent,
    CrmRegistration,
)
from shared.registration.rules import (
    Backoff,
    NoOp,
)
from shared.store.credentials import OrgRecord
from shared.store.ledger import LedgerEntry, RegistrantRef
from shared.store.parked import ParkedMessage
from shared.webinars import Person, Registrations

_log = logging.getLogger(__name__)


OutcomeStatus = Literal[
    "registered", "updated", "cancelled", "forgotten", "duplicate", "stale", "skipped", "failed", "parked"
]
DISABLED = "integration disabled: no ON24 credentials for org"


# ---- ports ----------------------------------------------------------------------------------------------------
class CrmRegistrations(Protocol):
    def get_registration(self, registration_id: str, columns: Sequence[str] = ()) -> CrmRegistration: ...
    def get_event(self, event_id: str) -> CrmEvent: ...
    def get_contact(self, contact_id: str, columns: Sequence[str] = ()) -> Contact: ...
    def update_registration_sync(
        self, registration_id: str, *, registrant_id: str | None, synced: bool, publishing_state: int | None
    ) -> None: ...


class OrgCredentials(Protocol):
    def get(self, org_id: str) -> OrgRecord | None: ...
    def set_parking(self, org_id: str, failures: int, until: datetime | None) -> bool: ...
    def set_status(self, org_id: str, status: Literal["active", "rejected"], reason: str | None) -> bool: ...


class ParkedStore(Protocol):
    def park(self, message: ParkedMessage) -> ParkedMessage: ...


class ForgetTombstones(Protocol):
    """``shared.store.tombstones.Tombstones``: forgets by registration id and keyed email hash (issue 18)."""

    def record(
        self, org_id: str, at: datetime, *, registration_ids: Iterable[str] = (), email: str | None = None
    ) -> int: ...
    def forgotten_at(self, org_id: str, registration_id: str, email: str | None) -> datetime | None: ...


class CallPacer(Protocol):
    """``shared.store.pacing.SharedRateLimiter``: one ON24 account's calls of one kind, across instances."""

    def acquire_within(self, budget: float) -> float: ...


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
    tombstones: ForgetTombstones | None = None
    """Forgets a late register must not undo (``shared.registration.forgotten``); None: not checked."""
    pacer_for: Callable[[OrgRecord, Literal["registrant", "forget"]], CallPacer] | None = None
    """Paces the org's ON24 account's registrant writes or forgets across instances; None: not paced."""
    pace_wait_seconds: float = 10.0
    """How long one delivery waits for its ON24 slot; a later slot parks the message until then."""
    pace_until: float | None = None
    """RetryParked's run: its calls may wait for their slots until this ``time.monotonic()``, its run's end, so
    that one run re-drives at the account's limit instead of one window's worth a period; None: not a run."""

    def __post_init__(self) -> None:
        if self.lease_seconds < self.call_seconds + self.linger_seconds + self.lease_margin_seconds:
            raise ValueError("lease_seconds must exceed one ON24 call's bound plus the linger time and the margin")


@dataclass(frozen=True)
class Repair:
    """A reconciliation's re-drive of a registration (``shared.reconcile``), with what it saw in ON24.

    ``seen`` are the registrants of ``webinar_id``'s list that carry this registration's id. With a repair, a
    message ranked equal to the last decided one is applied again (ON24 drifted from that decision), the row
    learns what the list showed (``rules.observed``), and a forget tombstone of any rank keeps the person out.
    """

    webinar_id: str
    seen: tuple[RegistrantRef, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What one message did, for the log line and the tests."""

    status: OutcomeStatus
    reason: str | None = None
    webinar_id: str | None = None
    registrant_id: str | None = None
    provider_answered: bool = False
    """ON24 answered this delivery's calls (a probe of an org that was unreachable got through)."""


@dataclass(frozen=True)
class Desired:
    """What the message says ON24 should hold: ``target`` (with the person's fields) or nothing."""

    priority: int
    target: RegistrantRef | None
    person: Person | None
    status: OutcomeStatus  # for a removal: cancelled or skipped
    reason: str | None
    crm_event_id: str | None
    contact_id: str | None


class Disabled(Exception):
    """The org's credentials were removed while a change was under way."""


@dataclass(frozen=True)
class NoOpFound:
    """A fresh read showed that the message needs no ON24 call."""

    kind: NoOp
    entry: LedgerEntry
