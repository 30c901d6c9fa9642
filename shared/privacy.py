"""Privacy: how long personal data is kept, and how one person or a whole org is erased.

Three use cases:

- **Retention** (``housekeeping``, run by the PullMetrics timer within its budget). Once a webinar's metrics
  window has closed (its on-demand end plus ``METRICS_GRACE_DAYS``: the sync-state row's ``window_end``) and
  no pull of it is unfinished, its ledger rows drop their emails (``Email`` and the emails in ``Pending``).
  The ids that keep redelivery and ordering safe stay: registration id, ON24 event id, ON24 registrant id,
  message rank, CRM ids. A row that is busy (a live lease, its quiet time, an unfinished intent, pending
  registrants still to reconcile) is left for a later pass; every write is conditional on the version read,
  so none lands over a lease. Each webinar keeps a bookmark in its sync-state row: where an unfinished pass
  stopped (``retention_cursor``) and when a pass last left nothing behind (``retention_cleared_at``; a day
  later the webinar is checked again, for rows written since). Rejected message bodies (and their blobs)
  are deleted ``REJECTED_RETENTION_DAYS`` after they were kept.
- **Erasure of one person** (``forget_person``, the admin route ``POST .../webinar/forget``): every ledger row
  of the org holding the email (confirmed or pending, any case, any webinar) is forgotten through
  RegisterAttendee's own erasure (``shared.registration.forget_registration``: ON24's forget, then only ids
  and the message order stay), and so is every registration known only by a parked message holding the email;
  the org's kept rejected bodies and the parked messages (older than the erasure) that mention the email are
  deleted. The audit line says who, when and how many, never the email.
- **Leaving** (``purge_org``, ``DELETE .../webinar/credentials?purge=true``): after the credentials row is
  deleted (the off switch), a purge request is recorded, then the org's ledger partition, parked
  registrations, sync state and rejected bodies are deleted in bounded batches. What the request does not
  finish, the timer does (``housekeeping``); the request is closed by a sweep that runs after
  ``PURGE_SETTLE`` (work already under way when the org left may still write a row until then) and finds
  nothing left.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from shared.errors import TransientError
from shared.store.credentials import OrgRecord
from shared.store.ledger import LedgerEntry
from shared.store.parked import ParkedMessage
from shared.store.purges import PURGED_PARTS, PurgeRequest
from shared.store.rejected import RejectedMessage
from shared.store.sync_state import WebinarSyncState

_log = logging.getLogger(__name__)

RETENTION_RECHECK = timedelta(days=1)  # a cleared webinar is looked at again daily, for rows written since
RETENTION_OVERLAP = timedelta(minutes=10)  # clock differences between instances writing UpdatedAt
PURGE_SETTLE = timedelta(minutes=10)  # functionTimeout: no invocation that began before a purge runs longer
INLINE_PURGE_ROWS = 1000  # what DELETE ?purge=true deletes itself (10 transactions); more -> 202, the timer goes on
BATCH_ROWS = 1000  # rows per query of the timer's work (purge, expiry); each then goes in transactions of 100
CLEAR_BATCH = 100  # ledger rows cleared per entity group transaction
ERASURE_REASON = "erasure requested through the admin API"
ERASED = ("forgotten", "duplicate")  # duplicate: an equal forget was decided already; "stale" is not erased


# ---- ports ----------------------------------------------------------------------------------------------------
class LedgerPrivacy(Protocol):
    def personal_rows(
        self, org_id: str, webinar_id: str, *, after: str | None = None, updated_since: datetime | None = None
    ) -> Iterator[LedgerEntry]: ...
    def clear_personal_data(self, entries: Sequence[LedgerEntry]) -> list[str]: ...
    def registrations_of(self, org_id: str, *, contact_id: str | None, email: str | None) -> list[str]: ...
    def delete_org_rows(self, org_id: str, *, limit: int) -> int: ...
    def delete_parked(self, org_id: str, *, limit: int) -> int: ...


class SyncStatePrivacy(Protocol):
    def list_all(self) -> list[WebinarSyncState]: ...
    def save(self, state: WebinarSyncState) -> WebinarSyncState | None: ...
    def delete_org_rows(self, org_id: str, *, limit: int) -> int: ...


class RejectedPrivacy(Protocol):
    def expire(self, cutoff: datetime, *, limit: int) -> tuple[int, bool]: ...
    def list_for_org(self, org_id: str) -> Iterator[RejectedMessage]: ...
    def delete(self, messages: Sequence[RejectedMessage]) -> int: ...
    def delete_org_rows(self, org_id: str, *, limit: int) -> int: ...


class ParkedLookup(Protocol):
    def for_org(self, org_id: str) -> list[ParkedMessage]: ...
    def remove(self, message: ParkedMessage) -> bool: ...


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

    def __call__(self, org_id: str, registration_id: str, *, requested_at: datetime, reason: str) -> ErasureOutcome: ...


@dataclass(frozen=True)
class PrivacyPorts:
    ledger: LedgerPrivacy
    sync: SyncStatePrivacy
    rejected: RejectedPrivacy
    parked: ParkedLookup
    purges: PurgeLog
    orgs: OrgSwitch
    forget: ForgetRegistration
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class PrivacyOptions:
    grace: timedelta = timedelta(days=30)
    """METRICS_GRACE_DAYS: also how long a webinar ON24 does not know keeps its rows' emails."""
    rejected_retention: timedelta = timedelta(days=30)
    """REJECTED_RETENTION_DAYS."""


