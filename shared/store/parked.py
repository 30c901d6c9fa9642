"""Registrations parked during an outage: kept durably with their next attempt, instead of dead-lettered.

One row per (org, registration) in the ledger table's ``~parked`` partition, RowKey ``"{org}|{registration}"``.
Only the newest message of a registration
is kept: the final state depends on nothing older (canonical messages carry the whole change; Dataverse
messages re-read CRM). Every write is etag-guarded, so a row replaced by a newer message is never deleted or
rescheduled by whoever re-drove the older one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient

from shared.store.codec import EPOCH, etag_of
from shared.store.tables import table_errors, write_entity

_log = logging.getLogger(__name__)

PARKED_PARTITION = "~parked"


@dataclass(frozen=True)
class ParkedMessage:
    """A parked message: what to re-drive (``command``, JSON), in which order (its rank) and when.

    Attributes:
        org_id, key: the org and the registration id.
        command: the parsed message as JSON (``shared.parking`` writes and reads it).
        received_at: when Service Bus first accepted the message (it orders messages without their own time).
        message_at, priority: the message's rank; a newer message replaces an older one of the same key.
        attempts: deliveries and re-drives that failed so far.
        next_attempt_at: not re-driven before then.
    """

    org_id: str
    key: str
    command: str
    received_at: datetime
    message_at: datetime
    priority: int
    attempts: int = 0
    next_attempt_at: datetime = EPOCH
    parked_at: datetime | None = None
    last_error: str | None = None
    etag: str | None = field(default=None, compare=False)

    @property
    def row_key(self) -> str:
        return f"{self.org_id}|{self.key}"

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": PARKED_PARTITION,
            "RowKey": self.row_key,
            "OrgId": self.org_id,
            "Key": self.key,
            "Command": self.command,
            "ReceivedAt": self.received_at,
            "MessageAt": self.message_at,
            "Priority": self.priority,
            "Attempts": self.attempts,
            "NextAttemptAt": self.next_attempt_at,
            "ParkedAt": self.parked_at or datetime.now(UTC),
            "LastError": (self.last_error or "")[:1000],
        }

    @classmethod
    def from_entity(cls, entity: Any) -> ParkedMessage:
        return cls(
            org_id=str(entity["OrgId"]),
            key=str(entity["Key"]),
            command=str(entity["Command"]),
            received_at=entity["ReceivedAt"],
            message_at=entity["MessageAt"],
            priority=int(entity.get("Priority") or 0),
            attempts=int(entity.get("Attempts") or 0),
            next_attempt_at=entity.get("NextAttemptAt") or EPOCH,
            parked_at=entity.get("ParkedAt"),
            last_error=entity.get("LastError") or None,
            etag=etag_of(entity),
        )


class ParkedMessages:
    """The ``~parked`` partition of the ledger table."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def park(self, message: ParkedMessage) -> ParkedMessage:
        """Keep ``message`` unless a newer one of the same registration is parked already.

        An older parked message is replaced (its attempt count carries over). Returns the row as stored.
        """
        what = f"parking a message of {message.key} (org {message.org_id!r})"
        for _ in range(10):
            current = self._get(message.org_id, message.key, what)
            if current is not None and (current.message_at, current.priority) >= (message.message_at, message.priority):
                return current  # the parked one is newer (or the same message): it decides the outcome
            row = message if current is None else replace(message, attempts=max(message.attempts, current.attempts))
            etag = write_entity(self._table, row.to_entity(), current.etag if current else None, what)
            if etag is not None:
                return replace(row, etag=etag)
        raise RuntimeError(f"{what}: the row kept changing")  # pragma: no cover - ten lost races in a row

    def for_org(self, org_id: str) -> list[ParkedMessage]:
        """Every parked message of one org (RowKeys ``"{org}|…"`` sort together)."""
        query = "PartitionKey eq @p and RowKey ge @low and RowKey lt @high"
        parameters = {"p": PARKED_PARTITION, "low": f"{org_id}|", "high": f"{org_id}}}"}  # "}" sorts after "|"
        with table_errors(f"listing parked messages of org {org_id!r}"):
            return [ParkedMessage.from_entity(row) for row in self._table.query_entities(query, parameters=parameters)]

    def reschedule(self, message: ParkedMessage, *, next_attempt_at: datetime, error: str) -> bool:
        """Count a failed attempt and set the next one. False when the row was replaced or removed meanwhile."""
        row = replace(message, attempts=message.attempts + 1, next_attempt_at=next_attempt_at, last_error=error)
        what = f"rescheduling a parked message of {message.key} (org {message.org_id!r})"
        return write_entity(self._table, row.to_entity(), message.etag, what) is not None

    def remove(self, message: ParkedMessage) -> bool:
        """Drop a message that was re-driven to an outcome. False when a newer one replaced it meanwhile."""
        with table_errors(f"removing a parked message of {message.key} (org {message.org_id!r})"):
            try:
                self._table.delete_entity(
                    PARKED_PARTITION, message.row_key, etag=message.etag, match_condition=MatchConditions.IfNotModified
                )
            except ResourceNotFoundError:
                return True
            except ResourceModifiedError:  # a newer message replaced it
                return False
        return True

    def org_ids(self) -> set[str]:
        """The orgs that have parked messages (reads one column of every parked row)."""
        with table_errors("listing the orgs of parked messages"):
            query = "PartitionKey eq @p"
            rows = self._table.query_entities(query, parameters={"p": PARKED_PARTITION}, select=["OrgId"])
            return {str(row["OrgId"]) for row in rows}

    def due_org_ids(self, now: datetime) -> set[str]:
        """The orgs holding a parked message due by ``now`` (server-side filter on ``NextAttemptAt``, one column
        read): a message parked alone, while its registration was busy, is due by its own time, not its org's."""
        with table_errors("listing the orgs of due parked messages"):
            query = "PartitionKey eq @p and NextAttemptAt le @now"
            rows = self._table.query_entities(query, parameters={"p": PARKED_PARTITION, "now": now}, select=["OrgId"])
            return {str(row["OrgId"]) for row in rows}

    def iter_all(self) -> Iterator[ParkedMessage]:
        """Every parked message (operators and tests)."""
        with table_errors("listing parked messages"):
            for row in self._table.query_entities("PartitionKey eq @p", parameters={"p": PARKED_PARTITION}):
                yield ParkedMessage.from_entity(row)

    def _get(self, org_id: str, key: str, what: str) -> ParkedMessage | None:
        with table_errors(what):
            try:
                return ParkedMessage.from_entity(self._table.get_entity(PARKED_PARTITION, f"{org_id}|{key}"))
            except ResourceNotFoundError:
                return None
