"""Reconciling one webinar: read CRM, the ledger and ON24, classify every person, repair through the normal path.

Reads, in this order: the CRM registrations of the webinar's events (OData pages), ON24's registrant list (pages,
each paced by the account's shared attendee-list limiter: ON24 counts both lists against one 100/minute limit, and
the metrics pull uses the same limiter, so together they stay under it), the webinar's ledger rows, and, for the
few ids ON24 shows that the webinar's CRM registrations lack, the ledger row and the CRM registration by id.

A repair re-drives each drifting registration as a command through ``handle_registration`` (the ledger, lease
and ordering rules of every delivery), paced by ``repair_limiter``:

- ranked at the reconciliation's time only when CRM's row changed after the ledger last recorded a decision (its
  ``UpdatedAt``, written after CRM was told the outcome); otherwise ranked as that decision, re-applied because
  ON24 drifted from it (``Repair``);
- a registration cancelled, inactive or deleted in CRM is removed as a cancel (with the address ON24 showed);
- registrants without our id are never touched; a forgotten person is never registered again (any tombstone).

Nothing is kept but counts, times, who asked, and drifting CRM registration ids (``shared.store.reconciliations``).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal, Protocol

from shared.crm import CrmEvent, CrmRegistration
from shared.crm_values import WebinarRegistration
from shared.errors import BusyError, NotConfiguredError, NotFoundError, PermanentError, TransientError
from shared.messages import RegistrationCommand
from shared.ratelimit import RateLimiter
from shared.reconcile.classify import Classification, Elsewhere, Finding, classify, code_of
from shared.registration import RegistrationPorts, Repair, handle_registration
from shared.registration.forgotten import address_only
from shared.store.credentials import OrgRecord
from shared.store.ledger import LedgerEntry
from shared.store.reconciliations import ReconcileState
from shared.webinars import RegistrantRow, Registrants

_log = logging.getLogger(__name__)

PAGE_ROWS = 100  # ON24's largest page: the estimate of list calls a webinar needs
LEDGER_COLUMNS = ("LastMessageAt", "LastPriority", "UpdatedAt", "State", "On24EventId")


class WebinarCrm(Protocol):
    def webinar_registrations(
        self, webinar_id: str, *, page_size: int = ...
    ) -> Iterator[list[WebinarRegistration]]: ...
    def get_registration(self, registration_id: str) -> CrmRegistration: ...
    def get_event(self, event_id: str) -> CrmEvent: ...


class Orgs(Protocol):
    def get(self, org_id: str) -> OrgRecord | None: ...


class LedgerReads(Protocol):
    def get(self, org_id: str, registration_id: str) -> LedgerEntry | None: ...
    def entries(
        self, org_id: str, *, webinar_id: str | None = None, columns: Sequence[str] | None = None
    ) -> Iterator[LedgerEntry]: ...


class States(Protocol):
    def get(self, org_id: str, webinar_id: str) -> ReconcileState | None: ...
    def save(self, state: ReconcileState) -> ReconcileState | None: ...


@dataclass(frozen=True)
class ReconcilePorts:
    orgs: Orgs
    ledger: LedgerReads
    states: States
    provider_for: Callable[[OrgRecord, RateLimiter], Registrants]
    limiter_for: Callable[[OrgRecord], RateLimiter]
    """The account's attendee-list limiter, shared with the metrics pull (``App.attendee_limiter``)."""
    crm_for: Callable[[OrgRecord], WebinarCrm | None]
    forgotten_in: Callable[[str], Callable[[str, str | None], bool]]
    registration: RegistrationPorts
    repair_limiter: RateLimiter
    calls_per_minute: int = 100
    crm_page_size: int = 5000
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic


@dataclass
class Reconciliation:
    """One webinar's reconciliation, as the route answers it and the row keeps it (``view``)."""

    org_id: str
    webinar_id: str
    status: str  # done, deferred (budget), or failed
    counts: dict[str, int] = field(default_factory=dict)
    ids: dict[str, tuple[str, ...]] = field(default_factory=dict)
    repairs: dict[str, int] = field(default_factory=dict)
    list_calls: int = 0
    crm_pages: int = 0
    reconciled_at: datetime | None = None
    started_at: datetime | None = None
    error: str | None = None


class OverBudget(Exception):
    """The webinar needs more time than is left: it is left (requested) for a later run."""


