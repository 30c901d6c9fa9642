"""Per-org health: what ``GET /api/orgs/{orgId}/webinar/status`` answers, and the summary PullMetrics keeps for it.

An admin must be able to tell whether the integration works for their org without reading logs. The answer
is built from rows that exist anyway, plus one summary row per org, so a status call costs a handful of
point reads and small queries, never a scan of the ledger:

- the org row (credentials' state, the last metrics run, when the credentials were last checked by ON24);
- the org's sync-state rows (per webinar: last pull, next due, unfinished pull, counts, last error);
- the org's summary row (``shared.store.health``): registrations by outcome, the 5 most recent failures,
  the newest registration ON24 accepted, and the rejected messages filed under the org;
- the org's parked registrations (a range query bounded by their number, normally none).

The summary is kept by ``refresh_health``, which PullMetrics runs after its pulls. Per org it asks the ledger
one question, "did any registration record something since my last pass?", and only when it did, counts the
org's ledger rows again (a narrow read of a few columns) and writes the row. Counting again rather than adding
up changes keeps the counts exact whatever happened in between: a ledger row holds only its latest outcome,
and redeliveries, lease extensions and retried CRM write-backs rewrite rows without a new outcome, so adding
up changed rows would count some outcomes twice (most of all during an outage, when the counts matter). A
quiet org costs one query per run; a busy org one narrow read of its partition per run, the size of the read
each of its webinar pulls makes anyway. RegisterAttendee's hot path gains no Table Storage call.

The ON24 token's last successful use is the newest of: the credentials' last check at ``PUT`` (the row is
saved only after ON24 accepted them), the webinars' last answered pulls, and the newest registration ON24
accepted (from the summary). All three are recorded by writes that happen anyway; nothing is written per
message. ON24 disables a token unused for 60 days; the status warns from 45.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared import admin
from shared.metrics.schedule import next_due
from shared.store.credentials import OrgRecord
from shared.store.health import (
    MAX_REASON_CHARS,
    Failure,
    OrgHealth,
    RegistrationCounts,
    RejectedCounts,
)
from shared.store.ledger import LedgerEntry
from shared.store.parked import ParkedMessage
from shared.store.rejected import RejectedSummaryRow
from shared.store.sync_state import COUNTERS, WebinarSyncState
from shared.store.tables import StoreError

_log = logging.getLogger(__name__)

TOKEN_DISABLED_AFTER_DAYS = 60  # ON24 disables a token unused this long (reference/on24-api.md §5)
TOKEN_WARN_FROM_DAYS = 45
RECENT_FAILURES = 5
WINDOW = timedelta(hours=24)
KEEP_HOURS = timedelta(hours=25)
# A ledger write's UpdatedAt is taken just before the write reaches Table Storage; a pass looks this far back
# so a write that landed after the previous pass but is dated before it still triggers a recount.
CHANGE_OVERLAP = timedelta(minutes=10)
# The ledger columns the count needs (a narrow read: no emails, no pending registrants, no intent).
COUNT_COLUMNS = ("State", "LastOutcome", "Reason", "UpdatedAt", "LeaseId")
IN_PROGRESS = "in progress"
SHOWN_OUTCOMES = ("registered", "updated", "cancelled", "skipped", "failed", "parked")


# ---- pure: counting --------------------------------------------------------------------------------------------
def outcome_of(entry: LedgerEntry) -> str:
    """The registration's last recorded outcome, as a category: ``registered``, ``updated``, ``cancelled``,
    ``skipped``, ``failed`` (or whatever a newer release records); ``in progress`` while a delivery holds the
    row or before any outcome was recorded."""
    text = (entry.last_outcome or "").strip()
    if entry.lease_id or not text:
        return IN_PROGRESS
    return text.split(":", 1)[0].strip().lower() or IN_PROGRESS


def hour_key(at: datetime) -> str:
    """The hour bucket of a time: ``2026-11-24T09:00Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:00Z")


