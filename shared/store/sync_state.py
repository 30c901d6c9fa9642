"""Per-webinar metrics sync state: one row per (org, ON24 webinar) in the ``<prefix>syncstate`` table.

The bookmark follows the Singer SDK's habit: ``replication_key_value`` is the activity time up to which
attendee metrics are known to be written (it only advances after every write of a pull succeeded, and
never past the run's signpost). A pull too large for one run keeps its window, the next page to fetch and
an anchor (``pending_*``), so the next run resumes instead of starting over. The anchor is a short hash of
each attendee on the last page written (no emails are stored here): the resumed pull re-reads that page and
continues after the last anchored attendee it finds, wherever the list has shifted it.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from azure.data.tables import TableClient, UpdateMode

from shared.store import codec
from shared.store.codec import EPOCH
from shared.store.tables import delete_partition, read_entity, table_errors, write_entity

_DISCOVERY_ROW = "~discovery"
# Rows of an org's partition that are not webinars start with "~" (ON24 event ids are digits): the discovery
# mark, and the org's health summary (``shared.store.health``).
RESERVED_ROW_PREFIX = "~"
COUNTERS = ("pulled", "matched", "written", "unchanged", "unmatched", "failed")


@dataclass(frozen=True)
class WebinarSyncState:
    """Where the metrics sync of one webinar stands."""

    org_id: str
    webinar_id: str
    replication_key_value: datetime | None = None
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    live_start: datetime | None = None
    window_end: datetime | None = None
    meta_fetched_at: datetime | None = None
    pending_start: datetime | None = None
    pending_end: datetime | None = None
    pending_page: int = 0
    pending_anchor: tuple[str, ...] = ()
    status: str = "new"
    last_error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    retention_cleared_at: datetime | None = None
    """Start of the last retention pass that left no personal data in the webinar's ledger rows (closed webinars)."""
    retention_cursor: str | None = None
    """Row key an unfinished retention pass stopped after; the next run continues there."""
    not_found_count: int = 0
    """Consecutive schedule checks the provider answered "no such webinar" (404/410); 0 after one that found it."""
    not_found_since: datetime | None = None
    """The first of those answers."""
    recheck_at: datetime | None = None
    """While the provider does not know the webinar: no provider call for it before then (backoff)."""
    no_show_mark: str = ""
    """The fingerprint of the field mapping's ``noShow`` entry under which the webinar's no-shows were written after
    its window closed ("": not yet); see ``shared.metrics.noshow``."""
    etag: str | None = field(default=None, compare=False)

    def to_entity(self) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": self.org_id,
            "RowKey": self.webinar_id,
            "ReplicationKeyValue": self.replication_key_value or EPOCH,
            "LastAttemptAt": self.last_attempt_at or EPOCH,
            "LastSuccessAt": self.last_success_at or EPOCH,
            "LiveStart": self.live_start or EPOCH,
            "WindowEnd": self.window_end or EPOCH,
            "MetaFetchedAt": self.meta_fetched_at or EPOCH,
            "PendingStart": self.pending_start or EPOCH,
            "PendingEnd": self.pending_end or EPOCH,
            "PendingPage": self.pending_page,
            "PendingAnchor": ",".join(self.pending_anchor),
            "Status": self.status,
            "LastError": (self.last_error or "")[:1000],
            "RetentionClearedAt": self.retention_cleared_at or EPOCH,
            "RetentionCursor": self.retention_cursor or "",
            "NotFoundCount": self.not_found_count,
            "NotFoundSince": self.not_found_since or EPOCH,
            "RecheckAt": self.recheck_at or EPOCH,
            "NoShowMark": self.no_show_mark,
        }
        for name in COUNTERS:
            entity[f"Count{name.capitalize()}"] = int(self.counts.get(name, 0))
        return entity

    @classmethod
    def from_entity(cls, entity: Any) -> WebinarSyncState:
        def when(name: str) -> datetime | None:
            return codec.moment(entity.get(name))

        return cls(
            org_id=entity["PartitionKey"],
            webinar_id=entity["RowKey"],
            replication_key_value=when("ReplicationKeyValue"),
            last_attempt_at=when("LastAttemptAt"),
            last_success_at=when("LastSuccessAt"),
            live_start=when("LiveStart"),
            window_end=when("WindowEnd"),
            meta_fetched_at=when("MetaFetchedAt"),
            pending_start=when("PendingStart"),
            pending_end=when("PendingEnd"),
            pending_page=int(entity.get("PendingPage") or 0),
            pending_anchor=tuple(a for a in str(entity.get("PendingAnchor") or "").split(",") if a),
            status=str(entity.get("Status") or "new"),
            last_error=entity.get("LastError") or None,
            counts={name: int(entity.get(f"Count{name.capitalize()}") or 0) for name in COUNTERS},
            retention_cleared_at=when("RetentionClearedAt"),
            retention_cursor=str(entity.get("RetentionCursor") or "") or None,
            not_found_count=int(entity.get("NotFoundCount") or 0),
            not_found_since=when("NotFoundSince"),
            recheck_at=when("RecheckAt"),
            no_show_mark=str(entity.get("NoShowMark") or ""),
            etag=codec.etag_of(entity),
        )


