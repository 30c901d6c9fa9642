"""From attendance rows to CRM check-ins: matching, the check-in's columns, its hash, and the batched writer.

An attendee is matched to a CRM registration by the external id this app sent (the CRM registration id), then by
the provider's registrant id, then by email within the webinar. Each matched registration's check-in is upserted at
``shared.crm.checkin_id(org, registration)``; a hash of its columns is kept in the webinar's match index
(``shared.metrics.index``) and an unchanged row is not sent again.

**The hash is versioned.** Changing what goes into a check-in (a new column, another rounding) changes every hash,
so every check-in in window is written again once: do it only on purpose, by bumping ``METRICS_HASH_VERSION``
(and saying so in the release notes). Version 1 is stored without a prefix (what every existing ledger row and
index holds); later versions carry theirs (``"2:…"``), so a row hashed under another version never compares equal.
``tests/unit/test_metrics_plan.py`` pins the hash of a known row: it fails when the inputs change without a bump.

Version 2 (issue 21): the hash covers the check-in's columns, the registration columns the org's field mapping
writes, and the mapping's fingerprint. An org without a mapping gets the same check-in columns as under version 1,
written once more (in ``$batch``) because the hash changed; an org that changes its mapping gets its check-ins
rewritten once under the new one. The match index's page marks carry the same version (``index_version``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from shared.crm import CheckIn, checkin_id
from shared.dataverse import BatchResult
from shared.fieldmap import EMPTY, FieldMapping
from shared.metrics.index import MATCHABLE, IndexRow
from shared.store.sync_state import COUNTERS
from shared.webinars import AttendanceRow

_log = logging.getLogger(__name__)

METRICS_HASH_VERSION: Final = 2
"""Version of the check-in hash's inputs (see the module docstring before changing ``checkin_fields``)."""


def index_version(mapping: FieldMapping) -> int | str:
    """The match index's hash version: the hash version, and the mapping's fingerprint when there is one (page
    marks recorded under another mapping are dropped, so every page is read and written once under this one)."""
    return f"{METRICS_HASH_VERSION}:{mapping.fingerprint}" if mapping else METRICS_HASH_VERSION



class Registration(Protocol):
    """What a check-in needs of the registration it belongs to (an index row or a ledger row)."""

    @property
    def registration_id(self) -> str: ...
    @property
    def crm_event_id(self) -> str | None: ...
    @property
    def contact_id(self) -> str | None: ...


def checkin_fields(entry: Registration, row: AttendanceRow, mapping: FieldMapping = EMPTY) -> dict[str, Any]:
    """The check-in columns for one attendee (an event check-in linked to registration, event and contact).

    Viewing duration = live + on-demand minutes. "Number of interactions" = questions asked + polls answered (both
    are the attendee acting in the webinar). Check-in time = first activity; check-out time = last activity.
    These standard columns keep this meaning; the org's mapping adds its own check-in columns beside them.
    """
    fields = CheckIn(
        registration_id=entry.registration_id,
        crm_event_id=entry.crm_event_id,
        contact_id=entry.contact_id,
        viewing_minutes=row.live_minutes + row.on_demand_minutes,
        interactions=row.questions + row.polls,
        checked_in_at=row.first_activity,
        checked_out_at=row.last_activity,
    ).fields()
    if mapping.to_crm:
        fields.update(mapping.crm_values(row)[0])
    return fields


