"""Purge requests: an org that left the integration (``DELETE .../credentials?purge=true``), recorded durably
until all its state is gone. Closing it settles the org's operations (``shared.store.operations``).

One row per org in the org table (PartitionKey = org id, RowKey ``purge``), beside its credentials row,
which the purge has already deleted. The row says when and by whom the purge was asked for, how far it got
and what it deleted so far; the PullMetrics timer finishes what the request itself did not. Listing org
credentials (``RowKey eq 'credentials'``) never sees these rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient

from shared.store.codec import EPOCH
from shared.store.operations import settle_left_org
from shared.store.tables import merge_entity, read_entity, table_errors

_ROW_KEY = "purge"
PURGED_PARTS = ("ledger", "parked", "syncState", "rejected", "matchIndexes", "tombstones")


@dataclass(frozen=True)
class PurgeRequest:
    """An org's purge: ``deleted`` counts rows per part of its state (``PURGED_PARTS``); ``deleted_at`` is when
    a sweep last found nothing left (None while rows remain)."""

    org_id: str
    requested_at: datetime
    requested_by: str
    deleted: dict[str, int] = field(default_factory=dict)
    deleted_at: datetime | None = None

    def to_entity(self) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": self.org_id,
            "RowKey": _ROW_KEY,
            "RequestedAt": self.requested_at,
            "RequestedBy": self.requested_by,
            "DeletedAt": self.deleted_at or EPOCH,
        }
        for part in PURGED_PARTS:
            entity[f"Deleted_{part}"] = int(self.deleted.get(part, 0))
        return entity

    @classmethod
    def from_entity(cls, entity: Any) -> PurgeRequest:
        deleted_at = entity.get("DeletedAt")
        return cls(
            org_id=str(entity["PartitionKey"]),
            requested_at=entity["RequestedAt"],
            requested_by=str(entity.get("RequestedBy") or ""),
            deleted={part: int(entity.get(f"Deleted_{part}") or 0) for part in PURGED_PARTS},
            deleted_at=deleted_at if isinstance(deleted_at, datetime) and deleted_at.year > 1970 else None,
        )


class PurgeRequests:
    """Purge request rows in the ``<prefix>orgs`` table."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, org_id: str) -> PurgeRequest | None:
        entity = read_entity(self._table, org_id, _ROW_KEY, f"reading the purge request of org {org_id!r}")
        return None if entity is None else PurgeRequest.from_entity(entity)

    def open(self, org_id: str, *, actor: str, now: datetime) -> PurgeRequest:
        """Record a purge request, or return the one already recorded (a repeated request keeps its time)."""
        request = PurgeRequest(org_id=org_id, requested_at=now, requested_by=actor[:200])
        with table_errors(f"recording the purge request of org {org_id!r}"):
            try:
                self._table.create_entity(request.to_entity())
                return request
            except ResourceExistsError:
                pass
        return self.get(org_id) or request

    def save(self, request: PurgeRequest) -> bool:
        """Record progress (merge). False when the request is gone (finished meanwhile): it is not re-created."""
        what = f"recording the progress of the purge of org {request.org_id!r}"
        return merge_entity(self._table, request.to_entity(), what)

    def list(self) -> list[PurgeRequest]:
        """Every open purge request, oldest first."""
        with table_errors("listing purge requests"):
            rows = [PurgeRequest.from_entity(e) for e in self._table.query_entities(f"RowKey eq '{_ROW_KEY}'")]
        return sorted(rows, key=lambda r: r.requested_at)

    def close(self, org_id: str) -> None:
        """The purge is finished: settle the org's operations (``shared.store.operations``), drop its request
        (idempotent)."""
        request = self.get(org_id)
        if request is not None:
            settle_left_org(self._table, org_id, request.deleted, datetime.now(UTC))
        with table_errors(f"closing the purge request of org {org_id!r}"):
            self._table.delete_entity(org_id, _ROW_KEY)
