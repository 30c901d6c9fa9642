"""PullMetrics' use case: bring ON24 attendee metrics into CRM check-ins, incrementally and idempotently.

Per org with credentials, the webinars the ledger knows about (plus any the admin listed) are pulled
from their start until their on-demand window closes plus a grace period. Each pull re-reads a look-back
window, because ON24 data arrives late. Attendees are matched to CRM registrations (by the
``exteventusercd`` we sent, then the ON24 registrant id, then email), and one event check-in per
registration is upserted at an id derived from (org, registration), in ``$batch`` requests. Rows whose
metrics hash did not change since the last write are not sent again.

Tenants are isolated: any failure of one org or one webinar (bad stored data, credentials ON24 refuses, a
Dataverse that refuses the app's identity, a token request Entra ID refuses, an ON24 error) is recorded on
that webinar's sync state and on the org (``CredentialsStatus`` shows it), and the run goes on with the
others. The run raises only when it cannot work at all: Table Storage unreachable or refusing the app, or
the app's own configuration (e.g. no credentials key).

A pull too large for one run resumes at its recorded page, re-reading the page before it and continuing
after the last attendee written there (the list can shift between runs); after a pull that spanned runs the
bookmark is set to the start of the window it resumed, so the next pull re-reads that window and catches
attendees that moved into it behind the cursor. Check-in upserts are idempotent and unchanged rows are not
written again, so re-reading costs ON24 calls, never duplicates.

The pure parts (windows, due-ness, matching, check-in fields) are separate functions, tested with dicts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.crm import CheckIn, checkin_id
from shared.dataverse import BatchResult
from shared.errors import (
    ConfigError,
    CredentialsRejectedError,
    DecryptionError,
    IntegrationError,
    NotConfiguredError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from shared.ids import is_webinar_id
from shared.on24 import Attendee, On24Event
from shared.ratelimit import RateLimiter
from shared.store.credentials import MetricsStatus, OrgRecord, OrgStatus
from shared.store.ledger import LedgerEntry
from shared.store.sync_state import WebinarSyncState
from shared.store.tables import StoreError

_log = logging.getLogger(__name__)

META_REFRESH = timedelta(hours=6)
HOT_PERIOD = timedelta(days=3)
COLD_REFRESH = timedelta(hours=1)
START_MARGIN = timedelta(days=1)
DISCOVERY_OVERLAP = timedelta(minutes=10)
MIN_SLICE_SECONDS = 30.0
MAX_STEP_BACK_PAGES = 3  # how far back a resumed pull looks for its anchor before re-reading its window
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What matching and check-in fields need of a ledger row (reading 100,000 whole rows costs twice as much).
MATCH_COLUMNS = ("State", "EventUserId", "Email", "CrmEventId", "ContactId", "MetricsHash")


# ---- ports ----------------------------------------------------------------------------------------------------
class On24Metrics(Protocol):
    def get_event(self, event_id: int | str) -> On24Event: ...
    def iter_attendee_pages(
        self, event_id: int | str, *, start: datetime | None, end: datetime | None, first_page: int = 0
    ) -> Iterator[tuple[int, list[Attendee]]]: ...


class CrmCheckins(Protocol):
    def upsert_checkins(self, rows: Sequence[tuple[str, dict[str, Any]]], *, max_parallel: int = 4) -> BatchResult: ...


class OrgDirectory(Protocol):
    def list_orgs(self) -> Iterator[OrgRecord]: ...
    def get(self, org_id: str) -> OrgRecord | None: ...
    def set_status(self, org_id: str, status: OrgStatus, reason: str | None) -> bool: ...
    def set_metrics_health(self, org_id: str, status: MetricsStatus, reason: str | None, at: datetime) -> bool: ...


class LedgerIndex(Protocol):
    def entries(
        self, org_id: str, *, on24_event_id: str | None = None, columns: Sequence[str] | None = None
    ) -> Iterator[LedgerEntry]: ...
    def webinars_touched_since(self, org_id: str, since: datetime | None) -> set[str]: ...
    def set_metrics_hashes(self, org_id: str, hashes: dict[str, str]) -> None: ...


class SyncStates(Protocol):
    def get(self, org_id: str, webinar_id: str) -> WebinarSyncState | None: ...
    def list(self, org_id: str) -> list[WebinarSyncState]: ...
    def save(self, state: WebinarSyncState) -> WebinarSyncState | None: ...
    def discovery_mark(self, org_id: str) -> datetime | None: ...
    def set_discovery_mark(self, org_id: str, scanned_until: datetime) -> None: ...


@dataclass(frozen=True)
class MetricsPorts:
    orgs: OrgDirectory
    ledger: LedgerIndex
    sync: SyncStates
    on24_for: Callable[[OrgRecord, RateLimiter], On24Metrics]
    crm_for: Callable[[OrgRecord], CrmCheckins | None]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic
    limiter_for: Callable[[OrgRecord], RateLimiter] | None = None
    """Paces an ON24 account's attendee-list calls; None: one limiter per account per run (see ``_limiter``)."""


