"""Queue messages that could not be parsed, kept whole so that nothing is lost when they complete.

One row per distinct (message id, body) in the ledger table's ``~rejected`` partition, keyed by a hash of
both: two bodies without a message id, or ids that differ only in characters a table key cannot hold
("a/b", "a_b"), never overwrite each other, while a redelivery of the same message lands on its own row.
Bodies up to ``INLINE_BODY_BYTES`` sit in the row; larger ones go whole to a blob in the
``<prefix>rejected`` container, named after the row key, and the row points to it.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import EdmType, EntityProperty, TableClient, TableTransactionError, UpdateMode

from shared.store.blobs import blob_errors
from shared.store.tables import TRANSACTION_SIZE, delete_matching, merge_entity, table_errors

if TYPE_CHECKING:  # the Blob SDK costs ~150 ms to import; only a body over the row limit needs it
    from azure.storage.blob import ContainerClient

_log = logging.getLogger(__name__)

REJECTED_PARTITION = "~rejected"
INLINE_BODY_BYTES = 48 * 1024  # a binary table property holds at most 64 KiB
_MAX_ID_CHARS = 1024


@dataclass(frozen=True)
class RejectedMessage:
    """A kept message: its id, why it was rejected and its whole body."""

    key: str
    message_id: str
    org_id: str | None
    sequence_number: int | None
    reason: str
    body: bytes
    delivery_count: int
    rejected_at: datetime | None
    replayed_at: datetime | None = None
    """When ``python -m tools.replay`` re-submitted it (None: not yet)."""
    replayed_as: str | None = None
    """How it was re-submitted: ``queue`` or ``handler: <outcome>``."""


@dataclass(frozen=True)
class RejectedSummaryRow:
    """A kept message without its body: what the health summary counts."""

    key: str
    org_id: str | None
    reason: str
    rejected_at: datetime | None
    replayed_at: datetime | None


class RejectedMessages:
    """Keep and list rejected queue messages (rows in ``table``, large bodies as blobs).

    Args:
        table: the ledger table (the rows live in partition ``~rejected``).
        container: a callable returning the blob container for large bodies, built on first use so that
            a deployment without large bodies never needs Blob Storage.
    """

    def __init__(self, table: TableClient, container: Callable[[], ContainerClient]) -> None:
        self._table = table
        self._container = container
        self._container_ready = False

    def record(
        self,
        message_id: str,
        reason: str,
        body: bytes,
        *,
        org_id: str | None = None,
        sequence_number: int | None = None,
        delivery_count: int | None = None,
    ) -> str:
        """Keep a rejected message whole. Idempotent for a redelivery of the same message.

        ``org_id`` files it under the org it seems to belong to, when the body names one.

        Returns:
            The row key it is kept under.

        Raises:
            TransientError: storage is unavailable (the message is redelivered and kept on a later attempt).
            ConfigError: the app's identity may not write to storage.
        """
        key = rejection_key(message_id, body)
        entity: dict[str, Any] = {
            "PartitionKey": REJECTED_PARTITION,
            "RowKey": key,
            "MessageId": message_id[:_MAX_ID_CHARS],
            "OrgId": org_id or "",
            "SequenceNumber": EntityProperty(sequence_number if sequence_number is not None else -1, EdmType.INT64),
            "Reason": reason[:1000],
            "BodyBytes": len(body),
            "BodySha256": hashlib.sha256(body).hexdigest(),
            "DeliveryCount": delivery_count or 0,
            "RejectedAt": datetime.now(UTC),
        }
        if len(body) <= INLINE_BODY_BYTES:
            entity["Body"] = body
        else:
            self._upload(key, body)
            entity["BodyBlob"] = key
        with table_errors(f"keeping rejected message {key}"):
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        return key

    def list(self) -> Iterator[RejectedMessage]:
        """Every kept message with its whole body (for operators, replay and tests)."""
        with table_errors("listing rejected messages"):
            rows = list(self._table.query_entities("PartitionKey eq @p", parameters={"p": REJECTED_PARTITION}))
        for row in rows:
            body = bytes(row.get("Body") or b"")
            if row.get("BodyBlob"):
                body = self._download(str(row["BodyBlob"]))
            sequence = row.get("SequenceNumber")
            sequence = sequence.value if isinstance(sequence, EntityProperty) else sequence
            yield RejectedMessage(
                key=str(row["RowKey"]),
                message_id=str(row.get("MessageId") or ""),
                org_id=str(row.get("OrgId") or "") or None,
                sequence_number=sequence if isinstance(sequence, int) and sequence >= 0 else None,
                reason=str(row.get("Reason") or ""),
                body=body,
                delivery_count=int(row.get("DeliveryCount") or 0),
                rejected_at=row.get("RejectedAt"),
                replayed_at=_when(row.get("ReplayedAt")),
                replayed_as=str(row.get("ReplayedAs") or "") or None,
            )

    # ---- for the health summary and the replay tool (read-only, except ``mark_replayed``) -------------------
    def changed_since(self, since: datetime) -> bool:
        """Whether a message was kept, or re-submitted, at or after ``since`` (stops at the first such row)."""
        # The spaces inside the parentheses matter: the SDK finds @parameters by splitting the filter on spaces.
        query = "PartitionKey eq @p and ( RejectedAt ge @since or ReplayedAt ge @since )"
        with table_errors("looking for newly rejected messages"):
            rows = self._table.query_entities(
                query, parameters={"p": REJECTED_PARTITION, "since": since}, select=["RowKey"], results_per_page=1
            )
            return next(iter(rows), None) is not None

    def summary_rows(self) -> Iterator[RejectedSummaryRow]:
        """Every kept message without its body (a narrow read of the partition, for counting)."""
        columns = ["RowKey", "OrgId", "Reason", "RejectedAt", "ReplayedAt"]
        with table_errors("counting rejected messages"):
            for row in self._table.query_entities(
                "PartitionKey eq @p", parameters={"p": REJECTED_PARTITION}, select=columns
            ):
                yield RejectedSummaryRow(
                    key=str(row["RowKey"]),
                    org_id=str(row.get("OrgId") or "") or None,
                    reason=str(row.get("Reason") or ""),
                    rejected_at=_when(row.get("RejectedAt")),
                    replayed_at=_when(row.get("ReplayedAt")),
                )

    def mark_replayed(self, key: str, how: str, *, at: datetime | None = None) -> bool:
        """Note that a kept message was re-submitted (merge; never re-creates a deleted row). False if gone."""
        entity = {
            "PartitionKey": REJECTED_PARTITION,
            "RowKey": key,
            "ReplayedAt": at or datetime.now(UTC),
            "ReplayedAs": how[:200],
        }
        return merge_entity(self._table, entity, f"marking rejected message {key} as replayed")

    def _upload(self, key: str, body: bytes) -> None:
        with blob_errors(f"keeping the body of rejected message {key}"):
            container = self._container()
            if not self._container_ready:
                with suppress(ResourceExistsError):
                    container.create_container()
                self._container_ready = True
            container.upload_blob(key, body, overwrite=True)

    def _download(self, key: str) -> bytes:
        with blob_errors(f"reading the body of rejected message {key}"):
            return bytes(self._container().download_blob(key).readall())

    # ---- privacy: expiry, erasure and purge (issue 14) ---------------------------------------------------------
    def expire(self, cutoff: datetime, *, limit: int) -> tuple[int, bool]:
        """Delete up to ``limit`` messages rejected before ``cutoff``, with their blobs.

        A redelivery may keep the same message again meanwhile (it uploads the blob again, then writes the row
        with a fresh ``RejectedAt``): so a blob goes only if it was not written since ``cutoff``, and a row only
        if it is still at the version read. The blob goes first: a crash in between leaves an expired row whose
        blob is gone, which the next pass deletes; never a blob without a row.

        Returns:
            (messages deleted, whether none older than ``cutoff`` is left).
        """
        with table_errors("listing expired rejected messages"):
            rows = list(
                islice(
                    self._table.query_entities(
                        "PartitionKey eq @p and RejectedAt lt @cutoff",
                        parameters={"p": REJECTED_PARTITION, "cutoff": cutoff},
                        select=["PartitionKey", "RowKey", "BodyBlob"],
                    ),
                    limit,
                )
            )
        deleted = 0
        for start in range(0, len(rows), TRANSACTION_SIZE):
            chunk = rows[start : start + TRANSACTION_SIZE]
            for row in chunk:
                if row.get("BodyBlob"):
                    self._delete_blob(str(row["BodyBlob"]), unmodified_since=cutoff)
            operations: builtins.list[Any] = [
                (
                    "delete",
                    {"PartitionKey": REJECTED_PARTITION, "RowKey": row["RowKey"]},
                    {"etag": row.metadata["etag"], "match_condition": MatchConditions.IfNotModified},
                )
                for row in chunk
            ]
            with table_errors("deleting expired rejected messages"):
                try:
                    self._table.submit_transaction(operations)
                    deleted += len(chunk)
                except TableTransactionError:  # one row was kept again or deleted meanwhile: row by row
                    for _, entity, options in operations:
                        try:
                            self._table.delete_entity(entity, **options)
                        except ResourceModifiedError:
                            continue
                        deleted += 1
        return deleted, len(rows) < limit

    def list_for_org(self, org_id: str) -> Iterator[RejectedMessage]:
        """The kept messages filed under ``org_id``, with their bodies."""
        return (message for message in self.list() if message.org_id == org_id)

    def delete(self, messages: Sequence[RejectedMessage]) -> int:
        """Delete these kept messages, body blobs first (an erasure). Idempotent. Returns how many."""
        for message in messages:
            if len(message.body) > INLINE_BODY_BYTES:
                self._delete_blob(message.key)
            with table_errors(f"deleting rejected message {message.key}"):
                self._table.delete_entity(REJECTED_PARTITION, message.key)
        return len(messages)

    def delete_org_rows(self, org_id: str, *, limit: int) -> int:
        """Delete up to ``limit`` of the messages filed under ``org_id`` and their blobs (a purge).

        Returns:
            How many; fewer than ``limit`` means none is left.
        """

        def blobs_first(rows: builtins.list[Any]) -> None:
            for row in rows:
                if row.get("BodyBlob"):
                    self._delete_blob(str(row["BodyBlob"]))

        return delete_matching(
            self._table,
            "PartitionKey eq @p and OrgId eq @org",
            {"p": REJECTED_PARTITION, "org": org_id},
            limit=limit,
            what=f"deleting the rejected messages of org {org_id!r}",
            select=("BodyBlob",),
            before_delete=blobs_first,
        )

    def _delete_blob(self, key: str, *, unmodified_since: datetime | None = None) -> None:
        """Delete a body blob; gone already, or written since ``unmodified_since``, is left as it is."""
        with blob_errors(f"deleting the body of rejected message {key}"):
            try:
                self._container().delete_blob(key, if_unmodified_since=unmodified_since)
            except (ResourceNotFoundError, ResourceModifiedError):
                return


def _when(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


def rejection_key(message_id: str, body: bytes) -> str:
    """A table-safe key unique to (message id, body): the SHA-256 of both, hex."""
    digest = hashlib.sha256()
    digest.update(message_id.encode("utf-8", "surrogatepass"))
    digest.update(b"\x00")
    digest.update(body)
    return digest.hexdigest()