def _hour_start(key: str) -> datetime | None:
    try:
        return datetime.strptime(key, "%Y-%m-%dT%H:00Z").replace(tzinfo=UTC)
    except ValueError:
        return None


def count_registrations(rows: Iterable[LedgerEntry], now: datetime) -> RegistrationCounts:
    """Count an org's ledger rows (read with ``COUNT_COLUMNS``) into a summary."""
    totals: Counter[str] = Counter()
    hours: defaultdict[str, Counter[str]] = defaultdict(Counter)
    failures: list[tuple[datetime, str, str]] = []
    at_provider = 0
    last_success: datetime | None = None
    oldest = now - KEEP_HOURS
    for entry in rows:
        outcome = outcome_of(entry)
        totals[outcome] += 1
        if entry.state == "registered":
            at_provider += 1
        at = entry.updated_at
        if outcome == IN_PROGRESS or at is None:
            continue
        if at >= oldest:
            hours[hour_key(at)][outcome] += 1
        if outcome == "failed":
            failures.append((at, entry.registration_id, (entry.reason or "")[:MAX_REASON_CHARS]))
        if outcome in ("registered", "updated") and (last_success is None or at > last_success):
            last_success = at
    recent = heapq.nlargest(RECENT_FAILURES, failures)
    return RegistrationCounts(
        counted_at=now,
        totals=dict(totals),
        hours={hour: dict(counts) for hour, counts in sorted(hours.items())},
        at_provider=at_provider,
        recent_failures=tuple(Failure(reg, at, reason) for at, reg, reason in recent),
        last_provider_success=last_success,
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


# ---- pure: the ON24 token ------------------------------------------------------------------------------------------
def provider_contact(state: WebinarSyncState) -> datetime | None:
    """When ON24 last answered a pull of this webinar (an error answer does not count)."""
    answered = state.last_attempt_at if state.status not in ("error", "new") else None
    times = [t for t in (state.last_success_at, answered) if t is not None]
    return max(times) if times else None


def token_last_use(
    org: OrgRecord, counts: RegistrationCounts | None, states: Iterable[WebinarSyncState]
) -> datetime | None:
    """The newest successful use of the org's token this app knows of: the credentials' check at ``PUT``, the
    newest registration ON24 accepted, the newest pull ON24 answered."""
    contacts = [provider_contact(state) for state in states]
    uses = [t for t in (org.updated_at, counts.last_provider_success if counts else None, *contacts) if t is not None]
    return max(uses) if uses else None


def token_view(org: OrgRecord, last_use: datetime | None, now: datetime) -> dict[str, Any]:
    """The ON24 token's state: ON24 disables a token unused for 60 days; warn from 45."""
    idle = (now - last_use).days if last_use is not None else None
    view: dict[str, Any] = {
        "lastSuccessfulUse": _iso(last_use),
        "idleDays": idle,
        "warnFromDays": TOKEN_WARN_FROM_DAYS,
        "disabledAfterDays": TOKEN_DISABLED_AFTER_DAYS,
    }
    if org.status == "rejected":
        return view | {"state": "rejected", "message": "ON24 refused the stored token: PUT working credentials"}
    if idle is None:
        return view | {
            "state": "unknown",
            "message": "no successful ON24 call recorded yet: POST a pull, or PUT the credentials again",
        }
    if idle >= TOKEN_DISABLED_AFTER_DAYS:
        return view | {
            "state": "expired",
            "message": f"not used for {idle} days: ON24 has probably disabled it; create a new token in ON24 and "
            "PUT the credentials",
        }
    if idle >= TOKEN_WARN_FROM_DAYS:
        left = TOKEN_DISABLED_AFTER_DAYS - idle
        return view | {
            "state": "warning",
            "message": f"not used for {idle} days: ON24 disables it in about {left} days unless it is used; POST "
            "a pull of one webinar or PUT the credentials again",
        }
    return view | {"state": "ok", "message": None}


# ---- pure: the status answer -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParkedCounts:
    """The org's registrations parked while ON24 is unreachable (re-driven by RetryParked)."""

    total: int = 0
    last_24h: int = 0


class ParkedStore(Protocol):
    def for_org(self, org_id: str) -> list[ParkedMessage]: ...


def parked_counts(store: ParkedStore, org_id: str, now: datetime) -> ParkedCounts:
    """How many of the org's registrations are parked now, and how many of them were parked in the last 24 h.

    One range query over the org's parked rows (``shared.store.parked``): as long as their number, normally none.
    """
    parked = store.for_org(org_id)
    since = now - WINDOW
    return ParkedCounts(total=len(parked), last_24h=sum(1 for m in parked if m.parked_at and m.parked_at >= since))


def webinar_view(state: WebinarSyncState, now: datetime) -> dict[str, Any]:
    """One webinar's sync state as the status route shows it."""
    pending = None
    if state.pending_end is not None:
        pending = {"from": _iso(state.pending_start), "to": _iso(state.pending_end), "nextPage": state.pending_page}
    return {
        "webinarId": state.webinar_id,
        "status": state.status,
        "lastPull": _iso(state.last_success_at),
        "lastAttempt": _iso(state.last_attempt_at),
        "nextDue": _iso(next_due(state, now)),
        "pending": pending,
        "counts": {name: int(state.counts.get(name, 0)) for name in COUNTERS},
        "lastError": state.last_error,
        "liveStart": _iso(state.live_start),
        "pullUntil": _iso(state.window_end),
    }


def status_view(
    org_id: str,
    org: OrgRecord | None,
    credentials: dict[str, Any],
    states: Sequence[WebinarSyncState],
    health: OrgHealth | None,
    parked: ParkedCounts,
    now: datetime,
) -> dict[str, Any]:
    """The whole status answer. ``credentials`` is the credentials route's view of the org (no secrets)."""
    known = {state.webinar_id: state for state in states}
    if org is not None:
        for webinar_id in org.webinar_ids:  # listed by the admin, not pulled yet
            known.setdefault(webinar_id, WebinarSyncState(org_id=org_id, webinar_id=webinar_id))
    webinars = [webinar_view(known[webinar_id], now) for webinar_id in sorted(known, key=_webinar_order)]
    counts = health.registrations if health else None
    rejected = health.rejected if health else RejectedCounts()
    latest = {"at": _iso(rejected.latest_at), "reason": rejected.latest_reason} if rejected.latest_at else None
    registrations = _registrations_view(counts, parked, now)
    registrations["parking"] = _parking_view(org)
    view: dict[str, Any] = {
        "orgId": org_id,
        "asOf": _iso(now),
        "configured": org is not None,
        "credentials": credentials,
        "token": None,
        "webinars": webinars,
        "registrations": registrations,
        "rejectedMessages": {
            "total": rejected.total,
            "waiting": rejected.waiting,
            "last24h": last_day(rejected.hours, now).get("count", 0),
            "latest": latest,
        },
    }
    if org is not None:
        view["token"] = token_view(org, token_last_use(org, counts, states), now)
    view["warnings"] = _warnings(view)
    return view


def _webinar_order(webinar_id: str) -> tuple[int, str]:
    return (int(webinar_id), "") if webinar_id.isdigit() else (0, webinar_id)


def _registrations_view(counts: RegistrationCounts | None, parked: ParkedCounts, now: datetime) -> dict[str, Any]:
    totals = dict(counts.totals) if counts else {}
    recent = last_day(counts.hours, now) if counts else {}
    total_view = {name: totals.pop(name, 0) for name in SHOWN_OUTCOMES if name != "parked"}
    day_view = {name: recent.pop(name, 0) for name in SHOWN_OUTCOMES if name != "parked"}
    total_view |= {IN_PROGRESS: totals.pop(IN_PROGRESS, 0), **totals}  # outcomes a newer release records
    day_view |= recent
    total_view["parked"], day_view["parked"] = parked.total, parked.last_24h
    return {
        "countedAt": _iso(counts.counted_at) if counts else None,
        "last24h": day_view,
        "total": total_view,
        "inOn24": counts.at_provider if counts else 0,
        "recentFailures": [
            {"registrationId": f.registration_id, "at": _iso(f.at), "reason": f.reason}
            for f in (counts.recent_failures if counts else ())
        ],
    }


def _parking_view(org: OrgRecord | None) -> dict[str, Any] | None:
    """The org's parking state (RetryParked): ON24 or CRM unreachable, new registrations parked at once."""
    if org is None or not org.parking:
        return None
    return {"failedAttempts": org.park_failures, "nextAttempt": _iso(org.park_until)}


def _warnings(view: dict[str, Any]) -> list[str]:
    """What needs an admin, in words (empty when all is well)."""
    found: list[str] = []
    credentials = view["credentials"]
    if not view["configured"]:
        found.append("the integration is disabled for this org: no ON24 credentials are stored")
    elif credentials.get("status") == "rejected":
        found.append(f"ON24 refused the org's credentials: {credentials.get('statusReason') or 'no reason given'}")
    token = view["token"]
    if token and token["state"] in ("warning", "expired"):
        found.append(f"ON24 token: {token['message']}")
    metrics = credentials.get("metrics") or {}
    if metrics.get("status") == "error":
        found.append(f"the last metrics run failed for this org: {metrics.get('reason')}")
    for webinar in view["webinars"]:
        if webinar["status"] == "error":
            prefix = f"webinar {webinar['webinarId']}: "
            error = str(webinar["lastError"] or "no reason recorded")
            found.append(error if error.startswith(prefix) else prefix + error)
    registrations = view["registrations"]
    if registrations["last24h"].get("failed"):
        found.append(f"{registrations['last24h']['failed']} registrations failed in the last 24 hours")
    if registrations["parking"]:
        found.append(
            f"ON24 or CRM did not answer {registrations['parking']['failedAttempts']} attempts in a row: new "
            f"registrations are parked; next attempt at {registrations['parking']['nextAttempt']}"
        )
    if registrations["total"].get("parked"):
        found.append(f"{registrations['total']['parked']} registrations are parked until ON24 answers again")
    if view["rejectedMessages"]["waiting"]:
        found.append(f"{view['rejectedMessages']['waiting']} rejected queue messages wait for a fix and a replay")
    return found


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


# ---- the status route -------------------------------------------------------------------------------------------
class StatusCredentials(Protocol):
    def get(self, org_id: str) -> OrgRecord | None: ...
    def variants(self, org_id: str) -> list[str]: ...


class StatusSync(Protocol):
    def list(self, org_id: str) -> list[WebinarSyncState]: ...


class StatusRows(Protocol):
    def get(self, org_id: str) -> OrgHealth | None: ...


@dataclass(frozen=True)
class StatusPorts:
    credentials: StatusCredentials
    sync: StatusSync
    rows: StatusRows
    parked: ParkedStore
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


def org_status(org_id: str, ports: StatusPorts) -> dict[str, Any]:
    """WebinarStatus: the org's health, from the org row, its sync-state rows, its summary row and its parked
    registrations (no scan of the ledger or of the rejected messages)."""
    now = ports.clock()
    record = ports.credentials.get(org_id)
    credentials = admin.status_view(org_id, record, legacy_ids=None if record else ports.credentials.variants(org_id))
    for repeated in ("orgId", "configured"):  # at the top of the answer
        credentials.pop(repeated, None)
    parked = parked_counts(ports.parked, org_id, now)
    return status_view(org_id, record, credentials, ports.sync.list(org_id), ports.rows.get(org_id), parked, now)


# ---- the pass PullMetrics runs -----------------------------------------------------------------------------------
class HealthOrgs(Protocol):
    def list_orgs(self) -> Iterator[OrgRecord]: ...


class HealthLedger(Protocol):
    def changed_since(self, org_id: str, since: datetime) -> bool: ...
    def entries(
        self, org_id: str, *, webinar_id: str | None = None, columns: Sequence[str] | None = None
    ) -> Iterator[LedgerEntry]: ...


class HealthRejected(Protocol):
    def changed_since(self, since: datetime) -> bool: ...
    def summary_rows(self) -> Iterator[RejectedSummaryRow]: ...


class HealthRows(Protocol):
    def get(self, org_id: str) -> OrgHealth | None: ...
    def save(self, health: OrgHealth) -> OrgHealth | None: ...
    def rejected_mark(self) -> datetime | None: ...
    def set_rejected_mark(self, counted_at: datetime) -> None: ...


@dataclass(frozen=True)
class HealthPorts:
    orgs: HealthOrgs
    ledger: HealthLedger
    rejected: HealthRejected
    rows: HealthRows
    sync: StatusSync
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


@dataclass
class HealthReport:
    counted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    rejected_counted: bool = False
    failed: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Orgs whose ON24 token needs an admin (``token_view`` of each: warning, expired, rejected)."""


def refresh_health(ports: HealthPorts) -> HealthReport:
    """Bring every org's summary row up to date, counting again only what changed since the last pass.

    One org's failure (e.g. a lost write race) is logged and left for the next pass; the others go on.

    Raises:
        StoreError: Table Storage is unreachable or refuses the app (nothing can be counted).
    """
    now = ports.clock()
    report = HealthReport()
    mark = ports.rows.rejected_mark()
    rejected: dict[str, RejectedCounts] | None = None
    if mark is None or ports.rejected.changed_since(mark - CHANGE_OVERLAP):
        rejected = count_rejected(ports.rejected.summary_rows(), now)
        report.rejected_counted = True
    configured = {org.org_id: org for org in ports.orgs.list_orgs()}
    for org_id in sorted(configured.keys() | set(rejected or {})):
        try:
            health = _refresh_org(ports, org_id, org_id in configured, rejected, now, report)
            if org_id in configured:
                _check_token(ports, configured[org_id], health, now, report)
        except StoreError as exc:
            report.failed[org_id] = str(exc)
            _log.warning("health: summary of org %s not refreshed: %s", org_id, exc, extra={"org_id": org_id})
    if rejected is not None and not report.failed:
        ports.rows.set_rejected_mark(now)
    return report


def _refresh_org(
    ports: HealthPorts,
    org_id: str,
    configured: bool,
    rejected: dict[str, RejectedCounts] | None,
    now: datetime,
    report: HealthReport,
) -> OrgHealth:
    current = ports.rows.get(org_id)
    base = current or OrgHealth(org_id=org_id)
    updated = base
    if rejected is not None:
        updated = _with(updated, rejected=rejected.get(org_id, RejectedCounts()))
    if configured and (
        current is None
        or current.checked_at is None
        or ports.ledger.changed_since(org_id, current.checked_at - CHANGE_OVERLAP)
    ):
        counts = count_registrations(ports.ledger.entries(org_id, columns=COUNT_COLUMNS), now)
        updated = _with(updated, registrations=counts, checked_at=now)
        report.counted.append(org_id)
    if current is not None and updated == current:
        report.unchanged.append(org_id)
        return current
    if ports.rows.save(updated) is None:
        raise _LostRace(f"another pass changed the health summary of org {org_id!r} first")
    return updated


def _check_token(ports: HealthPorts, org: OrgRecord, health: OrgHealth, now: datetime, report: HealthReport) -> None:
    """Note an org whose token needs an admin, for the run's log line (what the token alert reads)."""
    token = token_view(org, token_last_use(org, health.registrations, ports.sync.list(org.org_id)), now)
    if token["state"] in ("warning", "expired", "rejected"):
        report.tokens[org.org_id] = token


class _LostRace(StoreError):
    """The summary row changed under this pass; the next pass counts again."""


def _with(health: OrgHealth, **changes: Any) -> OrgHealth:
    return replace(health, **changes)
