"""Counting an org's registrations and rejected messages into its summary: pure, dict and rows in, counts out."""

from __future__ import annotations

import heapq
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from shared.store.health import (
    MAX_REASON_CHARS,
    Failure,
    RegistrationCounts,
    RejectedCounts,
)
from shared.store.ledger import LedgerEntry
from shared.store.rejected import RejectedSummaryRow

_log = logging.getLogger(__name__)


RECENT_FAILURES = 5
WINDOW = timedelta(hours=24)
KEEP_HOURS = timedelta(hours=25)
# A ledger write's UpdatedAt is taken just before the write reaches Table Storage; a pass looks this far back
# so a write that landed after the previous pass but is dated before it still triggers a recount.
CHANGE_OVERLAP = timedelta(minutes=10)
# The ledger columns the count needs (a narrow read: no emails, no pending registrants, no intent).
COUNT_COLUMNS = ("State", "LastOutcome", "Reason", "UpdatedAt", "LeaseId", "On24EventId")
IN_PROGRESS = "in_progress"
_SUCCESSES = ("registered", "updated")
_UTC_SUFFIX = "+00:00"


# ---- pure: counting --------------------------------------------------------------------------------------------
def outcome_of(entry: LedgerEntry) -> str:
    """The registration's last recorded outcome, as a category: ``registered``, ``updated``, ``cancelled``,
    ``skipped``, ``failed`` (or whatever a newer release records, spaces as ``_``); ``in_progress`` while a
    delivery holds the row or before any outcome was recorded."""
    text = (entry.last_outcome or "").strip()
    if entry.lease_id or not text:
        return IN_PROGRESS
    return "_".join(text.split(":", 1)[0].lower().split()) or IN_PROGRESS


def hour_key(at: datetime) -> str:
    """The hour bucket of a time: ``2026-11-24T09:00Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:00Z")


def _hour_start(key: str) -> datetime | None:
    try:
        return datetime.strptime(key, "%Y-%m-%dT%H:00Z").replace(tzinfo=UTC)
    except ValueError:
        return None


class Contribution(NamedTuple):
    """What one ledger row adds to the org's counts (``shared.health.tally`` keeps one per registration)."""

    outcome: str
    at_provider: bool
    webinar_id: str
    at: str | None
    """When the outcome was recorded (ISO), None while in progress or never written."""
    reason: str = ""
    """A failure's reason (empty for other outcomes)."""


def contribution_of(entry: LedgerEntry) -> Contribution:
    outcome = outcome_of(entry)
    at = entry.updated_at.astimezone(UTC).isoformat() if entry.updated_at and outcome != IN_PROGRESS else None
    reason = (entry.reason or "")[:MAX_REASON_CHARS] if outcome == "failed" else ""
    return Contribution(outcome, entry.state == "registered", entry.webinar_id or "", at, reason)


def count_registrations(rows: Iterable[LedgerEntry], now: datetime) -> RegistrationCounts:
    """Count an org's ledger rows (read with ``COUNT_COLUMNS``) into a summary."""
    return count_contributions(((entry.registration_id, contribution_of(entry)) for entry in rows), now)


def count_contributions(rows: Iterable[tuple[str, Contribution]], now: datetime) -> RegistrationCounts:
    """Count registrations' contributions (registration id, contribution) into a summary."""
    totals: Counter[str] = Counter()
    hours: defaultdict[str, Counter[str]] = defaultdict(Counter)
    failures: list[tuple[datetime, str, str]] = []
    at_provider = 0
    last_success: datetime | None = None
    webinars: set[str] = set()
    oldest = now - KEEP_HOURS
    oldest_text = oldest.astimezone(UTC).isoformat()
    latest_text = ""
    for registration_id, row in rows:
        outcome = row.outcome
        totals[outcome] += 1
        if row.webinar_id:
            webinars.add(row.webinar_id)
        if row.at_provider:
            at_provider += 1
        text = row.at
        if text is None:
            continue
        if len(text) >= 25 and text.endswith(_UTC_SUFFIX):
            # contribution_of's UTC form: its text orders as its time, and its first 13 characters are the hour,
            # so half a million rows are counted without parsing each one's time.
            if text >= oldest_text:
                hours[text[:13] + ":00Z"][outcome] += 1
            if outcome == "failed":
                failures.append((datetime.fromisoformat(text), registration_id, row.reason))
            if outcome in _SUCCESSES and text > latest_text:
                latest_text = text
            continue
        at = datetime.fromisoformat(text)
        if at >= oldest:
            hours[hour_key(at)][outcome] += 1
        if outcome == "failed":
            failures.append((at, registration_id, row.reason))
        if outcome in _SUCCESSES and (last_success is None or at > last_success):
            last_success = at
    if latest_text:
        latest = datetime.fromisoformat(latest_text)
        last_success = latest if last_success is None or latest > last_success else last_success
    recent = heapq.nlargest(RECENT_FAILURES, failures)
    return RegistrationCounts(
        counted_at=now,
        totals=dict(totals),
        hours={hour: dict(counts) for hour, counts in sorted(hours.items())},
        at_provider=at_provider,
        recent_failures=tuple(Failure(reg, at, reason) for at, reg, reason in recent),
        last_provider_success=last_success,
        webinars=tuple(sorted(webinars)),
    )


def count_rejected(rows: Iterable[RejectedSummaryRow], now: datetime) -> dict[str, RejectedCounts]:
    """Rejected messages per org they name (messages that name none are left out: no org can see them)."""
    per_org: dict[str, list[RejectedSummaryRow]] = defaultdict(list)
    for row in rows:
        if row.org_id:
            per_org[row.org_id].append(row)
    oldest = now - KEEP_HOURS
    result: dict[str, RejectedCounts] = {}
    for org_id, items in per_org.items():
        dated = [(r.rejected_at, r) for r in items if r.rejected_at is not None]
        hours: Counter[str] = Counter(hour_key(at) for at, _ in dated if at >= oldest)
        latest = max(dated, key=lambda pair: pair[0])[1] if dated else None
        result[org_id] = RejectedCounts(
            total=len(items),
            waiting=sum(1 for r in items if r.replayed_at is None),
            hours=dict(sorted(hours.items())),
            latest_at=latest.rejected_at if latest else None,
            latest_reason=latest.reason[:MAX_REASON_CHARS] if latest else None,
        )
    return result


def last_day(hours: dict[str, Any], now: datetime) -> dict[str, int]:
    """Sum the hour buckets of the last 24 hours (from the start of the hour 24 hours ago) at ``now``.

    ``hours`` maps an hour to a count or to counts per outcome.
    """
    since = (now - WINDOW).replace(minute=0, second=0, microsecond=0)
    total: Counter[str] = Counter()
    for key, value in hours.items():
        start = _hour_start(key)
        if start is None or start < since or start > now:
            continue
        if isinstance(value, dict):
            total.update(value)
        else:
            total["count"] += int(value)
    return dict(total)
