"""The registration counts the status route answers with: brought up to date when it is called.

The summary row (``shared.store.health``) holds the org's counts as of its last count. When a registration
recorded an outcome since then (one query that stops at the first row found), the status route brings the org's
count tally up to date with the rows written since (``shared.health.tally``: O(changed), never the partition after
the first count) and saves the row, etag-guarded like PullMetrics' pass. So the answer is right at once after
setup, without waiting for a PullMetrics run, and a quiet org still costs one query.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from shared.health.counting import CHANGE_OVERLAP
from shared.health.tally import TallyStore, tallied_counts
from shared.store.health import OrgHealth
from shared.store.ledger import LedgerReader

_log = logging.getLogger(__name__)


class CountLedger(LedgerReader, Protocol):
    """The ledger as counting reads it: the rows written since a time, and whether there are any."""

    def changed_since(self, org_id: str, since: datetime) -> bool: ...


class CountRows(Protocol):
    def get(self, org_id: str) -> OrgHealth | None: ...
    def save(self, health: OrgHealth) -> OrgHealth | None: ...


def current_health(
    org_id: str, ledger: CountLedger, rows: CountRows, tallies: TallyStore, now: datetime
) -> OrgHealth | None:
    """The org's summary with registration counts as of ``now``: counted again when the ledger changed since.

    A lost write race (PullMetrics or another status call saved first) still answers with this count; the
    row keeps the other writer's, which is as recent. A count equal to the row's is not written again.
    """
    health = rows.get(org_id)
    counted = health.registrations if health else None
    checked = health.checked_at if health is not None and counted is not None else None
    if health is not None and checked is not None and not ledger.changed_since(org_id, checked - CHANGE_OVERLAP):
        return health
    counts = tallied_counts(org_id, ledger, tallies, now).counts
    base = health or OrgHealth(org_id=org_id)
    updated = replace(base, registrations=counts, checked_at=now)
    unchanged = counted is not None and replace(counts, counted_at=counted.counted_at) == counted
    if (counts.totals or health is not None) and not unchanged and rows.save(updated) is None:
        _log.info("status: the health summary of org %s was saved by another pass first", org_id)
    return updated
