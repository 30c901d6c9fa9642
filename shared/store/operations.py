"""Long operations an admin route answered ``202`` for (an on-demand pull that continues in PullMetrics, a purge
the timer finishes): one row each, so ``GET /api/orgs/{orgId}/operations/{operationId}`` can answer after the
process that started it is gone.

Rows sit in the org table (PartitionKey = org id, RowKey ``op:<id>``), beside the credentials and purge rows;
listing credentials (``RowKey eq 'credentials'``) or purges never sees them. A row holds ids, times, counts and
an error code and message (which name the webinar and the cause, never a person's data or a secret).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from azure.data.tables import TableClient, UpdateMode

from shared.store.codec import EPOCH, etag_of, moment
from shared.store.tables import read_entity, table_errors, write_entity

OperationKind = Literal["pull", "purge", "reconcile"]
OperationState = Literal["running", "succeeded", "failed"]
_PREFIX = "op:"
OPERATION_ID = re.compile(r"^[0-9a-f]{32}$")
KEEP = timedelta(days=30)
"""An operation row is deleted when its org starts another operation this long after it."""
_RANGE = "PartitionKey eq @org and RowKey ge @low and RowKey lt @high"


def _range(org_id: str) -> dict[str, str]:
    """The parameters of ``_RANGE``: the org's ``op:`` rows (``op;`` is the next key after every ``op:…``)."""
    return {"org": org_id, "low": _PREFIX, "high": _PREFIX[:-1] + chr(ord(_PREFIX[-1]) + 1)}


@dataclass(frozen=True)
class Operation:
    """One long operation. ``base_attempt_at``: for a pull, the webinar's last attempt when the 202 was given
    (the pull is done once a later attempt finished with nothing pending)."""

    org_id: str
    operation_id: str
    kind: OperationKind
    created_at: datetime
    status: OperationState = "running"
    webinar_id: str | None = None
    base_attempt_at: datetime | None = None
    finished_at: datetime | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: dict[str, str] | None = None
    etag: str | None = field(default=None, compare=False)

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": self.org_id,
            "RowKey": _PREFIX + self.operation_id,
            "Kind": self.kind,
            "Status": self.status,
            "CreatedAt": self.created_at,
            "WebinarId": self.webinar_id or "",
            "BaseAttemptAt": self.base_attempt_at or EPOCH,
            "FinishedAt": self.finished_at or EPOCH,
            "Result": json.dumps(self.result, separators=(",", ":")),
            "Error": json.dumps(self.error, separators=(",", ":")) if self.error else "",
        }

    @classmethod
    def from_entity(cls, entity: Any) -> Operation:
        stored = entity.get("Kind")
        kind: OperationKind = stored if stored in ("purge", "reconcile") else "pull"
        status = str(entity.get("Status") or "running")
        return cls(
            org_id=str(entity["PartitionKey"]),
            operation_id=str(entity["RowKey"])[len(_PREFIX) :],
            kind=kind,
            created_at=entity["CreatedAt"],
            status=status if status in ("succeeded", "failed") else "running",  # type: ignore[arg-type]
            webinar_id=str(entity.get("WebinarId") or "") or None,
            base_attempt_at=moment(entity.get("BaseAttemptAt")),
            finished_at=moment(entity.get("FinishedAt")),
            result=_object(entity.get("Result")),
            error=_object(entity.get("Error")) or None,
            etag=etag_of(entity),
        )


class OperationStore:
    """Operation rows in the ``<prefix>orgs`` table; every change after the first write is etag-guarded."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def create(self, operation: Operation) -> Operation:
        """Record a new operation, and delete the org's operations started more than ``KEEP`` before it (so
        rows do not pile up; an org that left keeps its purge receipts, as it starts no more operations)."""
        what = f"recording operation {operation.operation_id} of org {operation.org_id!r}"
        etag = write_entity(self._table, operation.to_entity(), None, what)
        self._forget_older(operation.org_id, operation.created_at - KEEP)
        return replace(operation, etag=etag)

    def _forget_older(self, org_id: str, before: datetime) -> None:
        query = f"{_RANGE} and CreatedAt lt @before"
        with table_errors(f"deleting the old operations of org {org_id!r}"):
            rows = self._table.query_entities(query, parameters={**_range(org_id), "before": before}, select=["RowKey"])
            for entity in list(rows):
                self._table.delete_entity(org_id, entity["RowKey"])

    def get(self, org_id: str, operation_id: str) -> Operation | None:
        what = f"reading operation {operation_id} of org {org_id!r}"
        entity = read_entity(self._table, org_id, _PREFIX + operation_id, what)
        return None if entity is None else Operation.from_entity(entity)

    def finish(self, operation: Operation) -> Operation | None:
        """Record the outcome if the row is still as read; None when another reader recorded it first."""
        what = f"recording the outcome of operation {operation.operation_id} of org {operation.org_id!r}"
        etag = write_entity(self._table, operation.to_entity(), operation.etag, what)
        return None if etag is None else replace(operation, etag=etag)


def _object(text: Any) -> dict[str, Any]:
    try:
        data = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def settle_left_org(table: TableClient, org_id: str, deleted: dict[str, int], now: datetime) -> None:
    """When an org's purge is over: its pull operations go with the rest of its state; its purge operations stay,
    marked succeeded with what was deleted (the receipt of its leaving: ids, times and row counts only)."""
    with table_errors(f"settling the operations of org {org_id!r}"):
        for entity in list(table.query_entities(_RANGE, parameters=_range(org_id))):
            operation = Operation.from_entity(entity)
            if operation.kind != "purge":
                table.delete_entity(org_id, entity["RowKey"])
            elif operation.status == "running":
                result = {"purge": "deleted", "deleted": deleted}
                done = replace(operation, status="succeeded", finished_at=now, result=result)
                table.upsert_entity(done.to_entity(), mode=UpdateMode.REPLACE)
