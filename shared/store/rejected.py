"""Queue messages that could not be parsed, kept whole so that nothing is lost when they complete.

One row per distinct (message id, body) in the ledger table, keyed by a hash of both: two bodies without a
message id, or ids that differ only in characters a table key cannot hold ("a/b", "a_b"), never overwrite each
other, while a redelivery of the same message lands on its own row. A message filed under an org goes to that
org's partition ``~rejected|<org>``; one that names no org to ``~rejected``. So an erasure or a purge of one org
reads only that org's rows and body blobs (issue 18). Bodies up to ``INLINE_BODY_BYTES`` sit in the row; larger
ones go whole to a blob in the ``<prefix>rejected`` container, named after the message's key (``<org>/<hash>``,
or ``<hash>``), and the row points to it.

Rows kept before issue 18 sit in ``~rejected`` with an ``OrgId``: they stay readable (an org's lookup also asks
that partition for its own ``OrgId``, a filter Table Storage applies server-side, so no other org's row or blob
reaches us), and ``move_legacy`` (run by the housekeeping timer) moves them to their org's partition; after
that ``~rejected`` holds only messages that name no org.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
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
"""Messages that name no org (and, until ``move_legacy`` moved them, those kept before issue 18)."""
_ALL = "PartitionKey ge @p and PartitionKey lt @end"  # ``~rejected`` and every ``~rejected|<org>``
_ALL_PARAMETERS = {"p": REJECTED_PARTITION, "end": REJECTED_PARTITION + "}"}  # "|" < "}"; org ids hold neither
INLINE_BODY_BYTES = 48 * 1024  # a binary table property holds at most 64 KiB
_MAX_ID_CHARS = 1024


@dataclass(frozen=True)
class RejectedMessage:
    """A kept message: its id, why it was rejected and its whole body."""

    key: str
    """Where it is kept: ``<org>/<hash>`` in its org's partition, or ``<hash>`` in ``~rejected``."""
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
        digest = rejection_key(message_id, body)
        key = f"{org_id}/{digest}" if org_id else digest
        entity: dict[str, Any] = {
            "PartitionKey": org_partition(org_id),
            "RowKey": digest,
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
            rows = list(self._table.query_entities(_ALL, parameters=_ALL_PARAMETERS))
        return self._messages(rows)

    def _messages(self, rows: Iterable[Any]) -> Iterator[RejectedMessage]:
        for row in rows:
            body = bytes(row.get("Body") or b"")
            if row.get("BodyBlob"):
                body = self._download(str(row["BodyBlob"]))
            sequence = row.get("SequenceNumber")
            sequence = sequence.value if isinstance(sequence, EntityProperty) else sequence
            yield RejectedMessage(
                key=_key_of(row),
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
        query = _ALL + " and ( RejectedAt ge @since or ReplayedAt ge @since )"
        with table_errors("looking for newly rejected messages"):
            rows = self._table.query_entities(
                query, parameters={**_ALL_PARAMETERS, "since": since}, select=["RowKey"], results_per_page=1
            )
            return next(iter(rows), None) is not None

    def summary_rows(self) -> Iterator[RejectedSummaryRow]:
        """Every kept message without its body (a narrow read of the partition, for counting)."""
        columns = ["PartitionKey", "RowKey", "OrgId", "Reason", "RejectedAt", "ReplayedAt"]
        with table_errors("counting rejected messages"):
            for row in self._table.query_entities(_ALL, parameters=_ALL_PARAMETERS, select=columns):
                yield RejectedSummaryRow(
                    key=_key_of(row),
                    org_id=str(row.get("OrgId") or "") or None,
                    reason=str(row.get("Reason") or ""),
                    rejected_at=_when(row.get("RejectedAt")),
                    replayed_at=_when(row.get("ReplayedAt")),
                )

    def mark_replayed(self, key: str, how: str, *, at: datetime | None = None) -> bool:
        """Note that a kept message was re-submitted (merge; never re-creates a deleted row). False if gone."""
        partition, row_key = _row_of(key)
        entity = {
            "PartitionKey": partition,
            "RowKey": row_key,
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
                        _ALL + " and RejectedAt lt @cutoff",
                        parameters={**_ALL_PARAMETERS, "cutoff": cutoff},
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
            deleted += self._delete_unchanged(chunk, "deleting expired rejected messages")
        return deleted, len(rows) < limit

    def _delete_unchanged(self, rows: builtins.list[Any], what: str) -> int:
        """Delete rows still at the version read, one transaction per partition; returns how many went."""
        deleted = 0
        by_partition: dict[str, builtins.list[Any]] = {}
        for row in rows:
            by_partition.setdefault(row["PartitionKey"], []).append(
                (
                    "delete",
                    {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"]},
                    {"etag": row.metadata["etag"], "match_condition": MatchConditions.IfNotModified},
                )
            )
        for operations in by_partition.values():
            with table_errors(what):
                try:
                    self._table.submit_transaction(operations)
                    deleted += len(operations)
                except TableTransactionError:  # one row was kept again or deleted meanwhile: row by row
                    for _, entity, options in operations:
                        try:
                            self._table.delete_entity(entity, **options)
                        except (ResourceModifiedError, ResourceNotFoundError):
                            continue
                        deleted += 1
        return deleted

    def list_for_org(self, org_id: str) -> Iterator[RejectedMessage]:
        """The kept messages filed under ``org_id``, with their bodies: the org's partition, and its rows kept
        before issue 18 that ``move_legacy`` has not moved yet. No other org's row or blob is read."""
        with table_errors(f"listing the rejected messages of org {org_id!r}"):
            rows = list(self._table.query_entities("PartitionKey eq @p", parameters={"p": org_partition(org_id)}))
            rows += self._table.query_entities(
                "PartitionKey eq @p and OrgId eq @org", parameters={"p": REJECTED_PARTITION, "org": org_id}
            )
        return self._messages(rows)

    def move_legacy(self, *, limit: int) -> tuple[int, bool]:
        """Move up to ``limit`` rows kept before issue 18 (in ``~rejected``, with an ``OrgId``) to their org's
        partition; the body blob keeps its name (the row points to it). Copy first, then delete the old row
        only if unchanged: a crash in between leaves both, and the next pass finishes. Idempotent.

        Returns:
            (rows moved, whether none is left).
        """
        with table_errors("listing rejected messages kept before issue 18"):
            rows = list(
                islice(
                    self._table.query_entities(
                        "PartitionKey eq @p and OrgId gt ''", parameters={"p": REJECTED_PARTITION}
                    ),
                    limit,
                )
            )
        for row in rows:
            moved = {k: v for k, v in row.items() if k not in ("PartitionKey",)}
            moved["PartitionKey"] = org_partition(str(row["OrgId"]))
            moved["BodyBlob"] = row.get("BodyBlob") or ""
            with table_errors(f"moving rejected message {row['RowKey']} to its org's partition"):
                self._table.upsert_entity(moved, mode=UpdateMode.REPLACE)
        moved_count = self._delete_unchanged(rows, "removing moved rejected messages from ~rejected")
        return moved_count, len(rows) < limit

    def delete(self, messages: Sequence[RejectedMessage]) -> int:
        """Delete these kept messages, body blobs first (an erasure). Idempotent. Returns how many."""
        for message in messages:
            if len(message.body) > INLINE_BODY_BYTES:
                self._delete_blob(message.key)
            partition, row_key = _row_of(message.key)
            with table_errors(f"deleting rejected message {message.key}"):
                self._table.delete_entity(partition, row_key)  # a row already gone is no error
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

        deleted = 0
        for query, parameters in (
            ("PartitionKey eq @p", {"p": org_partition(org_id)}),
            ("PartitionKey eq @p and OrgId eq @org", {"p": REJECTED_PARTITION, "org": org_id}),  # not moved yet
        ):
            deleted += delete_matching(
                self._table,
                query,
                parameters,
                limit=limit - deleted,
                what=f"deleting the rejected messages of org {org_id!r}",
                select=("BodyBlob",),
                before_delete=blobs_first,
            )
            if deleted >= limit:
                break
        return deleted

    def _delete_blob(self, key: str, *, unmodified_since: datetime | None = None) -> None:
        """Delete a body blob; gone already, or written since ``unmodified_since``, is left as it is."""
        with blob_errors(f"deleting the body of rejected message {key}"):
            try:
                self._container().delete_blob(key, if_unmodified_since=unmodified_since)
            except (ResourceNotFoundError, ResourceModifiedError):
                return


def org_partition(org_id: str | None) -> str:
    """The partition of the messages filed under ``org_id`` (``~rejected`` for those that name no org)."""
    return f"{REJECTED_PARTITION}|{org_id}" if org_id else REJECTED_PARTITION


def _key_of(row: Any) -> str:
    partition = str(row["PartitionKey"])
    org = partition[len(REJECTED_PARTITION) + 1 :] if partition != REJECTED_PARTITION else ""
    return f"{org}/{row['RowKey']}" if org else str(row["RowKey"])


def _row_of(key: str) -> tuple[str, str]:
    """(partition, row key) of a message key (org ids never hold ``/``)."""
    org, _, digest = key.rpartition("/")
    return org_partition(org or None), digest


def _when(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


def rejection_key(message_id: str, body: bytes) -> str:
    """A table-safe key unique to (message id, body): the SHA-256 of both, hex."""
    digest = hashlib.sha256()
    digest.update(message_id.encode("utf-8", "surrogatepass"))
    digest.update(b"\x00")
    digest.update(body)
    return digest.hexdigest()
