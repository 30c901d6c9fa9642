"""When reconciliations run: asked for (on demand, or the backfill after a switch-on), and once a day per webinar
while its registration is open; a step of the PullMetrics timer, after the pull, within what the run has left.

- **On demand** (``POST .../webinars/{id}/reconcile``): ``request`` records it on the webinar's row; the route
  then tries it within its own budget, and what does not fit is done by the next timer run, requests first.
- **Backfill**: the org's credentials row keeps ``created_at`` across re-saves and gets a new one when it is saved
  after having been removed (or for the first time). A run that finds a ``created_at`` its switch-on mark does not
  hold asks a repairing reconciliation of every webinar the org is known to have: those of the metrics sync, the
  admin's list, the ledger's rows, and the webinars of registrations skipped while the integration was off (their
  events are read from CRM, once each).
- **Daily**: a webinar whose registration is open (its on-demand window has not closed, or is not known yet) and
  that was not reconciled for a day is reconciled (a report; ``repair=true`` on demand repairs).

The metrics pull is never starved: this step runs only when the pull left nothing for its next run, with the
time the run has left, and the reconciliation's list calls share the pull's per-account limiter.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from shared.errors import ConfigError, IntegrationError, NotFoundError, PermanentError, TransientError
from shared.ids import is_webinar_id
from shared.reconcile.run import OverBudget, ReconcilePorts, reconcile_webinar, record_failure
from shared.store.credentials import OrgRecord
from shared.store.ledger import LedgerEntry
from shared.store.reconciliations import ReconcileState
from shared.store.sync_state import WebinarSyncState
from shared.store.tables import StoreError

_log = logging.getLogger(__name__)

DAILY = timedelta(days=1)
BACKFILL_ACTOR = "backfill after the integration was switched on"
TIMER_ACTOR = "daily reconciliation"


class OrgListing(Protocol):
    def list_orgs(self) -> Iterator[OrgRecord]: ...


class SyncListing(Protocol):
    def list(self, org_id: str) -> list[WebinarSyncState]: ...


class LedgerListing(Protocol):
    def entries(self, org_id: str, *, columns: list[str] | None = None) -> Iterator[LedgerEntry]: ...


class StateListing(Protocol):
    def list(self, org_id: str) -> list[ReconcileState]: ...
    def switch_on_mark(self, org_id: str) -> datetime | None: ...
    def set_switch_on_mark(self, org_id: str, switched_on_at: datetime) -> None: ...


@dataclass(frozen=True)
class ScheduleParts:
    orgs: OrgListing
    sync: SyncListing
    ledger: LedgerListing
    states: StateListing


@dataclass
class TimerReport:
    reconciled: list[str] = field(default_factory=list)
    left: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    backfills: list[str] = field(default_factory=list)


def request(ports: ReconcilePorts, org_id: str, webinar_id: str, *, repair: bool, actor: str,
            request_id: str | None = None) -> ReconcileState:  # fmt: skip
    """Record that a reconciliation of the webinar is wanted (``repair``: with repair; a pending one keeps it)."""
    for _ in range(5):
        state = ports.states.get(org_id, webinar_id) or ReconcileState(org_id, webinar_id)
        asked = replace(
            state,
            requested_at=state.requested_at or ports.clock(),
            request_repair=state.request_repair or repair,
            requested_by=actor,
            request_id=request_id or state.request_id,
        )
        saved = ports.states.save(asked)
        if saved is not None:
            return saved
    raise TransientError(f"the reconciliation row of webinar {webinar_id} kept changing; ask again")


def run_reconciliations(
    ports: ReconcilePorts, parts: ScheduleParts, *, deadline: float, skip_orgs: Collection[str] = ()
) -> TimerReport:
    """The timer step: backfills found, then requests, then daily reconciliations, until ``deadline``.

    One webinar's or org's failure is noted on its row and never stops the others; an org the metrics pull found
    failing (``skip_orgs``: its credentials, CRM or ON24 account) waits for a run where it works. The app's own
    configuration faults are raised.
    """
    report = TimerReport()
    now = ports.clock()
    queue: list[tuple[tuple[int, datetime], ReconcileState]] = []
    for org in parts.orgs.list_orgs():
        if org.org_id in skip_orgs or org.status == "rejected":
            continue
        try:
            if org.created_at is not None and parts.states.switch_on_mark(org.org_id) != org.created_at:
                _backfill(ports, parts, org)
                report.backfills.append(org.org_id)
            queue.extend(_due(parts, org, now))
        except ConfigError:
            raise
        except Exception as exc:  # the org's own trouble (its Dataverse URL refused, CRM down): the others go on
            if _is_store_failure(exc):
                raise
            report.failed[org.org_id] = _describe(exc)
            _log.error("reconcile: org %s not planned: %s", org.org_id, _describe(exc), extra={"org_id": org.org_id})
    queue.sort(key=lambda item: item[0])
    for index, (_, state) in enumerate(queue):
        if ports.monotonic() >= deadline:
            report.left = len(queue) - index
            break
        requested = state.requested_at is not None
        repair = requested and state.request_repair
        actor = (state.requested_by or TIMER_ACTOR) if requested else TIMER_ACTOR
        key = f"{state.org_id}/{state.webinar_id}"
        try:
            reconcile_webinar(ports, state.org_id, state.webinar_id, repair=repair, actor=actor, deadline=deadline)
            report.reconciled.append(key)
        except OverBudget as exc:
            record_failure(ports, state.org_id, state.webinar_id, f"left for a later run: {exc}")
            report.left += 1
        except ConfigError:
            raise
        except Exception as exc:  # one webinar's or org's trouble is noted on its row; the others go on
            if _is_store_failure(exc):
                raise
            record_failure(ports, state.org_id, state.webinar_id, _describe(exc))
            report.failed[key] = _describe(exc)
    return report


def _describe(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, IntegrationError) else f"{type(exc).__name__}: {exc}"
    return text[:300]


def _is_store_failure(exc: BaseException) -> bool:
    """Storage unreachable: nothing can be recorded, the step stops (the timer logs it and goes on)."""
    return isinstance(exc, StoreError) and not isinstance(exc, PermanentError)


def _due(parts: ScheduleParts, org: OrgRecord, now: datetime) -> list[tuple[tuple[int, datetime], ReconcileState]]:
    """The org's webinars to reconcile: requested ones first (oldest first), then open ones not done for a day."""
    rows = {state.webinar_id: state for state in parts.states.list(org.org_id)}
    due: list[tuple[tuple[int, datetime], ReconcileState]] = []
    for state in rows.values():
        if state.requested_at is not None:
            due.append(((0, state.requested_at), state))
    for sync in parts.sync.list(org.org_id):
        state = rows.get(sync.webinar_id) or ReconcileState(org.org_id, sync.webinar_id)
        if state.requested_at is not None or not is_webinar_id(sync.webinar_id):
            continue
        open_ = sync.window_end is None or sync.window_end > now
        last = state.reconciled_at
        if open_ and (last is None or last <= now - DAILY):
            due.append(((1, last or datetime.min.replace(tzinfo=now.tzinfo)), state))
    return due


