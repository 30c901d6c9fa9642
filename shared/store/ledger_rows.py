"""A registration's ledger row: what ON24 may hold for it (the confirmed registrant, the pending ones, the intent
of the delivery holding it), its lease and its message order; and its Table Storage form (columns unchanged)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from shared.emails import match_key
from shared.errors import ConfigError
from shared.store import codec
from shared.store.codec import EPOCH

_log = logging.getLogger(__name__)

LedgerState = Literal["new", "registered", "cancelled", "skipped", "failed", "forgotten"]
_STATES: tuple[LedgerState, ...] = ("new", "registered", "cancelled", "skipped", "failed", "forgotten")
MAX_PENDING = 200  # far above any real history; a row never holds more than Table Storage's 64 KiB per column


@dataclass(frozen=True, slots=True)
class RegistrantRef:
    """An ON24 registrant as the ledger knows it: ON24 keys registrants by (event, email)."""

    webinar_id: str
    email: str

    def same(self, other: RegistrantRef) -> bool:
        """ON24 compares emails case-insensitively within an event (and an IDN domain is one domain)."""
        return self.webinar_id == other.webinar_id and match_key(self.email) == match_key(other.email)


@dataclass(frozen=True, slots=True)
class Intent:
    """What the delivery holding the lease is about to do in ON24, recorded before it does it.

    ``target`` is None for a removal (cancel, moved out of the webinar, deleted in CRM).
    """

    action: str
    target: RegistrantRef | None
    message_at: datetime
    priority: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "action": self.action,
                "event": self.target.webinar_id if self.target else None,
                "email": self.target.email if self.target else None,
                "at": self.message_at.isoformat(),
                "priority": self.priority,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Intent | None:
        try:
            data = json.loads(text)
            target = RegistrantRef(str(data["event"]), str(data["email"])) if data.get("event") else None
            return cls(str(data["action"]), target, datetime.fromisoformat(data["at"]), int(data["priority"]))
        except (ValueError, KeyError, TypeError):
            _log.error("ledger intent column is unreadable; treating the row as having no recorded intent")
            return None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A registration's recorded state. ``etag`` is the version the row was read at (None: not stored).

    Attributes:
        state: ``registered`` means ON24 holds the confirmed registrant (``on24_event_id``, ``email``,
            ``event_user_id``); the other states mean it holds no confirmed one.
        pending: registrants that may exist in ON24 besides the confirmed one (an interrupted delivery's
            target, a delete that did not complete): the next delivery that acts removes or confirms them.
        intent: what the lease holder is about to do; it stays after a crash (the lease then expires).
        last_message_at, last_priority: the rank of the newest message decided; older ones are stale.
        lease_id, lease_until: the delivery that holds the row, and until when.
        quiet_until: no ON24 call for this registration before then: a request that went unanswered may
            still be applied by ON24 until that time.
        fingerprint: a hash of the content ON24 confirmed for the registrant (its event and every person field
            sent), None when unknown (cleared by every claim, so an interrupted change leaves it unknown). A
            message that would send the same content needs no ON24 call.
    """

    org_id: str
    registration_id: str
    state: LedgerState = "new"
    webinar_id: str | None = None
    registrant_id: str | None = None
    email: str | None = None
    crm_event_id: str | None = None
    contact_id: str | None = None
    last_message_at: datetime | None = None
    last_priority: int = 0
    last_outcome: str | None = None
    reason: str | None = None
    crm_settled: bool = False
    pending: tuple[RegistrantRef, ...] = ()
    intent: Intent | None = None
    lease_id: str | None = None
    lease_until: datetime | None = None
    quiet_until: datetime | None = None
    metrics_hash: str | None = None
    email_hash: str | None = None
    """A keyed hash of the email retention cleared (``shared.emailhash``): a forget given the address finds the row."""
    fingerprint: str | None = None
    updated_at: datetime | None = None
    etag: str | None = field(default=None, compare=False)

    def busy(self, now: datetime) -> bool:
        """A delivery holds a live lease, or an unanswered ON24 request may still land: nobody else may write."""
        leased = bool(self.lease_id and self.lease_until and self.lease_until > now)
        return leased or bool(self.quiet_until and self.quiet_until > now)

    @property
    def current(self) -> RegistrantRef | None:
        """The confirmed ON24 registrant, when there is one."""
        if self.state == "registered" and self.webinar_id and self.email:
            return RegistrantRef(self.webinar_id, self.email)
        return None

    def known_registrants(self) -> tuple[RegistrantRef, ...]:
        """Every ON24 registrant that may exist for this registration: the confirmed one, then the pending."""
        known: list[RegistrantRef] = []
        for ref in (self.current, *self.pending):
            if ref is not None and not any(ref.same(k) for k in known):
                known.append(ref)
        return tuple(known)

    def to_entity(self) -> dict[str, Any]:
        if len(self.pending) > MAX_PENDING:
            raise ValueError(f"registration {self.registration_id} has more than {MAX_PENDING} pending registrants")
        return {
            "PartitionKey": self.org_id,
            "RowKey": self.registration_id,
            "State": self.state,
            "On24EventId": self.webinar_id or "",
            "EventUserId": self.registrant_id or "",
            "Email": self.email or "",
            "CrmEventId": self.crm_event_id or "",
            "ContactId": self.contact_id or "",
            "LastMessageAt": self.last_message_at or EPOCH,
            "LastPriority": self.last_priority,
            "LastOutcome": self.last_outcome or "",
            "Reason": (self.reason or "")[:1000],
            "CrmSynced": self.crm_settled,
            "Pending": json.dumps([[p.webinar_id, p.email] for p in self.pending], separators=(",", ":"))
            if self.pending
            else "",
            "Intent": self.intent.to_json() if self.intent else "",
            "LeaseId": self.lease_id or "",
            "LeaseUntil": self.lease_until or EPOCH,
            "QuietUntil": self.quiet_until or EPOCH,
            "MetricsHash": self.metrics_hash or "",
            "EmailHash": self.email_hash or "",
            "Fingerprint": self.fingerprint or "",
            "UpdatedAt": self.updated_at or datetime.now(UTC),
        }

    @classmethod
    def from_entity(cls, entity: Any) -> LedgerEntry:
        def text(name: str) -> str | None:
            return codec.text(entity.get(name))

        def when(name: str) -> datetime | None:
            return codec.moment(entity.get(name))

        raw_state = entity.get("State")
        state: LedgerState = raw_state if raw_state in _STATES else "new"
        intent_text = text("Intent")
        priority = entity.get("LastPriority")
        return cls(
            org_id=entity["PartitionKey"],
            registration_id=entity["RowKey"],
            state=state,
            webinar_id=text("On24EventId"),
            registrant_id=text("EventUserId"),
            email=text("Email"),
            crm_event_id=text("CrmEventId"),
            contact_id=text("ContactId"),
            last_message_at=when("LastMessageAt"),
            last_priority=priority if isinstance(priority, int) and not isinstance(priority, bool) else 0,
            last_outcome=text("LastOutcome"),
            reason=text("Reason"),
            crm_settled=bool(entity.get("CrmSynced")),
            pending=pending_column(text("Pending"), entity["PartitionKey"], entity["RowKey"]),
            intent=Intent.from_json(intent_text) if intent_text else None,
            lease_id=text("LeaseId"),
            lease_until=when("LeaseUntil"),
            quiet_until=when("QuietUntil"),
            metrics_hash=text("MetricsHash"),
            email_hash=text("EmailHash"),
            fingerprint=text("Fingerprint"),
            updated_at=when("UpdatedAt"),
            etag=codec.etag_of(entity),
        )


def pending_column(text: str | None, org_id: str, registration_id: str) -> tuple[RegistrantRef, ...]:
    if not text:
        return ()
    try:
        return tuple(RegistrantRef(str(event), str(email)) for event, email in json.loads(text))
    except (ValueError, TypeError):
        # Never silently forget a registrant ON24 may hold: an unreadable column is a fault to fix by hand.
        raise ConfigError(
            f"the ledger row of registration {registration_id} (org {org_id!r}) has an unreadable Pending column"
        ) from None
