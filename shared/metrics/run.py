"""PullMetrics' use case: bring webinar attendance into CRM check-ins, incrementally and idempotently.

Per org with credentials, the webinars the ledger knows about (plus any the admin listed) are pulled from their
start until their on-demand window closes plus a grace period (``shared.metrics.schedule``), each by
``shared.metrics.pull``; attendees become check-ins through ``shared.metrics.checkins``.

Tenants are isolated: any failure of one org or one webinar (bad stored data, credentials the provider refuses, a
Dataverse that refuses the app's identity, a token request Entra ID refuses, a provider error) is recorded on
that webinar's sync state and on the org (``CredentialsStatus`` shows it), and the run goes on with the
others. The run raises only when it cannot work at all: Table Storage unreachable or refusing the app, or
the app's own configuration (e.g. no credentials key).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from shared.emailhash import EmailHasher
from shared.errors import (
    ConfigError,
    CredentialsRejectedError,
    DecryptionError,
    IntegrationError,
    NotConfiguredError,
    PermanentError,
    TransientError,
)
from shared.fieldmap import FieldMapping
from shared.health.tally import tallied_counts
from shared.ids import is_webinar_id
from shared.metrics.checkins import CheckinSink
from shared.metrics.index import REFRESH_OVERLAP
from shared.metrics.noshow import closing_due
from shared.metrics.pull import MATCH_COLUMNS, IndexStore, Pull, WebinarReport, pull_webinar_now
from shared.metrics.recent import RecentRows
from shared.metrics.schedule import is_due, priority
from shared.ratelimit import RateLimiter
from shared.store.credentials import MetricsStatus, OrgRecord, OrgStatus
from shared.store.ledger import LedgerReader
from shared.store.sync_state import WebinarSyncState
from shared.store.tables import StoreError
from shared.webinars import Attendance

_log = logging.getLogger(__name__)

DISCOVERY_OVERLAP = timedelta(minutes=10)
MIN_SLICE_SECONDS = 30.0


# ---- ports ----------------------------------------------------------------------------------------------------
class OrgDirectory(Protocol):
    def list_orgs(self) -> Iterator[OrgRecord]: ...
    def get(self, org_id: str) -> OrgRecord | None: ...
    def set_status(self, org_id: str, status: OrgStatus, reason: str | None) -> bool: ...
    def set_metrics_health(self, org_id: str, status: MetricsStatus, reason: str | None, at: datetime) -> bool: ...


class LedgerIndex(LedgerReader, Protocol):
    def webinars_touched_since(self, org_id: str, since: datetime | None) -> set[str]: ...


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
    provider_for: Callable[[OrgRecord, RateLimiter], Attendance]
    crm_for: Callable[[OrgRecord], CheckinSink | None]
    indexes: IndexStore
    email_hasher: Callable[[], EmailHasher]
    """The match index's keyed email hash (built on first use: it reads the credentials key)."""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic
    limiter_for: Callable[[OrgRecord], RateLimiter] | None = None
    """Paces a provider account's attendance calls; None: one limiter per account per run (see ``_limiter``)."""


@dataclass(frozen=True)
class MetricsOptions:
    """A run's limits, from the settings (``PULL_METRICS_BUDGET_SECONDS``, ``METRICS_GRACE_DAYS``,
    ``METRICS_LOOKBACK_HOURS``, ``ON24_ATTENDEE_CALLS_PER_MINUTE``), whose defaults are stated there."""

    budget_seconds: float
    grace: timedelta
    lookback: timedelta
    attendee_calls_per_minute: int
    chunk_rows: int = 4000
    max_parallel: int = 4


@dataclass
class RunReport:
    webinars: list[WebinarReport] = field(default_factory=list)
    orgs_failed: dict[str, str] = field(default_factory=dict)
    left_for_next_run: int = 0

    def total(self, counter: str) -> int:
        return sum(w.counts.get(counter, 0) for w in self.webinars)