def metrics_hash(fields: dict[str, Any], registration: dict[str, Any] | None = None, fingerprint: str = "") -> str:
    """The hash of what one attendee's row writes (check-in columns, mapped registration columns, the mapping's
    fingerprint) under ``METRICS_HASH_VERSION``."""
    inputs = [fields, registration or {}, fingerprint]
    text = json.dumps(inputs, sort_keys=True, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    return f"{METRICS_HASH_VERSION}:{digest}"


class Matcher:
    """Finds the registration of an attendee: by the registration id sent, then the registrant id, then email.

    Works on the webinar's match index (``shared.metrics.index``): emails are compared as keyed hashes.
    """

    def __init__(self, email_key: Callable[[str | None], str | None], rows: Iterable[IndexRow]) -> None:
        self._email_key = email_key
        self.by_registration: dict[str, IndexRow] = {}
        self._by_user: dict[str, str] = {}
        self._by_email: dict[str, str] = {}
        for row in rows:
            if row.state not in MATCHABLE:
                continue
            reg = row.registration_id
            self.by_registration[reg] = row
            if row.registrant_id:
                self._by_user[row.registrant_id] = reg
            if row.email_key:
                self._by_email[row.email_key] = reg

    def match(self, row: AttendanceRow) -> IndexRow | None:
        reg = (row.registration_id or "").strip().lower()
        if reg in self.by_registration:
            return self.by_registration[reg]
        by_user = self._by_user.get(row.registrant_id or "")
        if by_user:
            return self.by_registration[by_user]
        key = self._email_key(row.email)
        by_email = self._by_email.get(key) if key else None
        return self.by_registration[by_email] if by_email else None


class CheckinSink(Protocol):
    def upsert_checkins(self, rows: Sequence[tuple[str, dict[str, Any]]], *, max_parallel: int = 4) -> BatchResult: ...
    def update_registrations(
        self, rows: Sequence[tuple[str, dict[str, Any]]], *, max_parallel: int = 4
    ) -> BatchResult: ...


class HashStore(Protocol):
    def set_metrics_hashes(self, org_id: str, hashes: dict[str, str]) -> None: ...


@dataclass
class CheckinWriter:
    """Collects the check-ins of one webinar's pull and writes them in batches; keeps the pull's counts.

    A batch that fails is not sent again by this pull (its rows' hashes are not recorded, so the next pull
    re-reads and rewrites them); rows Dataverse refused are counted as ``failed``.
    """

    org_id: str
    webinar_id: str
    crm: CheckinSink
    hashes: HashStore
    matcher: Matcher
    max_parallel: int
    mapping: FieldMapping = EMPTY
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    _pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    _registrations: dict[str, dict[str, Any]] = field(default_factory=dict)  # check-in id -> mapped columns
    _hashes: dict[str, tuple[str, str]] = field(default_factory=dict)  # check-in id -> (registration id, hash)

    @property
    def pending(self) -> int:
        """Check-ins collected and not written yet."""
        return len(self._pending)

    def take(self, rows: Sequence[AttendanceRow]) -> tuple[list[str], int]:
        """Match each row; collect the check-ins whose columns changed since they were last written.

        Returns the registrations matched and how many rows matched none.
        """
        matched: list[str] = []
        unmatched = 0
        for row in rows:
            self.counts["pulled"] += 1
            entry = self.matcher.match(row)
            if entry is None:
                self.counts["unmatched"] += 1
                unmatched += 1
                continue
            self.counts["matched"] += 1
            matched.append(entry.registration_id)
            fields = checkin_fields(entry, row, self.mapping)
            registration = self.mapping.crm_values(row)[1] if self.mapping.to_crm else {}
            digest = metrics_hash(fields, registration, self.mapping.fingerprint)
            if digest == entry.metrics_hash:
                self.counts["unchanged"] += 1
                continue
            cid = checkin_id(self.org_id, entry.registration_id)
            self._pending[cid] = fields
            if registration:
                self._registrations[cid] = registration
            self._hashes[cid] = (entry.registration_id, digest)
        return matched, unmatched

    def skip(self, size: int, matched: int, unmatched: int) -> None:
        """Count a page whose attendees are exactly as when their check-ins were last written."""
        self.counts["pulled"] += size
        self.counts["matched"] += matched
        self.counts["unchanged"] += matched
        self.counts["unmatched"] += unmatched

    def flush(self) -> list[str]:
        """Write what is collected (check-ins, then the mapped registration columns of those written, each in
        ``$batch``); record the hashes of the rows fully written. Returns the registrations not fully written."""
        if not self._pending:
            return []
        batch, batch_hashes = list(self._pending.items()), dict(self._hashes)
        registrations = dict(self._registrations)
        self._pending.clear()  # a failed batch is not sent again by this run: the next pull re-reads its attendees
        self._hashes.clear()
        self._registrations.clear()
        result = self.crm.upsert_checkins(batch, max_parallel=self.max_parallel)
        failed = dict(result.failed)
        second = [(batch_hashes[cid][0], registrations[cid]) for cid in result.succeeded if cid in registrations]
        if second:  # registration columns only for check-ins written: a row is never half-recorded as done
            by_registration = {batch_hashes[cid][0]: cid for cid in registrations}
            refused = self.crm.update_registrations(second, max_parallel=self.max_parallel).failed
            failed.update({by_registration[reg]: f"registration columns: {why}" for reg, why in refused.items()})
        written = {cid: batch_hashes[cid] for cid in result.succeeded if cid not in failed}
        self.hashes.set_metrics_hashes(self.org_id, dict(written.values()))
        self.counts["written"] += len(written)
        self.counts["failed"] += len(failed)
        for cid, reason in list(failed.items())[:5]:
            registration = batch_hashes[cid][0]
            _log.error(
                "metrics: check-in %s of org %s refused by Dataverse: %s",
                cid,
                self.org_id,
                reason,
                extra={"org_id": self.org_id, "on24_event_id": self.webinar_id, "registration_id": registration},
            )
        return [batch_hashes[cid][0] for cid in failed]
