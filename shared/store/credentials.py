"""The org table: one row per CRM org with its sealed ON24 credentials and non-secret status.

Rows are read on every use and never cached, so removing them disables the integration at once for
every instance. The envelope is opaque here: sealing and opening happen in ``shared.crypto``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.store.tables import read_entity, table_errors

_log = logging.getLogger(__name__)

_ROW_KEY = "credentials"
OrgStatus = Literal["active", "rejected"]


@dataclass(frozen=True)
class OrgRecord:
    """One org's stored integration settings. ``envelope`` is ciphertext; it is still kept out of repr."""

    org_id: str
    client_id: str
    region: str
    envelope: str = field(repr=False)
    key_id: str | None
    dataverse_url: str | None = None
    webinar_ids: tuple[str, ...] = ()
    """ON24 webinars the admin asked to pull metrics for, besides those the ledger knows."""
    status: OrgStatus = "active"
    status_reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": self.org_id,
            "RowKey": _ROW_KEY,
            "ClientId": self.client_id,
            "Region": self.region,
            "Envelope": self.envelope,
            "KeyId": self.key_id or "",
            "DataverseUrl": self.dataverse_url or "",
            "WebinarIds": ",".join(self.webinar_ids),
            "Status": self.status,
            "StatusReason": self.status_reason or "",
            "CreatedAt": self.created_at,
            "UpdatedAt": self.updated_at,
            "UpdatedBy": self.updated_by or "",
        }

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> OrgRecord:
        status = entity.get("Status") or "active"
        return cls(
            org_id=entity["PartitionKey"],
            client_id=entity.get("ClientId") or "",
            region=entity.get("Region") or "na",
            envelope=entity.get("Envelope") or "",
            key_id=entity.get("KeyId") or None,
            dataverse_url=entity.get("DataverseUrl") or None,
            webinar_ids=tuple(w for w in str(entity.get("WebinarIds") or "").split(",") if w),
            status="rejected" if status == "rejected" else "active",
            status_reason=entity.get("StatusReason") or None,
            created_at=entity.get("CreatedAt"),
            updated_at=entity.get("UpdatedAt"),
            updated_by=entity.get("UpdatedBy") or None,
        )


class CredentialStore:
    """Read, write and delete org rows in the ``<prefix>orgs`` table."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, org_id: str) -> OrgRecord | None:
        """The org's row, or None when the integration is not configured (disabled) for it."""
        entity = read_entity(self._table, org_id, _ROW_KEY, f"reading the credentials of org {org_id!r}")
        return None if entity is None else OrgRecord.from_entity(dict(entity))

    def save(self, record: OrgRecord) -> OrgRecord:
        """Create or replace the org's row; keeps the original ``created_at``."""
        now = datetime.now(UTC)
        existing = self.get(record.org_id)
        record = replace(record, created_at=existing.created_at if existing else now, updated_at=now)
        with table_errors(f"saving the credentials of org {record.org_id!r}"):
            self._table.upsert_entity(record.to_entity(), mode=UpdateMode.REPLACE)
        return record

    def delete(self, org_id: str) -> OrgRecord | None:
        """Delete the org's row. Returns what was removed, or None when there was nothing (idempotent)."""
        existing = self.get(org_id)
        with table_errors(f"deleting the credentials of org {org_id!r}"):
            self._table.delete_entity(org_id, _ROW_KEY)
        return existing

    def set_status(self, org_id: str, status: OrgStatus, reason: str | None) -> bool:
        """Flag the org (e.g. ON24 rejected its token). Never re-creates a removed row; False if gone."""
        entity = {"PartitionKey": org_id, "RowKey": _ROW_KEY, "Status": status, "StatusReason": reason or ""}
        with table_errors(f"updating the status of org {org_id!r}"):
            try:
                # Unconditional update = If-Match: *, so a deleted row answers 404 instead of coming back.
                self._table.update_entity(entity, mode=UpdateMode.MERGE)
            except ResourceNotFoundError:
                return False
        return True

    def list_orgs(self) -> Iterator[OrgRecord]:
        """Every configured org (the metrics run iterates these)."""
        with table_errors("listing configured orgs"):
            for entity in self._table.query_entities(f"RowKey eq '{_ROW_KEY}'"):
                yield OrgRecord.from_entity(dict(entity))