def reconcile_webinar(
    ports: ReconcilePorts, org_id: str, webinar_id: str, *, repair: bool, actor: str, deadline: float
) -> Reconciliation:
    """Reconcile one webinar now (and repair with ``repair``); the outcome is saved on its row.

    Raises:
        NotConfiguredError: the org has no credentials (the integration is off).
        OverBudget: the webinar cannot be read before ``deadline`` (``time.monotonic``); nothing was changed.
        PermanentError: no Dataverse URL for the org; TransientError, ConfigError: CRM, ON24 or storage.
    """
    org = ports.orgs.get(org_id)
    if org is None:
        raise NotConfiguredError(f"org {org_id!r} has no ON24 credentials: the integration is disabled for it")
    crm = ports.crm_for(org)
    if crm is None:
        raise PermanentError(f"org {org_id!r} has no Dataverse URL: its CRM registrations cannot be read")
    result = Reconciliation(org_id, webinar_id, "done", started_at=ports.clock())
    registrations, rows = _read(ports, org, crm, webinar_id, result, deadline)
    found = _classified(ports, org_id, webinar_id, crm, registrations, rows)
    result.counts, result.ids = found.counts(), found.ids()
    if repair and found.drift():
        result.repairs = _repair(ports, org_id, webinar_id, found.drift(), actor=actor, deadline=deadline)
        _audit(org_id, webinar_id, actor, result.repairs)
        if result.repairs.get("left"):  # out of time: the request stays open, the next timer run goes on
            result.status = "partial"
        try:  # the check after the repair, when the time allows it: the row then shows what ON24 holds now
            registrations, rows = _read(ports, org, crm, webinar_id, result, deadline)
            after = _classified(ports, org_id, webinar_id, crm, registrations, rows)
            result.counts, result.ids = after.counts(), after.ids()
        except OverBudget:
            result.status = "repaired_unchecked"
    result.reconciled_at = ports.clock()
    _record(ports, result, actor=actor if repair else None)
    return result


def _read(
    ports: ReconcilePorts, org: OrgRecord, crm: WebinarCrm, webinar_id: str, result: Reconciliation, deadline: float
) -> tuple[dict[str, WebinarRegistration], list[RegistrantRow]]:
    """The webinar's CRM registrations by id and ON24's active registrants; OverBudget when the list cannot be read
    in time (estimated from CRM's count, checked again after each page)."""
    registrations: dict[str, WebinarRegistration] = {}
    for page in crm.webinar_registrations(webinar_id, page_size=ports.crm_page_size):
        result.crm_pages += 1
        registrations.update((registration.id, registration) for registration in page)
    pages = math.ceil(len(registrations) / PAGE_ROWS) + 1
    needed = max(0, pages - ports.calls_per_minute) * 60.0 / ports.calls_per_minute
    if ports.monotonic() + needed > deadline:
        raise OverBudget(f"webinar {webinar_id} needs about {needed:.0f} s of ON24 list calls ({pages} pages)")
    provider = ports.provider_for(org, ports.limiter_for(org))
    rows: list[RegistrantRow] = []
    for page_rows in provider.registrant_pages(webinar_id):
        result.list_calls += 1
        rows.extend(page_rows)
        if ports.monotonic() > deadline:
            raise OverBudget(f"webinar {webinar_id}: the time ran out after {result.list_calls} ON24 list pages")
    return registrations, rows


def _classified(
    ports: ReconcilePorts,
    org_id: str,
    webinar_id: str,
    crm: WebinarCrm,
    registrations: dict[str, WebinarRegistration],
    rows: list[RegistrantRow],
) -> Classification:
    elsewhere: dict[str, Elsewhere] = {}
    for code in {c for row in rows if (c := code_of(row)) is not None} - registrations.keys():
        elsewhere[code] = _elsewhere(ports, org_id, crm, code)
    return classify(webinar_id, registrations, rows, elsewhere, ports.forgotten_in(org_id))


def _elsewhere(ports: ReconcilePorts, org_id: str, crm: WebinarCrm, code: str) -> Elsewhere:
    """What CRM says of a registration ON24 shows with our id outside the webinar's registrations; ``unknown``
    (not ours: never touched) when the ledger has no row for it."""
    if ports.ledger.get(org_id, code) is None:
        return "unknown"
    try:
        registration = crm.get_registration(code)
    except NotFoundError:
        return "gone"
    return "active" if registration.is_active else "gone"


