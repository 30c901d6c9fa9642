"""The registration state machine with hand-written fakes that record calls (no I/O)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.crm import Contact, CrmEvent, CrmRegistration
from shared.errors import InvalidDataError, NotFoundError, TransientError
from shared.messages import RegistrationCommand
from shared.registration import RegistrationPorts, handle_registration
from shared.store.credentials import OrgRecord
from shared.store.ledger import LedgerEntry
from shared.webinars import Person

ORG = "org-1"
REG = "3f2a9c1e-7b4d-4e8a-a1c2-5d6e7f809a1b"
EVENT = "b7e1c2d3-4f5a-4b6c-8d9e-0a1b2c3d4e5f"
CONTACT = "c4d5e6f7-0819-4a2b-9c3d-4e5f60718293"
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


class FakeLedger:
    """Etag semantics like Table Storage: a write succeeds only at the version it was read at."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], LedgerEntry] = {}
        self._etags = itertools.count(1)
        self.writes = 0

    def get(self, org_id: str, registration_id: str) -> LedgerEntry | None:
        return self.rows.get((org_id, registration_id))

    def write(self, entry: LedgerEntry) -> LedgerEntry | None:
        key = (entry.org_id, entry.registration_id)
        current = self.rows.get(key)
        if (current.etag if current else None) != entry.etag:
            return None
        self.writes += 1
        stored = replace(entry, etag=str(next(self._etags)))
        self.rows[key] = stored
        return stored


class FakeOn24:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.fail: Exception | None = None
        self.missing_on_update = False
        self.last_unanswered_at: float | None = None

        self.on_call: Any = None  # called before each call is answered (advance a clock, switch the org off)

    def _record(self, op: str, event_id: int | str, email: str) -> None:
        self.calls.append((op, str(event_id), email))
        if self.on_call is not None:
            self.on_call(op)
        if self.fail is not None:
            raise self.fail

    def register(self, webinar_id: str, person: Person, *, registration_id: str) -> str:
        self._record("create", webinar_id, person.email)
        return f"u-{person.email}"

    def update(self, webinar_id: str, person: Person, *, registration_id: str) -> str:
        self._record("update", webinar_id, person.email)
        if self.missing_on_update:
            raise NotFoundError("The email provided was not found.")
        return f"u-{person.email}"

    def remove(self, webinar_id: str, email: str) -> None:
        self._record("delete", webinar_id, email)

    def forget(self, webinar_id: str, email: str) -> None:
        self._record("forget", webinar_id, email)


class FakeCrm:
    def __init__(self, *, webinar_id: str | None = "777", email: str | None = "ada@example.com") -> None:
        self.webinar_id = webinar_id
        self.email = email
        self.last_name = "Lovelace"
        self.canceled = False
        self.synced: list[dict[str, Any]] = []

    def get_registration(self, registration_id: str, columns: Sequence[str] = ()) -> CrmRegistration:
        return CrmRegistration(id=registration_id, event_id=EVENT, contact_id=CONTACT, is_canceled=self.canceled)

    def get_event(self, event_id: str) -> CrmEvent:
        return CrmEvent(id=event_id, webinar_id=self.webinar_id)

    def get_contact(self, contact_id: str, columns: Sequence[str] = ()) -> Contact:
        return Contact(id=contact_id, email=self.email, first_name="Ada", last_name=self.last_name)

    def update_registration_sync(self, registration_id: str, **fields: Any) -> None:
        self.synced.append(fields)


class FakeOrgs:
    def __init__(self, configured: bool = True) -> None:
        self.configured = configured

    def get(self, org_id: str) -> OrgRecord | None:
        return OrgRecord(org_id, "1001", "na", "envelope", "kid") if self.configured else None


class World:
    def __init__(self, **crm: Any) -> None:
        self.ledger, self.on24, self.crm, self.orgs = FakeLedger(), FakeOn24(), FakeCrm(**crm), FakeOrgs()
        self.sleeps: list[float] = []
        self.now = T0
        self.ports = RegistrationPorts(
            credentials=self.orgs,
            ledger=self.ledger,
            provider_for=lambda org: self.on24,
            crm_for=lambda org: self.crm,
            clock=lambda: self.now,
            sleep=self.sleeps.append,
            lease_wait_seconds=0.0,
        )

    def handle(self, action: str = "register", *, at: datetime = T0, source: str = "dataverse", **extra: Any) -> Any:
        cmd = RegistrationCommand(
            org_id=ORG, action=action, registration_id=REG, source=source, occurred_at=at, **extra
        )  # type: ignore[arg-type]
        return handle_registration(cmd, self.ports, received_at=at)

    @property
    def entry(self) -> LedgerEntry:
        return self.ledger.rows[(ORG, REG)]


