"""What ``GET /api/orgs/{orgId}/webinar/status`` answers: the org row, its webinars' sync state, its summary row
and its parked registrations, as one view (pure, tested with plain values), and the route's read of them."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from shared import admin
from shared.health.counting import IN_PROGRESS, WINDOW, last_day
from shared.health.current import CountLedger, CountRows, current_health
from shared.health.tally import TallyStore
from shared.metrics.schedule import next_due
from shared.reconcile.view import add_to_status
from shared.store.credentials import OrgRecord
from shared.store.health import (
    OrgHealth,
    RegistrationCounts,
    RejectedCounts,
)
from shared.store.parked import ParkedMessage
from shared.store.reconciliations import ReconcileState
from shared.store.sync_state import COUNTERS, WebinarSyncState

_log = logging.getLogger(__name__)


TOKEN_DISABLED_AFTER_DAYS = 60  # ON24 disables a token unused this long (reference/on24-api.md §5)
TOKEN_WARN_FROM_DAYS = 45
SHOWN_OUTCOMES = ("registered", "updated", "cancelled", "skipped", "failed", "parked")


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


WEBINAR_STATES = {"new": "never_pulled", "in progress": "in_progress", "not found": "not_found"}


def enum_value(stored: str) -> str:
    """A stored state as the API spells it: no spaces (``in progress`` -> ``in_progress``)."""
    return "_".join(stored.split())


def webinar_view(state: WebinarSyncState, now: datetime) -> dict[str, Any]:
    """One webinar's sync state as the status route shows it (``never_pulled`` before its first pull)."""
    pending = None
    if state.pending_end is not None:
        pending = {"from": _iso(state.pending_start), "to": _iso(state.pending_end), "nextPage": state.pending_page}
    return {
        "webinarId": state.webinar_id,
        "status": WEBINAR_STATES.get(state.status, enum_value(state.status)),
        "lastPull": _iso(state.last_success_at),
        "lastAttempt": _iso(state.last_attempt_at),
        "nextDue": _iso(next_due(state, now)),
        "pending": pending,
        "counts": {name: int(state.counts.get(name, 0)) for name in COUNTERS},
        "lastError": state.last_error,
        "liveStart": _iso(state.live_start),
        "pullUntil": _iso(state.window_end),
        "notFound": {
            "checks": state.not_found_count,
            "since": _iso(state.not_found_since),
            "nextCheck": _iso(state.recheck_at),
        }
        if state.not_found_count
        else None,
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
    counts = health.registrations if health else None
    listed = [*(org.webinar_ids if org else ()), *(counts.webinars if counts else ())]
    for webinar_id in listed:  # listed by the admin, or registered to, and not pulled yet
        known.setdefault(webinar_id, WebinarSyncState(org_id=org_id, webinar_id=webinar_id))
    webinars = [webinar_view(known[webinar_id], now) for webinar_id in sorted(known, key=_webinar_order)]
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
    """Registrations by outcome; ``null`` counts when the org's ledger was never counted (not 0: not known)."""
    totals: Counter[str] = Counter()
    recent: Counter[str] = Counter()
    for name, count in (counts.totals if counts else {}).items():  # rows of earlier releases spelt "in progress"
        totals[enum_value(name)] += count
    for name, count in (last_day(counts.hours, now) if counts else {}).items():
        recent[enum_value(name)] += count
    unknown = None if counts is None else 0
    total_view: dict[str, int | None] = {n: totals.pop(n, unknown) for n in SHOWN_OUTCOMES if n != "parked"}
    day_view: dict[str, int | None] = {n: recent.pop(n, unknown) for n in SHOWN_OUTCOMES if n != "parked"}
    total_view |= {IN_PROGRESS: totals.pop(IN_PROGRESS, unknown), **totals}  # outcomes a newer release records
    day_view |= recent
    total_view["parked"], day_view["parked"] = parked.total, parked.last_24h
    return {
        "countedAt": _iso(counts.counted_at) if counts else None,
        "last24h": day_view,
        "total": total_view,
        "inOn24": counts.at_provider if counts else None,
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


def _warnings(view: dict[str, Any]) -> list[dict[str, str]]:
    """What needs an admin: ``{"code", "message"}`` each (empty when all is well)."""
    found: list[dict[str, str]] = []

    def warn(code: str, message: str) -> None:
        found.append({"code": code, "message": message})

    credentials = view["credentials"]
    if not view["configured"]:
        warn("integration_disabled", "the integration is disabled for this org: no ON24 credentials are stored")
    elif credentials.get("status") == "rejected":
        reason = credentials.get("statusReason") or "no reason given"
        warn("credentials_rejected", f"ON24 refused the org's credentials: {reason}")
    token = view["token"]
    if token and token["state"] in ("warning", "expired"):
        warn(f"token_{'expired' if token['state'] == 'expired' else 'expiring'}", f"ON24 token: {token['message']}")
    metrics = credentials.get("metrics") or {}
    if metrics.get("status") == "error":
        warn("metrics_run_failed", f"the last metrics run failed for this org: {metrics.get('reason')}")
    for webinar in view["webinars"]:
        lost = webinar.get("notFound")
        if webinar["status"] in ("not_found", "gone") and lost:
            warn(
                "webinar_not_found",
                f"webinar {webinar['webinarId']}: ON24 answered that it has no such webinar {lost['checks']} times "
                f"since {lost['since']}; "
                + ("no longer pulled" if webinar["status"] == "gone" else f"checked again at {lost['nextCheck']}"),
            )
        if webinar["status"] == "error":
            prefix = f"webinar {webinar['webinarId']}: "
            error = str(webinar["lastError"] or "no reason recorded")
            warn("webinar_pull_failed", error if error.startswith(prefix) else prefix + error)
    registrations = view["registrations"]
    if registrations["last24h"].get("failed"):
        warn("registrations_failed", f"{registrations['last24h']['failed']} registrations failed in the last 24 hours")
    refused = credentials.get("status") == "rejected"  # parked until a save (PUT) or the hourly probe
    if registrations["parking"]:
        cause = "ON24 refused the org's token" if refused else "ON24 or CRM did not answer"
        warn(
            "parking",
            f"{cause} {registrations['parking']['failedAttempts']} attempts in a row: new "
            f"registrations are parked; next attempt at {registrations['parking']['nextAttempt']}",
        )
    if registrations["total"].get("parked"):
        until = "the org's credentials are saved again (PUT)" if refused else "ON24 answers again"
        warn("registrations_parked", f"{registrations['total']['parked']} registrations are parked until {until}")
    if view["rejectedMessages"]["waiting"]:
        waiting = view["rejectedMessages"]["waiting"]
        warn("rejected_messages_waiting", f"{waiting} rejected queue messages wait for a fix and a replay")
    return found


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


# ---- the status route -------------------------------------------------------------------------------------------
class StatusCredentials(Protocol):
    def get(self, org_id: str) -> OrgRecord | None: ...
    def variants(self, org_id: str) -> list[str]: ...


class StatusSync(Protocol):
    def list(self, org_id: str) -> list[WebinarSyncState]: ...


class StatusReconciliations(Protocol):
    def list(self, org_id: str) -> list[ReconcileState]: ...


@dataclass(frozen=True)
class StatusPorts:
    credentials: StatusCredentials
    sync: StatusSync
    rows: CountRows
    parked: ParkedStore
    ledger: CountLedger
    tallies: TallyStore
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    reconciliations: StatusReconciliations | None = None


def org_status(org_id: str, ports: StatusPorts, *, drift_ids: bool = False) -> dict[str, Any]:
    """WebinarStatus: the org's health, from the org row, its sync-state rows, its summary row (its registration
    counts brought up to date when the ledger changed since, ``current_health``) and its parked registrations;
    each webinar's reconciliation (the drifting registrations' ids only with ``drift_ids``)."""
    now = ports.clock()
    record = ports.credentials.get(org_id)
    credentials = admin.status_view(org_id, record, legacy_ids=None if record else ports.credentials.variants(org_id))
    for repeated in ("orgId", "configured"):  # at the top of the answer
        credentials.pop(repeated, None)
    parked = parked_counts(ports.parked, org_id, now)
    health = current_health(org_id, ports.ledger, ports.rows, ports.tallies, now)
    reconciliations = ports.reconciliations.list(org_id) if ports.reconciliations is not None else []
    states = ports.sync.list(org_id)
    known = {state.webinar_id for state in states}
    states += [WebinarSyncState(org_id, r.webinar_id) for r in reconciliations if r.webinar_id not in known]
    view = status_view(org_id, record, credentials, states, health, parked, now)
    if ports.reconciliations is not None:
        add_to_status(view, reconciliations, with_ids=drift_ids)
    return view
