"""The org table: one row per CRM org with its sealed ON24 credentials and non-secret status.

Rows are read on every use and never cached, so removing them disables the integration at once for
every instance. The envelope is opaque here: sealing and opening happen in ``shared.crypto``; the clear
columns ``ClientId``, ``Region`` and ``DataverseUrl`` are bound to it (``OrgRecord.bound``).

Org ids are keys in their canonical spelling (``shared.ids.canonical_org_id``: GUIDs lower-case). The store
normalises every id it is given. A row stored under another spelling (an upper-case GUID, written before ids
were normalised) is refused: never listed, never read as the org's row, reported by ``variants`` so the status
route can say so, and removed together with the canonical row by ``delete``, so the off switch holds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from azure.data.tables import TableClient

from shared.ids import canonical_org_id
from shared.store.codec import EPOCH, etag_of, moment
from shared.store.tables import StoreUnavailableError, merge_entity, read_entity, table_errors, write_entity

_log = logging.getLogger(__name__)

_ROW_KEY = "credentials"
OrgStatus = Literal["active", "rejected"]
MetricsStatus = Literal["ok", "error"]
MAX_REASON = 1000


def org_key(org_id: str) -> str:
    """The canonical key of an org id. Raises ``ValueError`` for a string that is not an org id."""
    key = canonical_org_id(org_id)
    if key is None:
        raise ValueError("not an org id: 1-64 letters, digits, '.', '_' or '-'")
    return key


@dataclass(frozen=True)
class OrgRecord:
    """One org's stored integration settings. ``envelope`` is ciphertext; it is still kept out of repr."""

    org_id: str
    account_id: str
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
    metrics_status: MetricsStatus | None = None
    """How the org's last metrics run went: ``ok``, ``error`` (see ``metrics_reason``), None before any run."""
    metrics_reason: str | None = None
    metrics_at: datetime | None = None
    park_failures: int = 0
    """Failed attempts in a row to reach ON24 or CRM for the org's parked registrations (0: not parking)."""
    park_until: datetime | None = None
    """When the org's parked registrations are next due (None: it has none)."""
    field_mapping: str = ""
    """The org's field mapping (``shared.fieldmap.FieldMapping.to_json``; "" none): set by the admin with the
    credentials, not a secret, so stored in the clear."""

    @property
    def parking(self) -> bool:
        """New registrations of the org are parked at once, without calling ON24, until a retry succeeds."""
        return self.park_failures > 0

    @property
    def bound(self) -> dict[str, str]:
        """The clear columns authenticated with the envelope (AES-GCM associated data)."""
        return {"clientId": self.account_id, "region": self.region, "dataverseUrl": self.dataverse_url or ""}

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": self.org_id,
            "RowKey": _ROW_KEY,
            "ClientId": self.account_id,
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
            "MetricsStatus": self.metrics_status or "",
            "MetricsReason": (self.metrics_reason or "")[:MAX_REASON],
            "MetricsAt": self.metrics_at,
            "ParkFailures": self.park_failures,
            "ParkUntil": self.park_until or EPOCH,
            "FieldMapping": self.field_mapping,
        }

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> OrgRecord:
        status = entity.get("Status") or "active"
        return cls(
            org_id=entity["PartitionKey"],
            account_id=entity.get("ClientId") or "",
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
            metrics_status=_metrics_status(entity.get("MetricsStatus")),
            metrics_reason=entity.get("MetricsReason") or None,
            metrics_at=entity.get("MetricsAt") if isinstance(entity.get("MetricsAt"), datetime) else None,
            park_failures=int(entity.get("ParkFailures") or 0),
            park_until=moment(entity.get("ParkUntil")),
            field_mapping=str(entity.get("FieldMapping") or ""),
        )


def _carried_over(row: OrgRecord, existing: OrgRecord, now: datetime) -> OrgRecord:
    """``row`` with what a save keeps from the org's current row; parked work becomes due at ``now``."""
    due = None if existing.park_until is None else min(existing.park_until, now)
    return replace(
        row,
        created_at=existing.created_at or row.created_at,
        metrics_status=existing.metrics_status,
        metrics_reason=existing.metrics_reason,
        metrics_at=existing.metrics_at,
        park_failures=existing.park_failures,
        park_until=due,
    )


def _metrics_status(value: Any) -> MetricsStatus | None:
    if value == "ok":
        return "ok"
    return "error" if value == "error" else None