def test_register_then_duplicates_make_one_on24_call() -> None:
    w = World()
    assert w.handle().status == "registered"
    assert w.on24.calls == [("create", "777", "ada@example.com")]
    assert w.entry.state == "registered" and w.entry.registrant_id == "u-ada@example.com" and w.entry.lease_id is None
    assert w.crm.synced[-1] == {
        "registrant_id": "u-ada@example.com",
        "synced": True,
        "publishing_state": 100000001,
    }
    for _ in range(4):
        assert w.handle().status == "duplicate"
    assert len(w.on24.calls) == 1


def test_canonical_message_with_everything_needs_no_crm_read() -> None:
    w = World()
    w.crm.get_registration = None  # type: ignore[assignment,method-assign]  # would fail if called
    outcome = w.handle(
        source="canonical",
        crm_event_id=EVENT,
        webinar_id="555",
        person=Person(email="g@example.com", first_name="G", last_name="H"),
    )
    assert outcome.status == "registered" and w.on24.calls == [("create", "555", "g@example.com")]


def test_cancel_soft_deletes_and_a_stale_register_changes_nothing() -> None:
    w = World()
    w.handle(at=T0)
    assert w.handle("cancel", at=T0 + timedelta(minutes=5)).status == "cancelled"
    assert w.on24.calls[-1] == ("delete", "777", "ada@example.com")
    assert w.handle("register", at=T0 + timedelta(minutes=1)).status == "stale"
    assert w.entry.state == "cancelled" and len(w.on24.calls) == 2


def test_a_newer_register_after_cancel_registers_again() -> None:
    w = World()
    w.handle(at=T0)
    w.handle("cancel", at=T0 + timedelta(minutes=1))
    assert w.handle("register", at=T0 + timedelta(minutes=2)).status == "registered"
    assert w.on24.calls[-1][0] == "create"


def test_cancel_before_any_register_blocks_an_older_register() -> None:
    w = World()
    w.crm.canceled = True
    assert w.handle("cancel", at=T0 + timedelta(minutes=1)).status == "cancelled"
    assert w.on24.calls == []
    assert w.handle("register", at=T0).status == "stale"


def test_crm_row_cancelled_turns_an_update_into_a_cancel() -> None:
    w = World()
    w.handle(at=T0)
    w.crm.canceled = True
    assert w.handle("update", at=T0 + timedelta(minutes=1)).status == "cancelled"
    assert w.on24.calls[-1][0] == "delete"


def test_update_patches_and_recreates_if_on24_lost_the_registrant() -> None:
    w = World()
    w.handle(at=T0)
    w.crm.last_name = "King"
    assert w.handle("update", at=T0 + timedelta(minutes=1)).status == "updated"
    assert w.on24.calls[-1][0] == "update"
    w.on24.missing_on_update = True
    w.crm.last_name = "Byron"
    w.handle("update", at=T0 + timedelta(minutes=2))
    assert [c[0] for c in w.on24.calls[-2:]] == ["update", "create"]


def test_a_redelivered_update_makes_no_second_on24_call() -> None:
    w = World()
    w.handle(at=T0)
    w.crm.last_name = "King"
    assert w.handle("update", at=T0 + timedelta(minutes=1)).status == "updated"
    assert w.handle("update", at=T0 + timedelta(minutes=1)).status == "duplicate"
    assert [c[0] for c in w.on24.calls] == ["create", "update"]


def test_an_update_that_changes_nothing_ON24_holds_makes_no_call_and_moves_the_rank() -> None:
    w = World()
    w.handle(at=T0)
    outcome = w.handle("update", at=T0 + timedelta(minutes=1))
    assert outcome.status == "duplicate" and [c[0] for c in w.on24.calls] == ["create"]
    assert w.entry.last_message_at == T0 + timedelta(minutes=1), "an older change arriving later is stale"


def test_changed_email_moves_the_registrant() -> None:
    w = World()
    w.handle(at=T0)
    w.crm.email = "ada@new.example"
    w.handle("update", at=T0 + timedelta(minutes=1))
    assert w.on24.calls[-2:] == [("delete", "777", "ada@example.com"), ("create", "777", "ada@new.example")]
    assert w.entry.email == "ada@new.example"


def test_disabled_org_is_skipped_without_on24_calls() -> None:
    w = World()
    w.orgs.configured = False
    outcome = w.handle()
    assert outcome.status == "skipped" and "disabled" in (outcome.reason or "")
    assert w.on24.calls == [] and "skipped" in (w.entry.last_outcome or "")


def test_event_without_webinar_id_is_skipped() -> None:
    w = World(webinar_id=None)
    assert w.handle().status == "skipped" and w.on24.calls == []


def test_contact_without_email_fails_permanently_and_flags_crm() -> None:
    w = World(email=None)
    outcome = w.handle()
    assert outcome.status == "failed" and "no email" in (outcome.reason or "")
    assert w.entry.state == "failed" and w.crm.synced[-1]["publishing_state"] == 100000004