# ---- retention: pure rules ------------------------------------------------------------------------------------
def closes_at(state: WebinarSyncState, grace: timedelta) -> datetime | None:
    """When the webinar's ledger rows may drop their emails: the end of its metrics window (on-demand end plus
    grace, already in ``window_end``); for a webinar ON24 said it does not know, that moment plus the grace.
    None while the window is unknown or a pull of it is unfinished (matching may still need the emails)."""
    if state.window_end is None or state.pending_end is not None:
        return None
    return state.window_end + grace if state.status == "not found" else state.window_end


def retention_due(state: WebinarSyncState, now: datetime, grace: timedelta) -> bool:
    """A closed webinar whose rows were never cleared, whose pass is unfinished, or last cleared a day ago."""
    closed = closes_at(state, grace)
    if closed is None or now < closed:
        return False
    if state.retention_cursor is not None or state.retention_cleared_at is None:
        return True
    return now - state.retention_cleared_at >= RETENTION_RECHECK


def why_kept(entry: LedgerEntry, now: datetime) -> str | None:
    """Why a row must keep its personal data for now (registration work on it is not finished), or None."""
    if entry.lease_id and entry.lease_until and entry.lease_until > now:
        return "leased"
    if entry.quiet_until and entry.quiet_until > now:
        return "quiet"
    if entry.intent is not None:
        return "intent"
    current = entry.current
    if any(current is None or not ref.same(current) for ref in entry.pending):
        return "pending"
    return None


# ---- reports --------------------------------------------------------------------------------------------------
@dataclass
class HousekeepingReport:
    purged: dict[str, dict[str, int]] = field(default_factory=dict)
    """org -> rows deleted this run, per part."""
    purges_closed: list[str] = field(default_factory=list)
    rejected_expired: int = 0
    rows_cleared: int = 0
    rows_kept: dict[str, int] = field(default_factory=dict)
    """why_kept reason -> rows that keep personal data for now."""
    webinars_cleared: int = 0
    webinars_left: int = 0
    errors: list[str] = field(default_factory=list)
    out_of_time: bool = False


@dataclass(frozen=True)
class PurgeOutcome:
    request: PurgeRequest
    finished: bool
    """Nothing of the org's state is left (as of this sweep)."""
    closed: bool = False
    """The sweep ran after the settle time and found nothing left: the purge is over, its request gone."""

    def view(self) -> dict[str, object]:
        return purge_view(self.request)


def purge_view(request: PurgeRequest) -> dict[str, object]:
    """What an admin sees of a purge: ``running`` while rows remain, ``deleted`` once a sweep found none (the
    request stays until the final check after ``finalCheckAfter``)."""
    return {
        "status": "deleted" if request.deleted_at is not None else "running",
        "requestedAt": request.requested_at.isoformat(),
        "requestedBy": request.requested_by,
        "deleted": {part: request.deleted.get(part, 0) for part in PURGED_PARTS},
        "finalCheckAfter": (request.requested_at + PURGE_SETTLE).isoformat(),
    }


