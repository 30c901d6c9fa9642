"""What the privacy use cases work with (stores as protocols, the registration's own forget), their options and
the timer's report."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from shared.store.credentials import OrgRecord
from shared.store.ledger import LedgerEntry
from shared.store.parked import ParkedMessage
from shared.store.purges import PurgeRequest
from shared.store.rejected import RejectedMessage
from shared.store.sync_state import WebinarSyncState

_log = logging.getLogger(__name__)


# ---- ports ----------------------------------------------------------------------------------------------------
class LedgerPrivacy(Protocol):
    def personal_rows(
        self, org_id: str, webinar_id: str, *, after: str | None = None, updated_since: datetime | None = None
    ) -> Iterator[LedgerEntry]: ...
    def clear_personal_data(
        self, entries: Sequence[LedgerEntry], email_hash: Callable[[str | None], str | None] | None = None
    ) -> list[str]: ...
    def person_rows(
        self,
        org_id: str,
        *,
        contact_id: str | None,
        email: str | None,
        email_hash: str | None,
        updated_since: datetime | None = None,
    ) -> tuple[list[str], list[str]]: ...
    def delete_org_rows(self, org_id: str, *, limit: int) -> int: ...
    def delete_parked(self, org_id: str, *, limit: int) -> int: ...


class SyncStatePrivacy(Protocol):
    def list_all(self) -> list[WebinarSyncState]: ...
    def save(self, state: WebinarSyncState) -> WebinarSyncState | None: ...
    def delete_org_rows(self, org_id: str, *, limit: int) -> int: ...


class RejectedPrivacy(Protocol):
    def expire(self, cutoff: datetime, *, limit: int) -> tuple[int, bool]: ...
    def list_for_org(self, org_id: str) -> Iterator[RejectedMessage]: ...
    def move_legacy(self, *, limit: int) -> tuple[int, bool]: ...
    def delete(self, messages: Sequence[RejectedMessage]) -> int: ...
    def delete_org_rows(self, org_id: str, *, limit: int) -> int: ...


class ParkedLookup(Protocol):
    def for_org(self, org_id: str) -> list[ParkedMessage]: ...
    def remove(self, message: ParkedMessage) -> bool: ...


class MatchIndexPrivacy(Protocol):
    """PullMetrics' per-webinar match indexes (registrant ids and keyed email hashes)."""

    def delete(self, org_id: str, webinar_id: str) -> None: ...
    def delete_org(self, org_id: str, *, limit: int) -> int: ...


class ForgetTombstones(Protocol):
    """``shared.store.tombstones.Tombstones``: what a forget leaves so that a late register stays undone."""

    def record(
        self, org_id: str, at: datetime, *, registration_ids: Iterable[str] = (), email: str | None = None
    ) -> int: ...
    def expire(self, cutoff: datetime, *, limit: int) -> tuple[int, bool]: ...
    def delete_org_rows(self, org_id: str, *, limit: int) -> int: ...


class PurgeLog(Protocol):
    def get(self, org_id: str) -> PurgeRequest | None: ...
    def open(self, org_id: str, *, actor: str, now: datetime) -> PurgeRequest: ...
    def save(self, request: PurgeRequest) -> bool: ...
    def list(self) -> list[PurgeRequest]: ...
    def close(self, org_id: str) -> None: ...


class OrgSwitch(Protocol):
    def delete(self, org_id: str) -> OrgRecord | None: ...


class ErasureOutcome(Protocol):
    @property
    def status(self) -> str: ...

    @property
    def reason(self) -> str | None: ...


class ForgetRegistration(Protocol):
    """``shared.registration.forget_registration`` bound to the app's registration ports."""

    def __call__(
        self, org_id: str, registration_id: str, *, requested_at: datetime, reason: str, email: str | None = None
    ) -> ErasureOutcome: ...


@dataclass(frozen=True)
class PrivacyPorts:
    ledger: LedgerPrivacy
    sync: SyncStatePrivacy
    rejected: RejectedPrivacy
    parked: ParkedLookup
    purges: PurgeLog
    orgs: OrgSwitch
    forget: ForgetRegistration
    indexes: MatchIndexPrivacy
    tombstones: ForgetTombstones
    email_hash: Callable[[str | None], str | None]
    """The keyed hash retention leaves in place of a cleared email (``shared.emailhash``, purpose ``ledger``)."""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class PrivacyOptions:
    """From the settings, whose defaults are stated there."""

    grace: timedelta
    """METRICS_GRACE_DAYS: also how long a webinar the provider does not know keeps its rows' emails."""
    rejected_retention: timedelta
    """REJECTED_RETENTION_DAYS."""


# ---- reports --------------------------------------------------------------------------------------------------
@dataclass
class HousekeepingReport:
    purged: dict[str, dict[str, int]] = field(default_factory=dict)
    """org -> rows deleted this run, per part."""
    purges_closed: list[str] = field(default_factory=list)
    rejected_expired: int = 0
    tombstones_expired: int = 0
    rows_cleared: int = 0
    rows_kept: dict[str, int] = field(default_factory=dict)
    """why_kept reason -> rows that keep personal data for now."""
    webinars_cleared: int = 0
    webinars_left: int = 0
    errors: list[str] = field(default_factory=list)
    out_of_time: bool = False