# ---- the use case -----------------------------------------------------------------------------------------------
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
    recents: dict[str, RecentRows] = {}  # per org: one read of its recent ledger rows for all its webinars
    outcomes: dict[str, _OrgOutcome] = {}
    queue: list[tuple[WebinarSyncState, str]] = []
    for org in ports.orgs.list_orgs():
        outcome = outcomes.setdefault(org.org_id, _OrgOutcome())
        recent = recents.setdefault(org.org_id, RecentRows(ports.ledger, org.org_id, ports.clock))
        try:
            states, problems = _plan_org(ports, org, signpost, recent)
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
        limiter = limiters.get(org.account_id) or limiters.setdefault(org.account_id, _limiter(ports, options, org))
        # A fair share of what is left, so one huge webinar cannot starve the others; it resumes next run.
        now_mono = ports.monotonic()
        share = max(MIN_SLICE_SECONDS, (deadline - now_mono) / (len(queue) - index))
        slice_deadline = min(deadline, now_mono + share)
        try:
            recent = recents.setdefault(org_id, RecentRows(ports.ledger, org_id, ports.clock))
            result = _sync_webinar(ports, options, org, state, limiter, signpost=signpost, deadline=slice_deadline,
                                   recent=recent)  # fmt: skip
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


def _plan_org(
    ports: MetricsPorts, org: OrgRecord, signpost: datetime, recent: RecentRows | None = None
) -> tuple[list[WebinarSyncState], list[str]]:
    """The org's due webinars: those it has state for, those the admin listed, and new ones found in the
    ledger since the last scan; plus a problem for each listed webinar id ON24 cannot have."""
    known = {state.webinar_id: state for state in ports.sync.list(org.org_id)}
    found = _discover(ports, org.org_id, ports.sync.discovery_mark(org.org_id), signpost, recent)
    found |= set(org.webinar_ids)
    problems = [f"webinar {w!r}: ON24 event id must be a positive number" for w in sorted(found) if not _is_event_id(w)]
    for webinar_id in sorted(found - known.keys()):
        if _is_event_id(webinar_id):
            # Saved before the discovery mark moves on: a webinar this run does not reach is still known next run.
            fresh = WebinarSyncState(org_id=org.org_id, webinar_id=webinar_id)
            known[webinar_id] = ports.sync.save(fresh) or ports.sync.get(org.org_id, webinar_id) or fresh
    ports.sync.set_discovery_mark(org.org_id, signpost - DISCOVERY_OVERLAP)
    mapping = FieldMapping.from_json(org.field_mapping)  # unreadable (ConfigError): this org fails, the others run
    due = [
        state
        for state in known.values()
        if _is_event_id(state.webinar_id) and (is_due(state, signpost) or closing_due(mapping, state, signpost))
    ]
    return due, problems


def _discover(
    ports: MetricsPorts, org_id: str, since: datetime | None, now: datetime, recent: RecentRows | None = None
) -> set[str]:
    """Webinars of the ledger rows written since the last scan. The first scan takes them from the org's count
    tally (``shared.health.tally``), built now if there is none: the one read of the partition the health count
    needs anyway, so a first sync reads the partition once less. Later scans are the run's read of the org's
    recent rows (``shared.metrics.recent``), which its webinars' index refreshes then share."""
    if since is None:
        return set(tallied_counts(org_id, ports.ledger, ports.indexes, now).counts.webinars)
    read_from = since - (REFRESH_OVERLAP - DISCOVERY_OVERLAP)  # what the indexes refreshed last run will ask
    found = None if recent is None else recent.webinars_since(since, read_from=read_from, columns=MATCH_COLUMNS)
    return ports.ledger.webinars_touched_since(org_id, since) if found is None else found


def _is_event_id(value: str) -> bool:
    return is_webinar_id(value)


def _save_error(ports: MetricsPorts, state: WebinarSyncState, error: str, now: datetime) -> None:
    current = ports.sync.get(state.org_id, state.webinar_id) or state
    ports.sync.save(replace(current, status="error", last_error=error, last_attempt_at=now))


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
    recent: RecentRows | None = None,
) -> WebinarReport:
    """Pull one webinar of an org with its CRM and provider account (``force``: even when it is not due)."""
    crm = ports.crm_for(org)
    if crm is None:
        return WebinarReport(org.org_id, state.webinar_id, "skipped", error="no Dataverse URL for the org")
    try:
        provider = ports.provider_for(org, limiter)
        email_key = ports.email_hasher()
    except ConfigError as exc:  # the key configuration: the same for every org
        raise _AppFault(exc) from exc
    pull = Pull(
        org_id=org.org_id,
        provider=provider,
        crm=crm,
        ledger=ports.ledger,
        indexes=ports.indexes,
        sync=ports.sync,
        clock=ports.clock,
        monotonic=ports.monotonic,
        grace=options.grace,
        lookback=options.lookback,
        chunk_rows=options.chunk_rows,
        max_parallel=options.max_parallel,
        email_key=email_key,
        mapping=FieldMapping.from_json(org.field_mapping),
        recent=recent,
    )
    return pull_webinar_now(pull, state, signpost=signpost, deadline=deadline, force=force)


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