@dataclass(frozen=True)
class ErasureReport:
    erasure_id: str
    registrations: list[tuple[str, ErasureOutcome]]
    """(registration id, what RegisterAttendee's forget did) per registration found."""
    rejected_deleted: int
    parked_deleted: int = 0

    def view(self, org_id: str) -> dict[str, object]:
        def one(registration_id: str, outcome: ErasureOutcome) -> dict[str, object]:
            item: dict[str, object] = {"registrationId": registration_id, "outcome": outcome.status}
            if outcome.status not in ERASED and outcome.reason:
                item["reason"] = outcome.reason  # e.g. the integration is disabled: ON24 cannot be reached
            return item

        return {
            "orgId": org_id,
            "erasureId": self.erasure_id,
            "registrationsFound": len(self.registrations),
            "registrations": [one(reg, outcome) for reg, outcome in self.registrations],
            "rejectedMessagesDeleted": self.rejected_deleted,
            "parkedMessagesDeleted": self.parked_deleted,
        }


class ErasureIncompleteError(TransientError):
    """A fault stopped an erasure part-way: what is done stays done; the same request again finishes it."""


# ---- erasure of one person --------------------------------------------------------------------------------------
def forget_person(org_id: str, email: str, ports: PrivacyPorts, *, actor: str) -> ErasureReport:
    """Forget everything the org's state holds about the person with ``email``. Idempotent: a repeat finds
    nothing more (forgotten rows keep no email) and reports zero.

    Raises:
        ErasureIncompleteError: ON24 or storage failed transiently part-way (repeat the request).
        ConfigError: the app is misconfigured.
    """
    erasure_id = uuid.uuid4().hex
    requested_at = ports.clock()
    found: list[str] = []
    done: list[tuple[str, ErasureOutcome]] = []
    rejected_deleted = parked_deleted = 0

    def audit(complete: bool) -> None:
        _audit_erasure(org_id, actor, erasure_id, found, done, rejected_deleted, parked_deleted, complete=complete)

    try:
        # A registration parked during an outage may be known by its parked message only (no ledger row yet).
        parked = [m for m in ports.parked.for_org(org_id) if mentions(m.command.encode("utf-8"), email)]
        ledger_rows = ports.ledger.registrations_of(org_id, contact_id=None, email=email)
        found = list(dict.fromkeys([*ledger_rows, *(m.key for m in parked)]))
        for registration_id in found:
            outcome = ports.forget(org_id, registration_id, requested_at=requested_at, reason=ERASURE_REASON)
            done.append((registration_id, outcome))
        # A parked message older than the forget would only be stale when re-driven: it goes now, with the
        # person's data in it (one the forget itself was parked over is already replaced, and stays).
        parked_deleted = sum(1 for m in parked if m.message_at <= requested_at and ports.parked.remove(m))
        rejected_deleted = ports.rejected.delete(
            [m for m in ports.rejected.list_for_org(org_id) if mentions(m.body, email)]
        )
    except TransientError as exc:
        audit(False)
        raise ErasureIncompleteError(
            f"erasure {erasure_id} in org {org_id!r} stopped after {len(done)} of {len(found)} registrations: {exc}"
        ) from exc
    except BaseException:  # every attempt is audited, also one stopped by a configuration fault
        audit(False)
        raise
    audit(True)
    return ErasureReport(erasure_id, done, rejected_deleted, parked_deleted)


def mentions(body: bytes, email: str) -> bool:
    """Whether a kept message body holds the address ``email`` (any case), as raw text or inside a JSON string.

    The whole address must match: ``ann@x.example`` is not found in ``joann@x.example`` or ``ann@x.example.org``.
    """
    address = re.compile(r"(?<![\w.%+\-])" + re.escape(email) + r"(?![\w\-]|\.\w)", re.IGNORECASE)
    text = body.decode("utf-8", "replace")
    if address.search(text):
        return True
    try:
        data = json.loads(text.lstrip("\ufeff"))
    except (ValueError, RecursionError):
        return False
    return any(address.search(value) for value in _strings(data))


def _strings(value: object) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _audit_erasure(
    org_id: str,
    actor: str,
    erasure_id: str,
    found: Sequence[str],
    done: Sequence[tuple[str, ErasureOutcome]],
    rejected_deleted: int,
    parked_deleted: int,
    *,
    complete: bool,
) -> None:
    _log.log(
        logging.INFO if complete else logging.WARNING,
        "audit: erasure %s of one person in org %s by %s: %d of %d registrations forgotten, %d kept and %d parked "
        "messages deleted%s",
        erasure_id,
        org_id,
        actor,
        sum(1 for _, outcome in done if outcome.status in ERASED),
        len(found),
        rejected_deleted,
        parked_deleted,
        "" if complete else " (stopped by a fault; repeat the request)",
        extra={
            "org_id": org_id,
            "actor": actor,
            "audit": "person.forgotten",
            "erasure_id": erasure_id,
            "registrations": len(found),
            "registrations_done": len(done),
            "rejected_messages": rejected_deleted,
            "parked_messages": parked_deleted,
            "complete": complete,
        },
    )