def _repair(
    ports: ReconcilePorts, org_id: str, webinar_id: str, drift: list[Finding], *, actor: str, deadline: float
) -> dict[str, int]:
    """Re-drive each drifting registration through the normal path; outcomes by status (``deferred``: busy or
    unavailable, ``left``: out of time; the next reconciliation finds them again)."""
    rows = {e.registration_id: e for e in ports.ledger.entries(org_id, webinar_id=webinar_id, columns=LEDGER_COLUMNS)}
    outcomes: Counter[str] = Counter()
    for index, finding in enumerate(drift):
        if ports.monotonic() > deadline:
            outcomes["left"] += len(drift) - index
            break
        assert finding.registration_id is not None and finding.action is not None
        entry = rows.get(finding.registration_id) or ports.ledger.get(org_id, finding.registration_id)
        command = _command(ports, org_id, webinar_id, finding, entry, actor)
        ports.repair_limiter.acquire()
        try:
            outcome = handle_registration(
                command,
                ports.registration,
                received_at=ports.clock(),
                repair=Repair(webinar_id, finding.seen),
            )
        except (BusyError, TransientError) as exc:
            _log.warning(
                "reconcile: repair of registration %s (webinar %s, org %s) deferred: %s",
                finding.registration_id, webinar_id, org_id, exc,
                extra={"org_id": org_id, "on24_event_id": webinar_id, "registration_id": finding.registration_id},
            )  # fmt: skip
            outcomes["deferred"] += 1
            continue
        outcomes[outcome.status] += 1
    return dict(sorted(outcomes.items()))


def _command(
    ports: ReconcilePorts, org_id: str, webinar_id: str, finding: Finding, entry: LedgerEntry | None, actor: str
) -> RegistrationCommand:
    """The command that brings ON24 to what CRM says, ranked as the module docstring says."""
    now = ports.clock()
    at = now
    action: Literal["register", "update", "cancel"] = finding.action or "register"
    crm_changed = finding.crm is None or finding.crm.modified_on is None
    if entry is not None and entry.last_message_at is not None and entry.updated_at is not None and not crm_changed:
        assert finding.crm is not None and finding.crm.modified_on is not None
        if finding.crm.modified_on <= entry.updated_at:  # CRM unchanged since the decision: ON24 drifted from it
            at = entry.last_message_at
            if action == "register" and entry.last_priority == 1:
                action = "update"
    forgotten = finding.cls == "goneInCrm" and finding.crm is not None and finding.crm.is_active
    email = finding.seen[0].email if finding.seen else None
    return RegistrationCommand(
        org_id=org_id,
        action="forget" if forgotten else action,
        registration_id=finding.registration_id or "",
        occurred_at=at,
        source="dataverse",
        reason=f"reconciliation of webinar {webinar_id} ({actor})",
        person=address_only(email) if action == "cancel" or forgotten else None,
    )


def _audit(org_id: str, webinar_id: str, actor: str, repairs: dict[str, int]) -> None:
    _log.info(
        "audit: reconciliation repaired webinar %s of org %s for %s: %s",
        webinar_id, org_id, actor, ", ".join(f"{status} {count}" for status, count in repairs.items()),
        extra={"org_id": org_id, "on24_event_id": webinar_id, "actor": actor, "audit": "reconcile.repaired",
               "repairs": sum(repairs.values()), **{f"repair_{k}": v for k, v in repairs.items()}},
    )  # fmt: skip


def _record(ports: ReconcilePorts, result: Reconciliation, *, actor: str | None) -> None:
    """Save the outcome on the webinar's row; a request made before this reconciliation started is answered."""
    for _ in range(5):
        state = ports.states.get(result.org_id, result.webinar_id) or ReconcileState(result.org_id, result.webinar_id)
        done = replace(
            state,
            reconciled_at=result.reconciled_at,
            last_attempt_at=result.reconciled_at,
            counts=result.counts,
            ids=result.ids,
            last_error=None,
        )
        if actor is not None:
            done = replace(done, repaired_at=result.reconciled_at, repaired_by=actor, repairs=result.repairs)
        asked = state.requested_at
        before = asked is not None and result.started_at is not None and asked <= result.started_at
        repaired = actor is not None and result.status != "partial"
        if before and (repaired or not state.request_repair):  # a repair request is answered by a (whole) repair
            done = replace(done, requested_at=None, request_repair=False, requested_by=None, request_id=None,
                           answered_id=state.request_id)  # fmt: skip
        if ports.states.save(done) is not None:
            return
    raise TransientError(f"the reconciliation row of webinar {result.webinar_id} kept changing")


def record_failure(ports: ReconcilePorts, org_id: str, webinar_id: str, error: str) -> None:
    """Note on the webinar's row why its reconciliation did not finish (a request stays open)."""
    state = ports.states.get(org_id, webinar_id) or ReconcileState(org_id, webinar_id)
    ports.states.save(replace(state, last_error=error[:1000], last_attempt_at=ports.clock()))