@dataclass(frozen=True)
class MetricsOptions:
    budget_seconds: float = 240.0
    grace: timedelta = timedelta(days=30)
    lookback: timedelta = timedelta(hours=48)
    attendee_calls_per_minute: int = 100
    chunk_rows: int = 4000
    max_parallel: int = 4


@dataclass
class WebinarReport:
    org_id: str
    webinar_id: str
    status: str
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class RunReport:
    webinars: list[WebinarReport] = field(default_factory=list)
    orgs_failed: dict[str, str] = field(default_factory=dict)
    left_for_next_run: int = 0

    def total(self, counter: str) -> int:
        return sum(w.counts.get(counter, 0) for w in self.webinars)


# ---- pure helpers ---------------------------------------------------------------------------------------------
def _first(*values: int | None) -> int:
    for value in values:
        if value is not None:
            return value
    return 0


def checkin_fields(entry: LedgerEntry, attendee: Attendee) -> dict[str, Any]:
    """The check-in columns for one attendee (an event check-in linked to registration, event and contact).

    Viewing duration = live + on-demand minutes (the cumulative figures when ON24 sends them). "Number of
    interactions" = questions asked + polls answered (both are the attendee acting in the webinar).
    Check-in time = first activity; check-out time = last activity.
    """
    live = _first(attendee.cumulativeliveminutes, attendee.liveminutes)
    archive = _first(attendee.cumulativearchiveminutes, attendee.archiveminutes)
    firsts = [t for t in (attendee.firstliveactivity, attendee.firstarchiveactivity) if t is not None]
    lasts = [t for t in (attendee.lastliveactivity, attendee.lastarchiveactivity) if t is not None]
    return CheckIn(
        registration_id=entry.registration_id,
        crm_event_id=entry.crm_event_id,
        contact_id=entry.contact_id,
        viewing_minutes=live + archive,
        interactions=_first(attendee.askedquestions) + _first(attendee.answeredpolls),
        checked_in_at=min(firsts) if firsts else None,
        checked_out_at=max(lasts) if lasts else None,
    ).fields()


