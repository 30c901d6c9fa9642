"""An org's health summary: one row per org in the sync-state table (RowKey ``~health``), kept by PullMetrics.

The status route (``GET /api/orgs/{orgId}/webinar/status``) reads this row instead of counting the ledger
and the rejected messages on every call. PullMetrics rewrites it only when something changed since its last
pass (``shared.health.refresh_health``), with optimistic concurrency like the sync state.

The row sits in the org's sync-state partition, so anything that removes an org's sync state removes it too.
It holds counts, registration ids, times and failure reasons (which name a column or ON24's answer, never a
value from CRM or a secret). One more row, ``(~app, ~rejected)``, remembers up to when the rejected messages
were counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import TableClient, UpdateMode

from shared.store.codec import EPOCH, etag_of, moment
from shared.store.tables import read_entity, table_errors, write_entity

HEALTH_ROW = "~health"
_APP_PARTITION = "~app"
_REJECTED_MARK_ROW = "~rejected"
MAX_REASON_CHARS = 300


@dataclass(frozen=True)
class Failure:
    """One recent failure: the registration, when it was recorded and why."""

    registration_id: str
    at: datetime
    reason: str


@dataclass(frozen=True)
class RegistrationCounts:
    """The org's registrations as the ledger held them at ``counted_at``.

    Attributes:
        totals: registrations by their last recorded outcome (``registered``, ``updated``, ``cancelled``,
            ``skipped``, ``failed``, ``in progress``, and any outcome a newer release records).
        hours: outcomes recorded per hour (``"2026-11-24T09:00Z"`` -> outcome -> count), last 25 hours.
        in_on24: registrations ON24 holds a confirmed registrant for.
        recent_failures: the 5 most recent failures, newest first.
        last_on24_success: the newest outcome that needed ON24 to accept a registrant (registered, updated).
        webinars: the ON24 webinars the org has registrations for (listed by the status route, pulled or not).
    """

    counted_at: datetime
    totals: dict[str, int] = field(default_factory=dict)
    hours: dict[str, dict[str, int]] = field(default_factory=dict)
    at_provider: int = 0
    recent_failures: tuple[Failure, ...] = ()
    last_provider_success: datetime | None = None
    webinars: tuple[str, ...] = ()


@dataclass(frozen=True)
class RejectedCounts:
    """Queue messages kept because they could not be parsed, filed under this org."""

    total: int = 0
    waiting: int = 0
    """Not re-submitted yet by ``python -m tools.replay``."""
    hours: dict[str, int] = field(default_factory=dict)
    latest_at: datetime | None = None
    latest_reason: str | None = None


@dataclass(frozen=True)
class OrgHealth:
    """The summary row of one org. ``checked_at``: the pass that last looked at the org's ledger."""

    org_id: str
    checked_at: datetime | None = None
    registrations: RegistrationCounts | None = None
    rejected: RejectedCounts = field(default_factory=RejectedCounts)
    etag: str | None = field(default=None, compare=False)

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": self.org_id,
            "RowKey": HEALTH_ROW,
            "CheckedAt": self.checked_at or EPOCH,
            "Registrations": json.dumps(_registrations_json(self.registrations), separators=(",", ":")),
            "Rejected": json.dumps(_rejected_json(self.rejected), separators=(",", ":")),
        }

    @classmethod
    def from_entity(cls, entity: Any) -> OrgHealth:
        checked = entity.get("CheckedAt")
        return cls(
            org_id=str(entity["PartitionKey"]),
            checked_at=moment(checked),
            registrations=_registrations_from(_loads(entity.get("Registrations"))),
            rejected=_rejected_from(_loads(entity.get("Rejected"))),
            etag=etag_of(entity),
        )


class HealthStore:
    """The ``~health`` rows (and the rejected-count mark) in the ``<prefix>syncstate`` table."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, org_id: str) -> OrgHealth | None:
        entity = read_entity(self._table, org_id, HEALTH_ROW, f"reading the health summary of org {org_id!r}")
        return None if entity is None else OrgHealth.from_entity(entity)

    def save(self, health: OrgHealth) -> OrgHealth | None:
        """Write ``health`` if the row is still at ``health.etag``; None when another pass changed it first."""
        what = f"saving the health summary of org {health.org_id!r}"
        etag = write_entity(self._table, health.to_entity(), health.etag, what)
        return None if etag is None else replace(health, etag=etag)

    def rejected_mark(self) -> datetime | None:
        """Up to when the rejected messages were last counted."""
        entity = read_entity(self._table, _APP_PARTITION, _REJECTED_MARK_ROW, "reading the rejected-count mark")
        return moment(entity.get("CountedAt")) if entity is not None else None

    def set_rejected_mark(self, counted_at: datetime) -> None:
        entity = {"PartitionKey": _APP_PARTITION, "RowKey": _REJECTED_MARK_ROW, "CountedAt": counted_at}
        with table_errors("saving the rejected-count mark"):
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)


# ---- JSON columns ----------------------------------------------------------------------------------------------
def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _loads(text: Any) -> dict[str, Any]:
    try:
        data = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}


def _registrations_json(counts: RegistrationCounts | None) -> dict[str, Any]:
    if counts is None:
        return {}
    return {
        "countedAt": _iso(counts.counted_at),
        "totals": counts.totals,
        "hours": counts.hours,
        "inOn24": counts.at_provider,
        "recentFailures": [
            {"registrationId": f.registration_id, "at": _iso(f.at), "reason": f.reason[:MAX_REASON_CHARS]}
            for f in counts.recent_failures
        ],
        "lastOn24Success": _iso(counts.last_provider_success),
        "webinars": list(counts.webinars),
    }


def _registrations_from(data: dict[str, Any]) -> RegistrationCounts | None:
    counted_at = _time(data.get("countedAt"))
    if counted_at is None:
        return None
    hours = data.get("hours")
    failures = []
    for item in data.get("recentFailures") or []:
        at = _time(item.get("at")) if isinstance(item, dict) else None
        if at is not None:
            failures.append(Failure(str(item.get("registrationId") or ""), at, str(item.get("reason") or "")))
    return RegistrationCounts(
        counted_at=counted_at,
        totals=_counts(data.get("totals")),
        hours={str(hour): _counts(v) for hour, v in hours.items()} if isinstance(hours, dict) else {},
        at_provider=int(data.get("inOn24") or 0),
        recent_failures=tuple(failures),
        last_provider_success=_time(data.get("lastOn24Success")),
        webinars=tuple(str(w) for w in data.get("webinars") or () if isinstance(w, str)),
    )


def _rejected_json(counts: RejectedCounts) -> dict[str, Any]:
    return {
        "total": counts.total,
        "waiting": counts.waiting,
        "hours": counts.hours,
        "latestAt": _iso(counts.latest_at),
        "latestReason": (counts.latest_reason or "")[:MAX_REASON_CHARS] or None,
    }


def _rejected_from(data: dict[str, Any]) -> RejectedCounts:
    return RejectedCounts(
        total=int(data.get("total") or 0),
        waiting=int(data.get("waiting") or 0),
        hours=_counts(data.get("hours")),
        latest_at=_time(data.get("latestAt")),
        latest_reason=str(data.get("latestReason") or "") or None,
    )
