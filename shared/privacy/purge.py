"""Leaving (``DELETE .../webinar/credentials?purge=true``): the org's state deleted in bounded sweeps, the request
kept until a sweep after the settle time finds nothing left."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from shared.privacy.ports import PrivacyPorts
from shared.store.purges import PURGED_PARTS, PurgeRequest

_log = logging.getLogger(__name__)


PURGE_SETTLE = timedelta(minutes=10)  # functionTimeout: no invocation that began before a purge runs longer
INLINE_PURGE_ROWS = 1000  # what DELETE ?purge=true deletes itself (10 transactions); more -> 202, the timer goes on
BATCH_ROWS = 1000  # rows per query of the timer's work (purge, expiry); each then goes in transactions of 100


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


# ---- leaving: purge an org's state ----------------------------------------------------------------------------
def purge_org(org_id: str, ports: PrivacyPorts, *, actor: str, max_rows: int = INLINE_PURGE_ROWS) -> PurgeOutcome:
    """Record a purge of the org's state and delete up to ``max_rows`` rows of it now.

    The caller has deleted the credentials row first (the off switch). Idempotent: a repeated request keeps
    the first request's time and continues where the last sweep stopped.
    """
    request = ports.purges.open(org_id, actor=actor, now=ports.clock())
    outcome = purge_step(ports, request, max_rows=max_rows)
    _log.info(
        "audit: purge of org %s by %s %s (%s)",
        org_id,
        actor,
        "deleted every row" if outcome.finished else "continues in the timer",
        counts_text(outcome.request.deleted),
        extra={"org_id": org_id, "actor": actor, "audit": "org.purged", "finished": outcome.finished},
    )
    return outcome


def purge_step(
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
        ("matchIndexes", ports.indexes.delete_org),
        ("tombstones", ports.tombstones.delete_org_rows),
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


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items())