def fields_hash(fields: dict[str, Any]) -> str:
    text = json.dumps(fields, sort_keys=True, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class Matcher:
    """Finds the ledger row of an attendee: by ``exteventusercd``, then ON24 registrant id, then email."""

    def __init__(self, entries: Iterable[LedgerEntry]) -> None:
        self.by_registration: dict[str, LedgerEntry] = {}
        self._by_user: dict[str, str] = {}
        self._by_email: dict[str, str] = {}
        for entry in entries:
            if entry.state not in ("registered", "cancelled"):
                continue
            reg = entry.registration_id
            self.by_registration[reg] = entry
            if entry.event_user_id:
                self._by_user[entry.event_user_id] = reg
            if entry.email:
                self._by_email[entry.email.casefold()] = reg

    def match(self, attendee: Attendee) -> LedgerEntry | None:
        reg = (attendee.exteventusercd or "").strip().lower()
        if reg in self.by_registration:
            return self.by_registration[reg]
        by_user = self._by_user.get(attendee.eventuserid or "")
        if by_user:
            return self.by_registration[by_user]
        by_email = self._by_email.get((attendee.email or "").casefold())
        return self.by_registration[by_email] if by_email else None

    def remember(self, registration_id: str, metrics_hash: str) -> None:
        entry = self.by_registration.get(registration_id)
        if entry is not None:
            self.by_registration[registration_id] = replace(entry, metrics_hash=metrics_hash)


def with_event(state: WebinarSyncState, event: On24Event, *, now: datetime, grace: timedelta) -> WebinarSyncState:
    """Record the webinar's schedule: pull from its start until its on-demand window closes, plus grace."""
    start = event.livestart or event.goodafter
    end = event.archiveend or event.goodtill or event.liveend or start
    return replace(
        state,
        live_start=start.astimezone(UTC) if start else None,
        window_end=(end.astimezone(UTC) + grace) if end else None,
        meta_fetched_at=now,
    )


def is_due(state: WebinarSyncState, now: datetime) -> bool:
    """Unfinished, new, recently live (every run) or on demand (hourly) webinars are due."""
    if state.pending_end is not None or state.last_success_at is None:
        return True
    if state.window_end is not None and now > state.window_end:
        return False
    if state.live_start is not None and now < state.live_start - START_MARGIN:
        return False
    recently_live = state.live_start is None or now - state.live_start < HOT_PERIOD
    return recently_live or now - state.last_success_at >= COLD_REFRESH


def next_due(state: WebinarSyncState, now: datetime) -> datetime | None:
    """The earliest time at or after ``now`` at which ``is_due`` holds (the first run from then pulls the
    webinar); None when no run will pull it again (its window has closed)."""
    if state.pending_end is not None or state.last_success_at is None:
        return now
    due = now
    if state.live_start is not None and due < state.live_start - START_MARGIN:
        due = state.live_start - START_MARGIN
    if state.live_start is not None and due - state.live_start >= HOT_PERIOD:
        due = max(due, state.last_success_at + COLD_REFRESH)
    if state.window_end is not None and due > state.window_end:
        return None
    return due


def priority(state: WebinarSyncState) -> tuple[int, float, float]:
    """Sort key: unfinished pulls first, then the one attempted longest ago (never: first), then the most recent
    webinar. Webinars a run did not reach come first in the next run, so many orgs share runs fairly."""
    started = state.live_start.timestamp() if state.live_start else float("inf")
    attempted = (state.last_attempt_at or _EPOCH).timestamp()
    return (0 if state.pending_end is not None else 1, attempted, -started)


def attendee_key(attendee: Attendee) -> str:
    """A short, stable, non-reversible key of an attendee (for resume anchors; no email is stored)."""
    identity = attendee.eventuserid or (attendee.email or "").casefold() or (attendee.exteventusercd or "").lower()
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12] if identity else ""


def anchor_position(page: Sequence[Attendee], anchor: Sequence[str]) -> int | None:
    """Index just after the last attendee of ``page`` that the anchor (the last page written) holds; None if none.

    The relative order of the attendees that stay in the list does not change between runs, so everything after
    that attendee is new to the pull, whatever moved in or out before it.
    """
    wanted = set(anchor) - {""}
    positions = [index for index, attendee in enumerate(page) if attendee_key(attendee) in wanted]
    return positions[-1] + 1 if positions else None


def pull_window(
    state: WebinarSyncState, *, signpost: datetime, lookback: timedelta
) -> tuple[datetime | None, datetime, int]:
    """(start, end, next page) of the next pull: the pending one if a run stopped midway, else a new one
    from the bookmark minus the look-back (or the webinar's start) up to the run's signpost."""
    if state.pending_end is not None:
        return state.pending_start, state.pending_end, state.pending_page
    floor = state.live_start - START_MARGIN if state.live_start else None
    start = state.replication_key_value - lookback if state.replication_key_value else floor
    if start is not None and floor is not None:
        start = max(start, floor)
    if start is not None and start > signpost:
        start = signpost
    return start, signpost, 0


def bookmark_after(state: WebinarSyncState, start: datetime | None, end: datetime, *, resumed: bool) -> datetime | None:
    """The bookmark once a pull over [start, end] completed: its end, or, when the pull spanned runs (attendees
    may have moved in behind its cursor), no later than the start of the window it resumed."""
    if resumed:
        return start
    return max(end, state.replication_key_value or end)


# ---- the use case -----------------------------------------------------------------------------------------------
class _OutOfTime(Exception):
    pass