class SyncStateStore:
    """Rows of the ``<prefix>syncstate`` table, written with optimistic concurrency."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, org_id: str, webinar_id: str) -> WebinarSyncState | None:
        what = f"reading sync state of webinar {webinar_id} (org {org_id!r})"
        entity = read_entity(self._table, org_id, webinar_id, what)
        return None if entity is None else WebinarSyncState.from_entity(entity)

    def list(self, org_id: str) -> list[WebinarSyncState]:
        with table_errors(f"listing sync state of org {org_id!r}"):
            return [
                WebinarSyncState.from_entity(entity)
                for entity in self._table.query_entities(f"PartitionKey eq '{org_id.replace(chr(39), chr(39) * 2)}'")
                if not str(entity["RowKey"]).startswith(RESERVED_ROW_PREFIX)
            ]

    def save(self, state: WebinarSyncState) -> WebinarSyncState | None:
        """Write ``state`` if the row is still at ``state.etag``; None when another run changed it first."""
        what = f"saving sync state of webinar {state.webinar_id} (org {state.org_id!r})"
        etag = write_entity(self._table, state.to_entity(), state.etag, what)
        return None if etag is None else replace(state, etag=etag)

    def discovery_mark(self, org_id: str) -> datetime | None:
        """Up to when the ledger was already scanned for this org's webinars."""
        entity = read_entity(
            self._table, org_id, _DISCOVERY_ROW, f"reading the webinar discovery mark of org {org_id!r}"
        )
        return codec.moment(entity.get("ScannedUntil")) if entity is not None else None

    def set_discovery_mark(self, org_id: str, scanned_until: datetime) -> None:
        entity = {"PartitionKey": org_id, "RowKey": _DISCOVERY_ROW, "ScannedUntil": scanned_until}
        with table_errors(f"saving the webinar discovery mark of org {org_id!r}"):
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    # ---- privacy: retention and purge (issue 14) -------------------------------------------------------------
    def list_all(self) -> builtins.list[WebinarSyncState]:
        """Every webinar's sync state, of every org (configured or not): retention runs over all of them."""
        with table_errors("listing the sync state of all orgs"):
            return [
                WebinarSyncState.from_entity(entity)
                for entity in self._table.list_entities()
                if not str(entity["RowKey"]).startswith(RESERVED_ROW_PREFIX)
                and not str(entity["PartitionKey"]).startswith(RESERVED_ROW_PREFIX)
            ]

    def delete_org_rows(self, org_id: str, *, limit: int) -> int:
        """Delete up to ``limit`` of the org's sync-state rows (a purge). Returns how many; fewer: none left."""
        return delete_partition(self._table, org_id, limit=limit, what=f"deleting the sync state of org {org_id!r}")
