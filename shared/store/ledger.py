"""The registration ledger: one row per (org, CRM registration id) recording the effect applied in ON24.

Every change to a row is conditional on its etag, which is what makes redelivery, duplicates and races
safe: a delivery first takes a short *lease* on the row (an etag-guarded write), performs its ON24 call,
then writes the outcome and drops the lease under the same etag. A second delivery that finds a live
lease waits briefly or retries later; one that finds the effect already recorded does nothing.

The row stores the attendee's email because ON24 keys updates and soft deletes by email; it never
stores credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.store.tables import read_entity, table_errors, write_entity

_log = logging.getLogger(__name__)

LedgerState = Literal["new", "registered", "cancelled", "skipped", "failed"]
_STATES: tuple[LedgerState, ...] = ("new", "registered", "cancelled", "skipped", "failed")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REJECTED_PARTITION = "~rejected"
MAX_KEPT_BODY = 60 * 1024
TRANSACTION_SIZE = 100  # Table Storage's limit of operations in one entity group transaction


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A registration's recorded state. ``etag`` is the version the row was read at (None: not stored)."""

    org_id: str
    registration_id: str
    state: LedgerState = "new"
    on24_event_id: str | None = None
    event_user_id: str | None = None
    email: str | None = None
    crm_event_id: str | None = None
    contact_id: str | None = None
    last_message_at: datetime | None = None
    last_outcome: str | None = None
    reason: str | None = None
    crm_synced: bool = False
    lease_id: str | None = None
    lease_until: datetime | None = None
    metrics_hash: str | None = None
    updated_at: datetime | None = None
    etag: str | None = field(default=None, compare=False)

    def leased_by_other(self, lease_id: str, now: datetime) -> bool:
        return bool(self.lease_id and self.lease_id != lease_id and self.lease_until and self.lease_until > now)

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": self.org_id,
            "RowKey": self.registration_id,
            "State": self.state,
            "On24EventId": self.on24_event_id or "",
            "EventUserId": self.event_user_id or "",
            "Email": self.email or "",
            "CrmEventId": self.crm_event_id or "",
            "ContactId": self.contact_id or "",
            "LastMessageAt": self.last_message_at or _EPOCH,
            "LastOutcome": self.last_outcome or "",
            "Reason": (self.reason or "")[:1000],
            "CrmSynced": self.crm_synced,
            "LeaseId": self.lease_id or "",
            "LeaseUntil": self.lease_until or _EPOCH,
            "MetricsHash": self.metrics_hash or "",
            "UpdatedAt": self.updated_at or datetime.now(UTC),
        }

    @classmethod
    def from_entity(cls, entity: Any) -> LedgerEntry:
        def text(name: str) -> str | None:
            value = entity.get(name)
            return str(value) if value else None

        def when(name: str) -> datetime | None:
            value = entity.get(name)
            return value if isinstance(value, datetime) and value > _EPOCH else None

        raw_state = entity.get("State")
        state: LedgerState = raw_state if raw_state in _STATES else "new"
        return cls(
            org_id=entity["PartitionKey"],
            registration_id=entity["RowKey"],
            state=state,
            on24_event_id=text("On24EventId"),
            event_user_id=text("EventUserId"),
            email=text("Email"),
            crm_event_id=text("CrmEventId"),
            contact_id=text("ContactId"),
            last_message_at=when("LastMessageAt"),
            last_outcome=text("LastOutcome"),
            reason=text("Reason"),
            crm_synced=bool(entity.get("CrmSynced")),
            lease_id=text("LeaseId"),
            lease_until=when("LeaseUntil"),
            metrics_hash=text("MetricsHash"),
            updated_at=when("UpdatedAt"),
            etag=entity.metadata.get("etag") if hasattr(entity, "metadata") else None,
        )