def test_on24_refusal_is_recorded_and_the_message_completes() -> None:
    w = World()
    w.on24.fail = InvalidDataError("Invalid value for country")
    outcome = w.handle()
    assert outcome.status == "failed" and "Invalid value for country" in (outcome.reason or "")
    assert w.entry.state == "failed" and w.entry.lease_id is None


def test_transient_fault_raises_and_drops_the_lease() -> None:
    w = World()
    w.on24.fail = TransientError("ON24 answered 503")
    with pytest.raises(TransientError):
        w.handle()
    assert w.entry.lease_id is None and w.entry.state == "new"
    w.on24.fail = None
    assert w.handle().status == "registered"


def test_a_live_lease_of_another_delivery_means_retry_later() -> None:
    w = World()
    w.ledger.write(
        LedgerEntry(org_id=ORG, registration_id=REG, lease_id="other", lease_until=T0 + timedelta(seconds=60))
    )
    with pytest.raises(TransientError, match="another delivery"):
        w.handle()
    assert w.on24.calls == []


def test_an_expired_lease_is_taken_over() -> None:
    w = World()
    w.ledger.write(
        LedgerEntry(org_id=ORG, registration_id=REG, lease_id="crashed", lease_until=T0 - timedelta(seconds=1))
    )
    assert w.handle().status == "registered"


# ---- the lease, the quiet period and the off switch ------------------------------------------------------------
def test_the_lease_is_extended_before_a_call_it_might_not_outlast() -> None:
    w = World()
    w.handle(at=T0)
    w.crm.email = "ada@new.example"  # a move: delete the old registrant, then create the new one

    def slow_first_call(op: str) -> None:
        if op == "delete":
            w.now += timedelta(seconds=30)  # 60 s of the 90 s lease left: less than one call (55) + linger (10) + 5

    w.on24.on_call = slow_first_call
    writes = w.ledger.writes
    assert w.handle("update", at=T0 + timedelta(minutes=1)).status == "updated"
    assert [c[0] for c in w.on24.calls[-2:]] == ["delete", "create"]
    assert w.ledger.writes == writes + 3, "claim, extension, release"


def test_a_lease_taken_over_during_a_call_stops_the_next_call() -> None:
    w = World()
    w.handle(at=T0)
    w.crm.email = "ada@new.example"

    def taken_over(op: str) -> None:
        if op == "delete":
            w.now += timedelta(seconds=120)  # the lease expired and another delivery took the row
            w.ledger.write(replace(w.entry, lease_id="other", lease_until=w.now + timedelta(seconds=90)))

    w.on24.on_call = taken_over
    with pytest.raises(TransientError, match="taken over"):
        w.handle("update", at=T0 + timedelta(minutes=1))
    assert [c[0] for c in w.on24.calls] == ["create", "delete"], "no create after the lease was lost"
    assert w.entry.lease_id == "other", "the other delivery's lease is untouched"


def test_an_unanswered_call_keeps_the_row_quiet_until_it_can_no_longer_land() -> None:
    w = World()
    w.on24.fail = TransientError("ON24 create_registrant: timed out (ReadTimeout)")
    w.on24.last_unanswered_at = time.monotonic()
    with pytest.raises(TransientError):
        w.handle()
    assert w.entry.quiet_until is not None and w.entry.quiet_until > T0 and w.entry.lease_id is None
    w.on24.fail = None
    with pytest.raises(TransientError, match="another delivery"):
        w.handle("cancel", at=T0 + timedelta(minutes=1))
    w.now = w.entry.quiet_until + timedelta(seconds=1)
    assert w.handle("cancel", at=T0 + timedelta(minutes=1)).status == "cancelled"
    assert w.on24.calls[-1] == ("delete", "777", "ada@example.com"), "the possibly created registrant is removed"


def test_an_unexpected_error_during_the_call_releases_the_lease() -> None:
    w = World()
    w.on24.fail = RuntimeError("a bug")
    with pytest.raises(RuntimeError):
        w.handle()
    assert w.entry.lease_id is None and w.entry.pending, "released, and the target is still known"
    w.on24.fail = None
    assert w.handle().status == "registered"


def test_switching_the_org_off_between_two_calls_stops_the_second() -> None:
    w = World()
    w.handle(at=T0)
    w.crm.email = "ada@new.example"
    w.on24.on_call = lambda op: setattr(w.orgs, "configured", False) if op == "delete" else None
    outcome = w.handle("update", at=T0 + timedelta(minutes=1))
    assert outcome.status == "skipped" and "disabled" in (outcome.reason or "")
    assert [c[0] for c in w.on24.calls] == ["create", "delete"]
    assert w.entry.lease_id is None and w.entry.state == "new"
    assert [p.email for p in w.entry.pending] == ["ada@new.example"]


def test_a_lease_shorter_than_one_call_is_refused() -> None:
    w = World()
    with pytest.raises(ValueError, match="lease_seconds"):
        replace(w.ports, lease_seconds=60.0)
