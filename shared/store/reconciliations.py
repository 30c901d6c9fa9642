"""Per-webinar reconciliation state: one row per (org, ON24 webinar) in the ``<prefix>syncstate`` table, in the
org's partition under RowKey ``~reconcile|<webinar id>`` (reserved rows start with ``~``: the metrics sync never
lists them, and an org's purge deletes them with the rest of its partition). One more row, ``~reconcile``, keeps
the org's switch-on mark (the credentials' ``created_at`` the last backfill was for).

A row keeps what the ledger keeps already and nothing more: counts, times, who asked, and the CRM registration
ids of the drifting registrations (capped). Never an email, a name, or an id of a registrant the app did not
create.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from azure.data.tables import TableClient, UpdateMode

from shared.store import codec
from shared.store.codec import EPOCH
from shared.store.tables import read_entity, table_errors, write_entity

ROW_PREFIX: Final = "~reconcile|"
MARK_ROW: Final = "~reconcile"
CLASSES: Final = ("missingInOn24", "goneInCrm", "different", "notOurs", "agreed")
"""The five classes, in the issue's order: in CRM (active) but not in ON24; in ON24 with our id but cancelled,
inactive or deleted in CRM; in both with another email or event; in ON24 without our id; in agreement."""
DRIFT_CLASSES: Final = ("missingInOn24", "goneInCrm", "different")
"""The classes whose registration ids are kept (``notOurs`` has no registration id: only its count is kept)."""
MAX_IDS: Final = 1000
"""Ids kept per class (a Table Storage column holds 64 KiB); the counts stay exact beyond it."""


@dataclass(frozen=True)
class ReconcileState:
    """Where the reconciliation of one webinar stands.

    Attributes:
        reconciled_at: the end of the last complete reconciliation (None: never).
        counts: persons per class at that time; ``forgotten`` counts active CRM registrations of forgotten
            persons (in ``agreed``: ON24 must not hold them).
        ids: the CRM registration ids per drift class (at most ``MAX_IDS`` each).
        requested_at, request_repair, requested_by, request_id: a reconciliation asked for and not yet done
            (on demand, or the backfill after a switch-on); ``request_id`` is the operation that waits for it.
        repaired_at, repaired_by, repairs: the last repair: when, who or what, and its outcomes by status.
        last_error: why the last attempt did not finish (None when it did).
    """

    org_id: str
    webinar_id: str
    reconciled_at: datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)
    ids: dict[str, tuple[str, ...]] = field(default_factory=dict)
    requested_at: datetime | None = None
    request_repair: bool = False
    requested_by: str | None = None
    request_id: str | None = None
    repaired_at: datetime | None = None
    repaired_by: str | None = None
    repairs: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    answered_id: str | None = None
    """The request (operation) the last reconciliation answered."""
    etag: str | None = field(default=None, compare=False)

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": self.org_id,
            "RowKey": ROW_PREFIX + self.webinar_id,
            "ReconciledAt": self.reconciled_at or EPOCH,
            "Counts": json.dumps(self.counts, separators=(",", ":")),
            **{f"Ids{name[0].upper()}{name[1:]}": ",".join(self.ids.get(name, ())[:MAX_IDS]) for name in DRIFT_CLASSES},
            "RequestedAt": self.requested_at or EPOCH,
            "RequestRepair": self.request_repair,
            "RequestedBy": (self.requested_by or "")[:200],
            "RequestId": self.request_id or "",
            "RepairedAt": self.repaired_at or EPOCH,
            "RepairedBy": (self.repaired_by or "")[:200],
            "Repairs": json.dumps(self.repairs, separators=(",", ":")),
            "LastError": (self.last_error or "")[:1000],
            "LastAttemptAt": self.last_attempt_at or EPOCH,
            "AnsweredId": self.answered_id or "",
        }

    @classmethod
    def from_entity(cls, entity: Any) -> ReconcileState:
        def when(name: str) -> datetime | None:
            return codec.moment(entity.get(name))

        return cls(
            org_id=str(entity["PartitionKey"]),
            webinar_id=str(entity["RowKey"])[len(ROW_PREFIX) :],
            reconciled_at=when("ReconciledAt"),
            counts=_numbers(entity.get("Counts")),
            ids={
                name: tuple(i for i in str(entity.get(f"Ids{name[0].upper()}{name[1:]}") or "").split(",") if i)
                for name in DRIFT_CLASSES
            },
            requested_at=when("RequestedAt"),
            request_repair=bool(entity.get("RequestRepair")),
            requested_by=codec.text(entity.get("RequestedBy")),
            request_id=codec.text(entity.get("RequestId")),
            repaired_at=when("RepairedAt"),
            repaired_by=codec.text(entity.get("RepairedBy")),
            repairs=_numbers(entity.get("Repairs")),
            last_error=codec.text(entity.get("LastError")),
            last_attempt_at=when("LastAttemptAt"),
            answered_id=codec.text(entity.get("AnsweredId")),
            etag=codec.etag_of(entity),
        )


def _numbers(text: Any) -> dict[str, int]:
    try:
        data = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): int(v) for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool)}


class ReconcileStore:
    """Reconciliation rows, written with optimistic concurrency (etag)."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, org_id: str, webinar_id: str) -> ReconcileState | None:
        what = f"reading the reconciliation of webinar {webinar_id} (org {org_id!r})"
        entity = read_entity(self._table, org_id, ROW_PREFIX + webinar_id, what)
        return None if entity is None else ReconcileState.from_entity(entity)

    def list(self, org_id: str) -> list[ReconcileState]:
        """Every reconciliation row of the org (one per webinar reconciled or asked for)."""
        query = "PartitionKey eq @org and RowKey ge @low and RowKey lt @high"
        high = ROW_PREFIX[:-1] + chr(ord(ROW_PREFIX[-1]) + 1)
        with table_errors(f"listing the reconciliations of org {org_id!r}"):
            rows = self._table.query_entities(query, parameters={"org": org_id, "low": ROW_PREFIX, "high": high})
            return [ReconcileState.from_entity(row) for row in rows]

    def save(self, state: ReconcileState) -> ReconcileState | None:
        """Write ``state`` if its row is still at ``state.etag`` (absent when None); None when it changed."""
        what = f"saving the reconciliation of webinar {state.webinar_id} (org {state.org_id!r})"
        etag = write_entity(self._table, state.to_entity(), state.etag, what)
        return None if etag is None else replace(state, etag=etag)

    def switch_on_mark(self, org_id: str) -> datetime | None:
        """The credentials' ``created_at`` (the last switch-on) the org's last backfill was asked for."""
        entity = read_entity(self._table, org_id, MARK_ROW, f"reading the backfill mark of org {org_id!r}")
        return codec.moment(entity.get("BackfilledFor")) if entity is not None else None

    def set_switch_on_mark(self, org_id: str, switched_on_at: datetime) -> None:
        entity = {"PartitionKey": org_id, "RowKey": MARK_ROW, "BackfilledFor": switched_on_at}
        with table_errors(f"saving the backfill mark of org {org_id!r}"):
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