class Ledger:
    """Etag-guarded reads and writes of ledger rows in the ``<prefix>ledger`` table."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, org_id: str, registration_id: str) -> LedgerEntry | None:
        what = f"reading the ledger row of registration {registration_id} (org {org_id!r})"
        entity = read_entity(self._table, org_id, registration_id, what)
        return None if entity is None else LedgerEntry.from_entity(entity)

    def write(self, entry: LedgerEntry) -> LedgerEntry | None:
        """Store ``entry`` if the row is still at ``entry.etag`` (absent when etag is None).

        Returns:
            The entry with its new etag, or None when another writer got there first (re-read and decide again).
        """
        entry = replace(entry, updated_at=datetime.now(UTC))
        what = f"writing the ledger row of registration {entry.registration_id} (org {entry.org_id!r})"
        etag = write_entity(self._table, entry.to_entity(), entry.etag, what)
        return None if etag is None else replace(entry, etag=etag)

    def entries(
        self, org_id: str, *, on24_event_id: str | None = None, columns: Sequence[str] | None = None
    ) -> Iterator[LedgerEntry]:
        """An org's ledger rows, optionally only those of one ON24 event and only some ``columns`` (the rest
        read as defaults): the metrics run reads 100,000 rows this way."""
        query = "PartitionKey eq @org"
        parameters: dict[str, Any] = {"org": org_id}
        if on24_event_id is not None:
            query += " and On24EventId eq @event"
            parameters["event"] = on24_event_id
        select = ["PartitionKey", "RowKey", *columns] if columns else None
        with table_errors(f"listing ledger rows of org {org_id!r}"):
            for entity in self._table.query_entities(query, parameters=parameters, select=select):
                yield LedgerEntry.from_entity(entity)

    def record_rejected(self, message_id: str, reason: str, body: bytes, *, delivery_count: int | None) -> None:
        """Keep a message that could not be parsed (no org or registration to file it under).

        Stored in partition ``~rejected`` keyed by message id, with the reason and the first 60 KB of the body,
        so nothing is lost when the message completes; an operator can inspect and replay it.
        """
        entity = {
            "PartitionKey": REJECTED_PARTITION,
            "RowKey": _row_key(message_id),
            "Reason": reason[:1000],
            "Body": body[:MAX_KEPT_BODY],
            "BodyTruncated": len(body) > MAX_KEPT_BODY,
            "BodyBytes": len(body),
            "DeliveryCount": delivery_count or 0,
            "RejectedAt": datetime.now(UTC),
        }
        with table_errors(f"recording rejected message {message_id!r}"):
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def rejected(self) -> Iterator[dict[str, Any]]:
        """Messages kept by ``record_rejected`` (for operators and tests)."""
        with table_errors("listing rejected messages"):
            for entity in self._table.query_entities(f"PartitionKey eq '{REJECTED_PARTITION}'"):
                yield dict(entity)

    def webinars_touched_since(self, org_id: str, since: datetime | None) -> set[str]:
        """ON24 event ids of the org's ledger rows written by registrations since ``since`` (all when None).

        Filters on ``UpdatedAt``, which only ``write`` sets: the metrics hash merge changes the system
        ``Timestamp`` of every synced row and would make each run rescan them.
        """
        query = "PartitionKey eq @org"
        parameters: dict[str, Any] = {"org": org_id}
        if since is not None:
            query += " and UpdatedAt ge @since"
            parameters["since"] = since
        with table_errors(f"discovering webinars of org {org_id!r}"):
            return {
                str(entity["On24EventId"])
                for entity in self._table.query_entities(query, parameters=parameters, select=["On24EventId"])
                if entity.get("On24EventId")
            }

    def set_metrics_hashes(self, org_id: str, hashes: dict[str, str]) -> None:
        """Remember what was last written to CRM per registration (merge, 100 rows per transaction).

        Only the ``MetricsHash`` column changes. A row deleted meanwhile is skipped.
        """
        items = list(hashes.items())
        for start in range(0, len(items), TRANSACTION_SIZE):
            chunk = items[start : start + TRANSACTION_SIZE]
            operations: list[Any] = [
                ("update", {"PartitionKey": org_id, "RowKey": reg, "MetricsHash": value}, {"mode": UpdateMode.MERGE})
                for reg, value in chunk
            ]
            with table_errors(f"recording metrics hashes of org {org_id!r}"):
                try:
                    self._table.submit_transaction(operations)
                except TableTransactionError:
                    for _, entity, options in operations:  # one row was deleted: fall back row by row
                        try:
                            self._table.update_entity(entity, **options)
                        except ResourceNotFoundError:
                            continue


def _row_key(value: str) -> str:
    """Table keys may not hold / \\ # ? or control characters; message ids are opaque strings."""
    cleaned = "".join(ch if ch.isprintable() and ch not in "/\\#?" else "_" for ch in value)[:200]
    return cleaned or "no-message-id"