# ---- leaving: purge an org's state ----------------------------------------------------------------------------
def purge_org(org_id: str, ports: PrivacyPorts, *, actor: str, max_rows: int = INLINE_PURGE_ROWS) -> PurgeOutcome:
    """Record a purge of the org's state and delete up to ``max_rows`` rows of it now.

    The caller has deleted the credentials row first (the off switch). Idempotent: a repeated request keeps
    the first request's time and continues where the last sweep stopped.
    """
    request = ports.purges.open(org_id, actor=actor, now=ports.clock())
    outcome = _purge_step(ports, request, max_rows=max_rows)
    _log.info(
        "audit: purge of org %s by %s %s (%s)",
        org_id,
        actor,
        "deleted every row" if outcome.finished else "continues in the timer",
        _counts(outcome.request.deleted),
        extra={"org_id": org_id, "actor": actor, "audit": "org.purged", "finished": outcome.finished},
    )
    return outcome


def _purge_step(
    ports: PrivacyPorts, request: PurgeRequest, *, max_rows: int | None, deadline: float | None = None
) -> PurgeOutcome:
    """Delete up to ``max_rows`` of the org's rows (until ``deadline``), record progress; close the request
    when a sweep that began after the settle time finds nothing left."""
    began = ports.clock()
    swept, finished = _sweep(ports, request.org_id, max_rows=max_rows, deadline=deadline)
    total = {part: request.deleted.get(part, 0) + swept.get(part, 0) for part in PURGED_PARTS}
    request = replace(request, deleted=total, deleted_at=began if finished else None)
    closed = finished and began >= request.requested_at + PURGE_SETTLE
    if closed:
        ports.purges.close(request.org_id)
    else:
        ports.purges.save(request)
    return PurgeOutcome(request, finished, closed)


def _sweep(
    ports: PrivacyPorts, org_id: str, *, max_rows: int | None, deadline: float | None
) -> tuple[dict[str, int], bool]:
    parts: list[tuple[str, Callable[..., int]]] = [
        ("ledger", ports.ledger.delete_org_rows),
        ("parked", ports.ledger.delete_parked),
        ("syncState", ports.sync.delete_org_rows),
        ("rejected", ports.rejected.delete_org_rows),
    ]
    deleted = dict.fromkeys(PURGED_PARTS, 0)
    budget = max_rows
    for part, delete in parts:
        while True:
            if (budget is not None and budget <= 0) or (deadline is not None and ports.monotonic() >= deadline):
                return deleted, False
            asked = BATCH_ROWS if budget is None else min(budget, BATCH_ROWS)
            count = delete(org_id, limit=asked)
            deleted[part] += count
            if budget is not None:
                budget -= count
            if count < asked:
                break
    return deleted, True


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items())


# ---- the timer's share: purges, expiry, retention ---------------------------------------------------------------
def housekeeping(ports: PrivacyPorts, options: PrivacyOptions, *, budget_seconds: float) -> HousekeepingReport:
    """One timer run's privacy work, oldest obligation first, within ``budget_seconds``; what is left waits
    for the next run (every step resumes where it stopped). One step's failure is logged and the others run.

    Raises:
        Nothing: storage faults are recorded in the report (the metrics run that follows meets them too).
    """
    deadline = ports.monotonic() + budget_seconds
    report = HousekeepingReport()
    steps: list[tuple[str, Callable[[PrivacyPorts, PrivacyOptions, float, HousekeepingReport], None]]] = [
        ("purges", _continue_purges),
        ("rejected bodies", _expire_rejected),
        ("ledger retention", _clear_closed_webinars),
    ]
    for name, step in steps:
        if ports.monotonic() >= deadline:
            report.out_of_time = True
            break
        try:
            step(ports, options, deadline, report)
        except Exception as exc:
            report.errors.append(f"{name}: {type(exc).__name__}: {exc}"[:500])
            _log.error("housekeeping: %s failed: %s", name, exc, extra={"error": type(exc).__name__})
    return report