class _AppFault(Exception):
    """A failure of the app itself met while serving one org (e.g. no credentials key): the run stops."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _is_run_failure(exc: BaseException) -> bool:
    """Storage unreachable or refusing the app: no org can be served, so the run fails (and is retried)."""
    return isinstance(exc, StoreError) and not isinstance(exc, PermanentError)


def _describe(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, IntegrationError) else f"{type(exc).__name__}: {exc}"
    return text[:900]


@dataclass
class _OrgOutcome:
    failures: list[str] = field(default_factory=list)
    served: bool = False


def pull_metrics(ports: MetricsPorts, options: MetricsOptions) -> RunReport:
    """One timer run: every due webinar of every configured org, fairly ordered, within the budget.

    One org's or webinar's failure is recorded on it (sync state, org health) and never stops the others.

    Raises:
        StoreError: Table Storage is unreachable or refuses the app (a TransientError or ConfigError).
        ConfigError: the app cannot open any credentials (no key configured, Key Vault refuses the app).
    """
    deadline = ports.monotonic() + options.budget_seconds
    signpost = ports.clock()
    report = RunReport()
    limiters: dict[str, RateLimiter] = {}
    outcomes: dict[str, _OrgOutcome] = {}
    queue: list[tuple[WebinarSyncState, str]] = []
    for org in ports.orgs.list_orgs():
        outcome = outcomes.setdefault(org.org_id, _OrgOutcome())
        try:
            states, problems = _plan_org(ports, org, signpost)
        except Exception as exc:
            if _is_run_failure(exc):
                raise
            _org_failed(report, outcome, org.org_id, f"planning failed: {_describe(exc)}")
            continue
        for problem in problems:
            outcome.failures.append(problem)
            report.webinars.append(WebinarReport(org.org_id, "", "error", error=problem))
        queue.extend((state, org.org_id) for state in states)
    queue.sort(key=lambda item: priority(item[0]))

    for index, (state, org_id) in enumerate(queue):
        if org_id in report.orgs_failed:
            continue
        if ports.monotonic() >= deadline:
            report.left_for_next_run = len(queue) - index
            break
        current = ports.orgs.get(org_id)  # read per use: a removed org gets no further ON24 call
        if current is None:
            outcomes.pop(org_id, None)
            continue
        org = current
        outcome = outcomes.setdefault(org_id, _OrgOutcome())
        limiter = limiters.get(org.client_id) or limiters.setdefault(org.client_id, _limiter(ports, options, org))
        # A fair share of what is left, so one huge webinar cannot starve the others; it resumes next run.
        now_mono = ports.monotonic()
        share = max(MIN_SLICE_SECONDS, (deadline - now_mono) / (len(queue) - index))
        slice_deadline = min(deadline, now_mono + share)
        try:
            result = _sync_webinar(ports, options, org, state, limiter, signpost=signpost, deadline=slice_deadline)
        except _AppFault as fault:
            raise fault.error from None
        except CredentialsRejectedError as exc:
            reason = f"ON24 rejected the org's credentials: {exc}"
            ports.orgs.set_status(org_id, "rejected", reason)
            _org_failed(report, outcome, org_id, reason)
            _log.error(
                "metrics: org %s disabled until its credentials are fixed: %s",
                org_id,
                exc,
                extra={"org_id": org_id, "on24_event_id": state.webinar_id},
            )
            continue
        except Exception as exc:
            if _is_run_failure(exc):
                raise
            reason = f"webinar {state.webinar_id}: {_describe(exc)}"
            _save_error(ports, state, reason, signpost)
            report.webinars.append(WebinarReport(org_id, state.webinar_id, "error", error=reason))
            if _org_wide(exc):  # the org's credentials, Dataverse or ON24 account: its other webinars wait
                _org_failed(report, outcome, org_id, reason)
            else:
                outcome.failures.append(reason)
            _log.error(
                "metrics: webinar %s of org %s failed: %s",
                state.webinar_id,
                org_id,
                reason,
                extra={"org_id": org_id, "on24_event_id": state.webinar_id, "error": type(exc).__name__},
            )
            continue
        outcome.served = True
        report.webinars.append(result)
        if result.status == "error" and result.error:
            outcome.failures.append(f"webinar {state.webinar_id}: {result.error}")
        if org.status == "rejected" and result.status in ("ok", "partial"):
            ports.orgs.set_status(org_id, "active", None)

    for org_id, outcome in outcomes.items():
        if outcome.failures:
            ports.orgs.set_metrics_health(org_id, "error", "; ".join(outcome.failures), signpost)
        elif outcome.served:
            ports.orgs.set_metrics_health(org_id, "ok", None, signpost)
    return report


def _org_wide(exc: BaseException) -> bool:
    """Failures that concern the whole org (not one webinar): its credentials, its Dataverse, reachability."""
    return isinstance(exc, TransientError | ConfigError | DecryptionError) or not isinstance(
        exc, PermanentError | ValueError
    )


def _org_failed(report: RunReport, outcome: _OrgOutcome, org_id: str, reason: str) -> None:
    report.orgs_failed[org_id] = reason
    outcome.failures.append(reason)
    _log.error("metrics: org %s failed this run: %s", org_id, reason, extra={"org_id": org_id})


def _plan_org(ports: MetricsPorts, org: OrgRecord, signpost: datetime) -> tuple[list[WebinarSyncState], list[str]]:
    """The org's due webinars: those it has state for, those the admin listed, and new ones found in the
    ledger since the last scan; plus a problem for each listed webinar id ON24 cannot have."""
    known = {state.webinar_id: state for state in ports.sync.list(org.org_id)}
    since = ports.sync.discovery_mark(org.org_id)
    found = ports.ledger.webinars_touched_since(org.org_id, since) | set(org.webinar_ids)
    problems = [f"webinar {w!r}: ON24 event id must be a positive number" for w in sorted(found) if not _is_event_id(w)]
    for webinar_id in sorted(found - known.keys()):
        if _is_event_id(webinar_id):
            # Saved before the discovery mark moves on: a webinar this run does not reach is still known next run.
            fresh = WebinarSyncState(org_id=org.org_id, webinar_id=webinar_id)
            known[webinar_id] = ports.sync.save(fresh) or ports.sync.get(org.org_id, webinar_id) or fresh
    ports.sync.set_discovery_mark(org.org_id, signpost - DISCOVERY_OVERLAP)
    due = [state for state in known.values() if _is_event_id(state.webinar_id) and is_due(state, signpost)]
    return due, problems


def _is_event_id(value: str) -> bool:
    return is_webinar_id(value)


def _save_error(ports: MetricsPorts, state: WebinarSyncState, error: str, now: datetime) -> None:
    current = ports.sync.get(state.org_id, state.webinar_id) or state
    ports.sync.save(replace(current, status="error", last_error=error, last_attempt_at=now))


def _on24_for(ports: MetricsPorts, org: OrgRecord, limiter: RateLimiter) -> On24Metrics:
    try:
        return ports.on24_for(org, limiter)
    except ConfigError as exc:  # the key configuration: the same for every org
        raise _AppFault(exc) from exc


def _resume(
    on24: On24Metrics, state: WebinarSyncState, start: datetime | None, end: datetime
) -> tuple[int, list[Attendee], int]:
    """Where a resumed pull picks up: (page index, that page's attendees, how many of them were written).

    Re-reads the page before the recorded one (and up to ``MAX_STEP_BACK_PAGES`` more, if the list moved up
    by more than a page) and continues after the last anchored attendee found. Without an anchor, or when none
    is found, the pending window is read again from page 0 (idempotent writes; unchanged rows are skipped).
    """
    if state.pending_anchor:
        last = state.pending_page - 1
        for page_index in range(last, max(-1, last - 1 - MAX_STEP_BACK_PAGES), -1):
            pages = on24.iter_attendee_pages(state.webinar_id, start=start, end=end, first_page=page_index)
            page = next(iter(pages), None)
            position = anchor_position(page[1], state.pending_anchor) if page is not None else None
            if page is not None and position is not None:
                return page[0], page[1], position
        _log.info(
            "metrics: webinar %s of org %s: the list moved too far since the last run; re-reading its window",
            state.webinar_id,
            state.org_id,
            extra={"org_id": state.org_id, "on24_event_id": state.webinar_id},
        )
    return -1, [], 0


def _sync_webinar(
    ports: MetricsPorts,
    options: MetricsOptions,
    org: OrgRecord,
    state: WebinarSyncState,
    limiter: RateLimiter,
    *,
    signpost: datetime,
    deadline: float,
    force: bool = False,
) -> WebinarReport:
    """Pull one webinar (``force``: even when it is not due, for an on-demand pull) until done or ``deadline``."""
    crm = ports.crm_for(org)
    if crm is None:
        return WebinarReport(org.org_id, state.webinar_id, "skipped", error="no Dataverse URL for the org")
    on24 = _on24_for(ports, org, limiter)
    now = ports.clock()
    if state.meta_fetched_at is None or now - state.meta_fetched_at >= META_REFRESH:
        try:
            state = with_event(state, on24.get_event(state.webinar_id), now=now, grace=options.grace)
        except NotFoundError as exc:
            state = replace(
                state,
                status="not found",
                last_error=str(exc),
                last_attempt_at=now,
                window_end=now,
                meta_fetched_at=now,
                last_success_at=now,
            )
            ports.sync.save(state)
            return WebinarReport(org.org_id, state.webinar_id, "not found", error=str(exc))
        saved = ports.sync.save(state)
        if saved is None:
            return WebinarReport(org.org_id, state.webinar_id, "busy", error="another run is syncing this webinar")
        state = saved
    if not force and not is_due(state, signpost):
        return WebinarReport(org.org_id, state.webinar_id, "not due")

    resumed = state.pending_end is not None
    start, end, _ = pull_window(state, signpost=signpost, lookback=options.lookback)
    counts = dict.fromkeys(("pulled", "matched", "written", "unchanged", "unmatched", "failed"), 0)
    if resumed:
        counts.update({k: v for k, v in state.counts.items() if k in counts})  # resumed pull: keep its tally
    matcher = Matcher(ports.ledger.entries(org.org_id, on24_event_id=state.webinar_id, columns=MATCH_COLUMNS))
    pending: dict[str, dict[str, Any]] = {}
    hashes: dict[str, tuple[str, str]] = {}  # check-in id -> (registration id, hash)

    def flush() -> None:
        if not pending:
            return
        batch, batch_hashes = list(pending.items()), dict(hashes)
        pending.clear()  # a failed batch is not sent again by this run: the next pull re-reads its attendees
        hashes.clear()
        result = crm.upsert_checkins(batch, max_parallel=options.max_parallel)
        written = {cid: batch_hashes[cid] for cid in result.succeeded}
        ports.ledger.set_metrics_hashes(org.org_id, dict(written.values()))
        for reg, value in written.values():
            matcher.remember(reg, value)
        counts["written"] += len(result.succeeded)
        counts["failed"] += len(result.failed)
        for cid, reason in list(result.failed.items())[:5]:
            registration = batch_hashes[cid][0]
            _log.error(
                "metrics: check-in %s of org %s refused by Dataverse: %s",
                cid,
                org.org_id,
                reason,
                extra={"org_id": org.org_id, "on24_event_id": state.webinar_id, "registration_id": registration},
            )

    def take(attendees: Sequence[Attendee]) -> None:
        for attendee in attendees:
            counts["pulled"] += 1
            entry = matcher.match(attendee)
            if entry is None:
                counts["unmatched"] += 1
                continue
            counts["matched"] += 1
            fields = checkin_fields(entry, attendee)
            digest = fields_hash(fields)
            if digest == entry.metrics_hash:
                counts["unchanged"] += 1
                continue
            cid = checkin_id(org.org_id, entry.registration_id)
            pending[cid] = fields
            hashes[cid] = (entry.registration_id, digest)

    def checkpoint(page: int, attendees: Sequence[Attendee]) -> WebinarSyncState | None:
        flush()
        return ports.sync.save(
            replace(
                state,
                pending_start=start,
                pending_end=end,
                pending_page=page + 1,
                pending_anchor=tuple(k for k in map(attendee_key, attendees) if k),
                counts=dict(counts),
                status="in progress",
                last_attempt_at=now,
            )
        )

    def pages() -> Iterator[tuple[int, Sequence[Attendee], Sequence[Attendee]]]:
        """(page index, the attendees on it new to this pull, the whole page), in list order."""
        first = 0
        if resumed and state.pending_page > 0:
            page_index, attendees, position = _resume(on24, state, start, end)
            if page_index >= 0:
                yield page_index, attendees[position:], attendees
                first = page_index + 1
        for page_index, attendees in on24.iter_attendee_pages(state.webinar_id, start=start, end=end, first_page=first):
            yield page_index, attendees, attendees

    try:
        for page, new, whole in pages():
            take(new)
            if len(pending) >= options.chunk_rows or ports.monotonic() >= deadline:
                saved = checkpoint(page, whole)
                if saved is None:
                    return WebinarReport(org.org_id, state.webinar_id, "busy", counts, "another run took over")
                state = saved
                if ports.monotonic() >= deadline:
                    raise _OutOfTime
        flush()
    except _OutOfTime:
        _log.info(
            "metrics: webinar %s of org %s continues next run (page %d)",
            state.webinar_id,
            org.org_id,
            state.pending_page,
            extra={"org_id": org.org_id, "on24_event_id": state.webinar_id, **counts},
        )
        return WebinarReport(org.org_id, state.webinar_id, "partial", counts)

    done = replace(
        state,
        replication_key_value=bookmark_after(state, start, end, resumed=resumed),
        pending_start=None,
        pending_end=None,
        pending_page=0,
        pending_anchor=(),
        last_success_at=now,
        last_attempt_at=now,
        status="ok",
        last_error=None,
        counts=dict(counts),
    )
    ports.sync.save(done)
    _log.info(
        "metrics: webinar %s of org %s synced: %s",
        state.webinar_id,
        org.org_id,
        ", ".join(f"{k} {v}" for k, v in counts.items()),
        extra={"org_id": org.org_id, "on24_event_id": state.webinar_id, **counts},
    )
    if counts["unmatched"]:
        _log.warning(
            "metrics: %d attendees of webinar %s (org %s) match no CRM registration (walk-ins)",
            counts["unmatched"],
            state.webinar_id,
            org.org_id,
            extra={"org_id": org.org_id, "on24_event_id": state.webinar_id},
        )
    return WebinarReport(org.org_id, state.webinar_id, "ok", counts)


# ---- on demand: one webinar of one org (POST /api/orgs/{orgId}/webinars/{webinarId}/pull) ------------------------
def _limiter(ports: MetricsPorts, options: MetricsOptions, org: OrgRecord) -> RateLimiter:
    if ports.limiter_for is not None:
        return ports.limiter_for(org)
    return RateLimiter(options.attendee_calls_per_minute, 60.0)


def pull_webinar(
    ports: MetricsPorts, options: MetricsOptions, org_id: str, webinar_id: str, *, budget_seconds: float
) -> WebinarReport:
    """Pull one webinar of one org now, due or not, for at most ``budget_seconds``.

    The same machinery as the timer run: the webinar's sync state (a pull left unfinished by a run is resumed,
    and one this call leaves unfinished is resumed by the next run or the next call), the account's rate
    limiter, idempotent check-in upserts. A failure is recorded on the webinar as the run records it.

    Returns:
        The report: ``ok`` (done), ``partial`` (the budget ran out; it continues later), ``busy`` (a run is
        pulling it now), ``not found`` (ON24 has no such webinar) or ``skipped`` (no Dataverse URL).

    Raises:
        NotConfiguredError: the org has no credentials.
        CredentialsRejectedError: ON24 refused the org's credentials (the org is flagged ``rejected``).
        TransientError, ConfigError, PermanentError: recorded on the webinar's sync state, then raised.
    """
    org = ports.orgs.get(org_id)
    if org is None:
        raise NotConfiguredError(f"org {org_id!r} has no ON24 credentials: the integration is disabled for it")
    if not _is_event_id(webinar_id):
        raise ValueError("webinar id must be a positive ON24 event id")
    deadline = ports.monotonic() + budget_seconds
    signpost = ports.clock()
    state = ports.sync.get(org_id, webinar_id)
    if state is None:
        fresh = WebinarSyncState(org_id=org_id, webinar_id=webinar_id)
        state = ports.sync.save(fresh) or ports.sync.get(org_id, webinar_id) or fresh
    try:
        report = _sync_webinar(
            ports, options, org, state, _limiter(ports, options, org), signpost=signpost, deadline=deadline, force=True
        )
    except _AppFault as fault:
        raise fault.error from None
    except CredentialsRejectedError as exc:
        ports.orgs.set_status(org_id, "rejected", f"ON24 rejected the org's credentials: {exc}")
        _save_error(ports, state, f"webinar {webinar_id}: {_describe(exc)}", signpost)
        raise
    except Exception as exc:
        if not _is_run_failure(exc):
            _save_error(ports, state, f"webinar {webinar_id}: {_describe(exc)}", signpost)
        raise
    if org.status == "rejected" and report.status in ("ok", "partial"):
        ports.orgs.set_status(org_id, "active", None)
    _log.info(
        "metrics: on-demand pull of webinar %s (org %s): %s",
        webinar_id,
        org_id,
        report.status,
        extra={"org_id": org_id, "on24_event_id": webinar_id, "status": report.status, **report.counts},
    )
    return report
