"""The per-org health summary PullMetrics keeps for the status route: registrations by outcome (brought up to
date from the ledger rows written since, ``shared.health.tally``), rejected messages, and which tokens need an admin."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.health.counting import CHANGE_OVERLAP, count_rejected
from shared.health.current import CountLedger
from shared.health.status import StatusSync, token_last_use, token_view
from shared.health.tally import TallyStore, tallied_counts
from shared.store.credentials import OrgRecord
from shared.store.health import (
    OrgHealth,
    RejectedCounts,
)
from shared.store.rejected import RejectedSummaryRow
from shared.store.tables import StoreError

_log = logging.getLogger(__name__)


# ---- the pass PullMetrics runs -----------------------------------------------------------------------------------
class HealthOrgs(Protocol):
    def list_orgs(self) -> Iterator[OrgRecord]: ...




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
    ledger: CountLedger
    rejected: HealthRejected
    rows: HealthRows
    sync: StatusSync
    tallies: TallyStore
    """Each org's count tally (``shared.health.tally``): a pass reads only the ledger rows written since."""
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
        counts = tallied_counts(org_id, ports.ledger, ports.tallies, now).counts
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