class CredentialStore:
    """Read, write and delete org rows in the ``<prefix>orgs`` table. Every org id is normalised first."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, org_id: str) -> OrgRecord | None:
        """The org's row, or None when the integration is not configured (disabled) for it."""
        key = org_key(org_id)
        entity = read_entity(self._table, key, _ROW_KEY, f"reading the credentials of org {key!r}")
        return None if entity is None else OrgRecord.from_entity(dict(entity))

    def save(self, record: OrgRecord, *, now: datetime | None = None) -> OrgRecord:
        """Create or replace the org's row (a re-PUT rotates), keeping what is not the admin's to set.

        The original ``created_at``, the metrics health and the parking stay; parked work is made due at ``now``
        (the app's clock), so the next RetryParked run re-drives it with the new credentials and nothing parked
        is stranded. Etag-guarded: a parking or status written meanwhile is read again, never overwritten.

        Raises:
            StoreUnavailableError: the row kept changing (ten lost races in a row); nothing was saved.
        """
        key = org_key(record.org_id)
        what = f"saving the credentials of org {key!r}"
        for _ in range(10):
            wall = datetime.now(UTC)
            entity = read_entity(self._table, key, _ROW_KEY, what)
            row = replace(record, org_id=key, created_at=wall, updated_at=wall)
            if entity is not None:
                row = _carried_over(row, OrgRecord.from_entity(dict(entity)), now or wall)
            if write_entity(self._table, row.to_entity(), None if entity is None else etag_of(entity), what):
                return row
        raise StoreUnavailableError(f"{what}: the row kept changing; nothing was saved, try again")

    def delete(self, org_id: str) -> OrgRecord | None:
        """Delete the org's row and any row stored under another spelling of its id (idempotent).

        Returns:
            What was removed (the canonical row, else a variant), or None when there was nothing.
        """
        key = org_key(org_id)
        existing = self.get(key)
        variants = self.variants(key)
        legacy = next((record for record in map(self._read, variants) if record is not None), None)
        with table_errors(f"deleting the credentials of org {key!r}"):
            for partition in (key, *variants):
                self._table.delete_entity(partition, _ROW_KEY)
        return existing or legacy

    def variants(self, org_id: str) -> list[str]:
        """Partition keys of rows stored for this org under a non-canonical spelling (e.g. an upper-case GUID)."""
        key = org_key(org_id)
        with table_errors(f"looking for other spellings of org {key!r}"):
            return [
                str(entity["PartitionKey"])
                for entity in self._table.query_entities(f"RowKey eq '{_ROW_KEY}'", select=["PartitionKey"])
                if entity["PartitionKey"] != key and canonical_org_id(str(entity["PartitionKey"])) == key
            ]

    def set_status(self, org_id: str, status: OrgStatus, reason: str | None) -> bool:
        """Flag the org (e.g. ON24 rejected its token). Never re-creates a removed row; False if gone."""
        return self._merge(org_id, {"Status": status, "StatusReason": (reason or "")[:MAX_REASON]}, "status")

    def set_metrics_health(self, org_id: str, status: MetricsStatus, reason: str | None, at: datetime) -> bool:
        """Record how the org's metrics run went (shown by the status route). False if the row is gone."""
        columns = {"MetricsStatus": status, "MetricsReason": (reason or "")[:MAX_REASON], "MetricsAt": at}
        return self._merge(org_id, columns, "metrics health")

    def set_parking(self, org_id: str, failures: int, until: datetime | None) -> bool:
        """Record the org's parking: ``failures`` in a row (> 0: new registrations are parked at once), and when
        its parked registrations are next due (None: it has none left). False if the row is gone."""
        # A MERGE leaves out None properties: the epoch stands for "no time" (read back as None).
        return self._merge(org_id, {"ParkFailures": failures, "ParkUntil": until or EPOCH}, "parking state")

    def due_for_parked_work(self, now: datetime) -> list[OrgRecord]:
        """Orgs whose parked registrations are due (``park_until`` set and reached), for RetryParked."""
        query = f"RowKey eq '{_ROW_KEY}' and ParkUntil gt @epoch and ParkUntil le @now"
        with table_errors("listing orgs with parked registrations"):
            rows = self._table.query_entities(query, parameters={"epoch": EPOCH, "now": now})
            return [OrgRecord.from_entity(dict(entity)) for entity in rows]

    def list_orgs(self) -> Iterator[OrgRecord]:
        """Every configured org (the metrics run iterates these); rows under a non-canonical id are skipped."""
        with table_errors("listing configured orgs"):
            for entity in self._table.query_entities(f"RowKey eq '{_ROW_KEY}'"):
                record = OrgRecord.from_entity(dict(entity))
                if canonical_org_id(record.org_id) != record.org_id:
                    _log.warning(
                        "org row %r is stored under a non-canonical org id and is ignored: store the "
                        "credentials again (PUT) and remove it (DELETE)",
                        record.org_id,
                        extra={"org_id": record.org_id},
                    )
                    continue
                yield record

    def _read(self, partition: str) -> OrgRecord | None:
        entity = read_entity(self._table, partition, _ROW_KEY, f"reading the credentials row {partition!r}")
        return None if entity is None else OrgRecord.from_entity(dict(entity))

    def _merge(self, org_id: str, columns: dict[str, Any], what: str) -> bool:
        key = org_key(org_id)
        entity = {"PartitionKey": key, "RowKey": _ROW_KEY, **columns}
        return merge_entity(self._table, entity, f"updating the {what} of org {key!r}")