def _backfill(ports: ReconcilePorts, parts: ScheduleParts, org: OrgRecord) -> None:
    """Ask a repairing reconciliation of every webinar the org is known to have whose registration is still open
    (a closed webinar's registrants are history: they are not changed), then move the switch-on mark."""
    now = ports.clock()
    closed = {s.webinar_id for s in parts.sync.list(org.org_id) if s.window_end is not None and s.window_end <= now}
    webinars = {state.webinar_id for state in parts.sync.list(org.org_id)} | set(org.webinar_ids)
    webinars |= _ledger_webinars(ports, parts, org)
    for webinar_id in sorted(w for w in webinars - closed if is_webinar_id(w)):
        request(ports, org.org_id, str(int(webinar_id)), repair=True, actor=BACKFILL_ACTOR)
    assert org.created_at is not None
    parts.states.set_switch_on_mark(org.org_id, org.created_at)
    _log.info(
        "audit: backfill of org %s asked for %d webinars after the integration was switched on",
        org.org_id, len(webinars),
        extra={"org_id": org.org_id, "audit": "reconcile.backfill", "webinars": len(webinars)},
    )  # fmt: skip


def _ledger_webinars(ports: ReconcilePorts, parts: ScheduleParts, org: OrgRecord) -> set[str]:
    """The webinars of the org's ledger rows, and those of registrations skipped while the integration was off
    (rows without a webinar: their events are read from CRM, once each). One read of the partition for both."""
    crm = ports.crm_for(org)
    found: set[str] = set()
    events: dict[str, str | None] = {}
    for entry in parts.ledger.entries(org.org_id, columns=["State", "On24EventId", "CrmEventId", "LastOutcome"]):
        if entry.webinar_id:
            found.add(entry.webinar_id)
        if crm is None or entry.state != "skipped" or entry.webinar_id:
            continue
        if not (entry.last_outcome or "").startswith("skipped"):
            continue
        try:
            event_id = entry.crm_event_id or crm.get_registration(entry.registration_id).event_id
            if event_id and event_id not in events:
                events[event_id] = crm.get_event(event_id).webinar_id
        except NotFoundError:
            continue
        webinar = events.get(event_id or "")
        if webinar and is_webinar_id(webinar):
            found.add(webinar)
    return found