def _continue_purges(ports: PrivacyPorts, options: PrivacyOptions, deadline: float, report: HousekeepingReport) -> None:
    for request in ports.purges.list():
        if ports.monotonic() >= deadline:
            report.out_of_time = True
            return
        ports.orgs.delete(request.org_id)  # the off switch stays off while the purge runs
        outcome = _purge_step(ports, request, max_rows=None, deadline=deadline)
        swept = {part: outcome.request.deleted[part] - request.deleted.get(part, 0) for part in PURGED_PARTS}
        report.purged[request.org_id] = swept
        if outcome.closed:
            report.purges_closed.append(request.org_id)
        else:
            report.out_of_time = report.out_of_time or not outcome.finished
        _log.info(
            "housekeeping: purge of org %s: %s this run; %s",
            request.org_id,
            _counts(swept),
            "finished" if outcome.closed else "final check pending" if outcome.finished else "continues next run",
            extra={"org_id": request.org_id, "purge_finished": outcome.closed},
        )


def _expire_rejected(ports: PrivacyPorts, options: PrivacyOptions, deadline: float, report: HousekeepingReport) -> None:
    cutoff = ports.clock() - options.rejected_retention
    while ports.monotonic() < deadline:
        deleted, finished = ports.rejected.expire(cutoff, limit=BATCH_ROWS)
        report.rejected_expired += deleted
        if finished:
            break
    else:
        report.out_of_time = True
    if report.rejected_expired:
        _log.info(
            "housekeeping: %d rejected messages (with their body blobs) kept longer than %d days deleted",
            report.rejected_expired,
            options.rejected_retention.days,
            extra={"rejected_expired": report.rejected_expired},
        )


def _clear_closed_webinars(
    ports: PrivacyPorts, options: PrivacyOptions, deadline: float, report: HousekeepingReport
) -> None:
    now = ports.clock()
    due = [s for s in ports.sync.list_all() if retention_due(s, now, options.grace)]
    # Unfinished passes first, then never cleared, then the webinar that closed longest ago.
    due.sort(key=lambda s: (s.retention_cursor is None, s.retention_cleared_at is not None, s.window_end or now))
    for index, state in enumerate(due):
        if ports.monotonic() >= deadline:
            report.webinars_left += len(due) - index
            report.out_of_time = True
            return
        _clear_webinar(ports, state, now, deadline, report)


def _clear_webinar(
    ports: PrivacyPorts, state: WebinarSyncState, now: datetime, deadline: float, report: HousekeepingReport
) -> None:
    """One retention pass over a closed webinar's rows that hold personal data; it stops at ``deadline`` with a
    cursor and resumes there. Only a pass run whole within one run, leaving nothing, marks the webinar cleared."""
    resumed = state.retention_cursor is not None
    since = None if resumed or state.retention_cleared_at is None else state.retention_cleared_at - RETENTION_OVERLAP
    rows = ports.ledger.personal_rows(
        state.org_id, state.webinar_id, after=state.retention_cursor, updated_since=since
    )
    kept: dict[str, int] = {}
    cleared = 0
    last_key: str | None = None
    stopped = False
    for chunk in _chunks(rows, CLEAR_BATCH):
        clear = []
        for entry in chunk:
            reason = why_kept(entry, now)
            if reason is None:
                clear.append(entry)
            else:
                kept[reason] = kept.get(reason, 0) + 1
        done = ports.ledger.clear_personal_data(clear)
        cleared += len(done)
        if len(done) < len(clear):
            kept["changed"] = kept.get("changed", 0) + len(clear) - len(done)
        last_key = chunk[-1].registration_id
        if ports.monotonic() >= deadline:
            stopped = True
            break
    left = sum(kept.values())
    if stopped:
        saved = replace(state, retention_cursor=last_key)
        report.out_of_time = True
        report.webinars_left += 1
    elif left or resumed:
        saved = replace(state, retention_cursor=None)  # due again next run: a whole pass must find nothing kept
        report.webinars_left += 1
    else:
        saved = replace(state, retention_cursor=None, retention_cleared_at=now)
        report.webinars_cleared += 1
    ports.sync.save(saved)
    report.rows_cleared += cleared
    for reason, count in kept.items():
        report.rows_kept[reason] = report.rows_kept.get(reason, 0) + count
    if cleared or left:
        _log.info(
            "housekeeping: webinar %s of org %s (window closed): personal data cleared from %d ledger rows%s",
            state.webinar_id,
            state.org_id,
            cleared,
            f"; {left} rows keep it until their registration work is finished ({_counts(kept)})" if left else "",
            extra={"org_id": state.org_id, "on24_event_id": state.webinar_id, "cleared": cleared, "kept": left},
        )


def _chunks(items: Iterable[LedgerEntry], size: int) -> Iterator[list[LedgerEntry]]:
    chunk: list[LedgerEntry] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
