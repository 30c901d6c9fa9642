"""Privacy use cases with hand-written fakes: which rows keep personal data and why, when a webinar is due for
retention, the budget and bookmarks of the timer's share, erasure of one person, the purge's sweep and final check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from shared import privacy
from shared.errors import TransientError
from shared.privacy import PrivacyOptions, PrivacyPorts, closes_at, mentions, retention_due, why_kept
from shared.store.credentials import OrgRecord
from shared.store.ledger import Intent, LedgerEntry, RegistrantRef
from shared.store.parked import ParkedMessage
from shared.store.purges import PURGED_PARTS, PurgeRequest
from shared.store.rejected import RejectedMessage
from shared.store.sync_state import WebinarSyncState

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ORG = "org-a"
GRACE = timedelta(days=30)

OPTIONS = PrivacyOptions(grace=timedelta(days=30), rejected_retention=timedelta(days=30))


def entry(reg: str = "r1", **fields: object) -> LedgerEntry:
    base = LedgerEntry(org_id=ORG, registration_id=reg, state="registered", webinar_id="7001", email="p@x.example")
    return replace(base, etag="e1", **fields)  # type: ignore[arg-type]


# ---- why a row keeps its personal data ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, None),
        ({"lease_id": "L", "lease_until": NOW + timedelta(seconds=30)}, "leased"),
        ({"lease_id": "L", "lease_until": NOW - timedelta(seconds=30)}, None),
        ({"quiet_until": NOW + timedelta(seconds=5)}, "quiet"),
        ({"quiet_until": NOW - timedelta(seconds=5)}, None),
        ({"intent": Intent("register", RegistrantRef("7001", "p@x.example"), NOW, 0)}, "intent"),
        ({"pending": (RegistrantRef("7002", "p@x.example"),)}, "pending"),
        ({"pending": (RegistrantRef("7001", "P@X.example"),)}, None),  # the confirmed one itself: nothing to do
        ({"state": "cancelled", "pending": (RegistrantRef("7001", "p@x.example"),)}, "pending"),
        ({"state": "failed"}, None),
    ],
)
def test_a_row_keeps_its_email_only_while_registration_work_on_it_is_unfinished(
    fields: dict[str, object], reason: str | None
) -> None:
    assert why_kept(entry(**fields), NOW) == reason


# ---- when a webinar's rows are due ---------------------------------------------------------------------------------
def state(**fields: object) -> WebinarSyncState:
    return replace(WebinarSyncState(org_id=ORG, webinar_id="7001", status="ok"), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "due"),
    [
        ({"window_end": NOW - timedelta(days=1)}, True),
        ({"window_end": NOW + timedelta(days=1)}, False),
        ({}, False),  # schedule unknown: never
        ({"window_end": NOW - timedelta(days=1), "pending_end": NOW}, False),  # a pull still needs the emails
        ({"window_end": NOW - timedelta(days=1), "retention_cleared_at": NOW - timedelta(hours=2)}, False),
        ({"window_end": NOW - timedelta(days=9), "retention_cleared_at": NOW - timedelta(days=1)}, True),
        ({"window_end": NOW - timedelta(days=1), "retention_cleared_at": NOW, "retention_cursor": "r5"}, True),
        ({"window_end": NOW - timedelta(days=1), "status": "not found"}, False),  # ON24 does not know it: + grace
        ({"window_end": NOW - GRACE - timedelta(days=1), "status": "not found"}, True),
    ],
)
def test_a_webinar_is_due_once_its_window_closed_and_then_daily(fields: dict[str, object], due: bool) -> None:
    assert retention_due(state(**fields), NOW, GRACE) is due


def test_closes_at_is_the_window_end_which_already_holds_the_grace() -> None:
    assert closes_at(state(window_end=NOW), GRACE) == NOW


# ---- fakes -------------------------------------------------------------------------------------------------------
class FakeLedger:
    def __init__(self, rows: list[LedgerEntry]) -> None:
        self.rows = {r.registration_id: r for r in rows}
        self.changed_behind: set[str] = set()  # rows another writer changes between read and write
        self.deleted: list[str] = []
        self.clear_seconds = 0.0  # how long each clearing transaction takes (on the test's clock)
        self.clock: Clock | None = None

    def personal_rows(
        self, org_id: str, webinar_id: str, *, after: str | None = None, updated_since: datetime | None = None
    ) -> Iterator[LedgerEntry]:
        for key in sorted(self.rows):
            row = self.rows[key]
            if row.webinar_id == webinar_id and (row.email or row.pending) and (after is None or key > after):
                yield row

    def clear_personal_data(
        self, entries: Sequence[LedgerEntry], email_hash: Callable[[str | None], str | None] | None = None
    ) -> list[str]:
        if self.clock is not None:
            self.clock.mono += self.clear_seconds
        done = []
        for e in entries:
            if e.registration_id in self.changed_behind:
                continue
            self.rows[e.registration_id] = replace(e, email=None, pending=())
            done.append(e.registration_id)
        return done

    def person_rows(
        self,
        org_id: str,
        *,
        contact_id: str | None,
        email: str | None,
        email_hash: str | None,
        updated_since: datetime | None = None,
    ) -> tuple[list[str], list[str]]:
        wanted = (email or "").casefold()
        by_address = [k for k, r in self.rows.items() if r.email and r.email.casefold() == wanted]
        by_hash = [k for k, r in self.rows.items() if not r.email and email_hash and r.email_hash == email_hash]
        return by_address, by_hash

    def delete_org_rows(self, org_id: str, *, limit: int) -> int:
        keys = sorted(self.rows)[:limit]
        for key in keys:
            del self.rows[key]
        self.deleted.extend(keys)
        return len(keys)

    def delete_parked(self, org_id: str, *, limit: int) -> int:
        return 0


@dataclass
class FakeSync:
    states: list[WebinarSyncState]
    saved: list[WebinarSyncState] = field(default_factory=list)

    def list_all(self) -> list[WebinarSyncState]:
        return list(self.states)

    def save(self, s: WebinarSyncState) -> WebinarSyncState | None:
        self.saved.append(s)
        self.states = [s if (x.org_id, x.webinar_id) == (s.org_id, s.webinar_id) else x for x in self.states]
        return s

    def delete_org_rows(self, org_id: str, *, limit: int) -> int:
        n = min(limit, len(self.states))
        self.states = self.states[n:]
        return n


@dataclass
class FakeRejected:
    messages: list[RejectedMessage] = field(default_factory=list)
    fail_delete: bool = False

    def expire(self, cutoff: datetime, *, limit: int) -> tuple[int, bool]:
        old = [m for m in self.messages if m.rejected_at and m.rejected_at < cutoff][:limit]
        self.messages = [m for m in self.messages if m not in old]
        return len(old), len(old) < limit

    def list_for_org(self, org_id: str) -> Iterator[RejectedMessage]:
        return (m for m in self.messages if m.org_id == org_id)

    def move_legacy(self, *, limit: int) -> tuple[int, bool]:
        return 0, True

    def delete(self, messages: Sequence[RejectedMessage]) -> int:
        if self.fail_delete:
            raise TransientError("storage unavailable")
        self.messages = [m for m in self.messages if m not in messages]
        return len(messages)

    def delete_org_rows(self, org_id: str, *, limit: int) -> int:
        mine = [m for m in self.messages if m.org_id == org_id][:limit]
        self.messages = [m for m in self.messages if m not in mine]
        return len(mine)


@dataclass
class FakeParked:
    messages: list[ParkedMessage] = field(default_factory=list)

    def for_org(self, org_id: str) -> list[ParkedMessage]:
        return [m for m in self.messages if m.org_id == org_id]

    def remove(self, message: ParkedMessage) -> bool:
        self.messages.remove(message)
        return True


@dataclass
class FakePurges:
    requests: dict[str, PurgeRequest] = field(default_factory=dict)

    def get(self, org_id: str) -> PurgeRequest | None:
        return self.requests.get(org_id)

    def open(self, org_id: str, *, actor: str, now: datetime) -> PurgeRequest:
        return self.requests.setdefault(org_id, PurgeRequest(org_id, now, actor))

    def save(self, request: PurgeRequest) -> bool:
        if request.org_id not in self.requests:
            return False
        self.requests[request.org_id] = request
        return True

    def list(self) -> list[PurgeRequest]:
        return list(self.requests.values())

    def close(self, org_id: str) -> None:
        self.requests.pop(org_id, None)


@dataclass
class FakeOrgs:
    deleted: list[str] = field(default_factory=list)

    def delete(self, org_id: str) -> OrgRecord | None:
        self.deleted.append(org_id)
        return None


@dataclass
class FakeTombstones:
    """Tombstones by (org, key): the time of the latest forget."""

    rows: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def record(
        self, org_id: str, at: datetime, *, registration_ids: Iterable[str] = (), email: str | None = None
    ) -> int:
        keys = [f"r|{r}" for r in registration_ids] + ([f"e|{email.casefold()}"] if email else [])
        for key in keys:
            self.rows[(org_id, key)] = max(at, self.rows.get((org_id, key), at))
        return len(keys)

    def expire(self, cutoff: datetime, *, limit: int) -> tuple[int, bool]:
        old = [key for key, at in self.rows.items() if at < cutoff][:limit]
        for key in old:
            del self.rows[key]
        return len(old), len(old) < limit

    def delete_org_rows(self, org_id: str, *, limit: int) -> int:
        mine = [key for key in self.rows if key[0] == org_id][:limit]
        for key in mine:
            del self.rows[key]
        return len(mine)


class FakeIndexes:
    """Match index blobs by (org, webinar)."""

    def __init__(self, *keys: tuple[str, str]) -> None:
        self.blobs = dict.fromkeys(keys, b"index")

    def delete(self, org_id: str, webinar_id: str) -> None:
        self.blobs.pop((org_id, webinar_id), None)

    def delete_org(self, org_id: str, *, limit: int) -> int:
        mine = [key for key in self.blobs if key[0] == org_id][:limit]
        for key in mine:
            del self.blobs[key]
        return len(mine)


@dataclass(frozen=True)
class FakeOutcome:
    status: str
    reason: str | None = None


class Clock:
    """A wall clock and a monotonic clock that only move when a test (or a fake's work) moves them."""

    def __init__(self) -> None:
        self.now, self.mono = NOW, 0.0

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono


def ports(
    ledger: FakeLedger | None = None,
    sync: FakeSync | None = None,
    rejected: FakeRejected | None = None,
    purges: FakePurges | None = None,
    clock: Clock | None = None,
    parked: FakeParked | None = None,
    forgotten: list[str] | None = None,
    fail_after: int | None = None,
    indexes: FakeIndexes | None = None,
    tombstones: FakeTombstones | None = None,
    given: dict[str, str | None] | None = None,
) -> PrivacyPorts:
    led = ledger or FakeLedger([])
    calls = forgotten if forgotten is not None else []
    clk = clock or Clock()

    def forget(
        org_id: str, registration_id: str, *, requested_at: datetime, reason: str, email: str | None = None
    ) -> FakeOutcome:
        if fail_after is not None and len(calls) >= fail_after:
            raise TransientError("ON24 unavailable")
        calls.append(registration_id)
        if given is not None:
            given[registration_id] = email
        row = led.rows.get(registration_id) or LedgerEntry(org_id=org_id, registration_id=registration_id)
        led.rows[registration_id] = replace(row, email=None, state="forgotten")
        return FakeOutcome("forgotten")

    return PrivacyPorts(
        ledger=led,
        sync=sync or FakeSync([]),
        rejected=rejected or FakeRejected(),
        parked=parked or FakeParked(),
        purges=purges or FakePurges(),
        orgs=FakeOrgs(),
        forget=forget,
        indexes=indexes or FakeIndexes(),
        tombstones=tombstones if tombstones is not None else FakeTombstones(),
        email_hash=lambda email: f"h:{email.casefold()}" if email else None,
        clock=clk.wall,
        monotonic=clk.monotonic,
        sleep=lambda _: None,
    )


# ---- retention ----------------------------------------------------------------------------------------------------
def closed_webinar(**fields: object) -> WebinarSyncState:
    return state(window_end=NOW - timedelta(days=1), **fields)


def test_retention_clears_closed_webinars_only_and_marks_them_cleared() -> None:
    rows = [entry("r1"), entry("r2", webinar_id="7002"), entry("r3", lease_id="L", lease_until=NOW + timedelta(1))]
    ledger = FakeLedger(rows)
    sync = FakeSync([closed_webinar(), state(webinar_id="7002", window_end=NOW + timedelta(days=3))])
    indexes = FakeIndexes((ORG, "7001"), (ORG, "7002"))
    report = privacy.housekeeping(ports(ledger, sync, indexes=indexes), OPTIONS, budget_seconds=30)
    assert ledger.rows["r1"].email is None and ledger.rows["r1"].registrant_id == rows[0].registrant_id
    assert list(indexes.blobs) == [(ORG, "7002")], "the closed webinar's match index goes, the open one's stays"
    assert ledger.rows["r2"].email == "p@x.example", "the open webinar keeps its emails"
    assert ledger.rows["r3"].email == "p@x.example", "a leased row is left for a later pass"
    assert report.rows_cleared == 1 and report.rows_kept == {"leased": 1}
    assert sync.saved[-1].retention_cleared_at is None, "a pass that left a row behind does not mark the webinar"
    ledger.rows["r3"] = replace(ledger.rows["r3"], lease_id=None, lease_until=None)  # the delivery finished
    privacy.housekeeping(ports(ledger, sync), OPTIONS, budget_seconds=30)
    assert ledger.rows["r3"].email is None and sync.saved[-1].retention_cleared_at == NOW


def test_a_row_changed_between_read_and_write_is_not_cleared_and_the_webinar_is_looked_at_again() -> None:
    ledger = FakeLedger([entry("r1"), entry("r2")])
    ledger.changed_behind = {"r2"}
    sync = FakeSync([closed_webinar()])
    report = privacy.housekeeping(ports(ledger, sync), OPTIONS, budget_seconds=30)
    assert report.rows_kept == {"changed": 1} and sync.saved[-1].retention_cleared_at is None
    assert retention_due(sync.states[0], NOW, GRACE)


def test_retention_out_of_time_keeps_a_cursor_and_the_next_run_resumes_after_it() -> None:
    ledger = FakeLedger([entry(f"r{i:03}") for i in range(250)])
    sync = FakeSync([closed_webinar()])
    clock = Clock()
    ledger.clock, ledger.clear_seconds = clock, 6.0  # the first transaction of 100 rows uses up the budget
    report = privacy.housekeeping(ports(ledger, sync, clock=clock), OPTIONS, budget_seconds=5)
    assert report.out_of_time and report.rows_cleared == 100
    assert sync.states[0].retention_cursor == "r099" and sync.states[0].retention_cleared_at is None
    cleared_first = {k for k, r in ledger.rows.items() if r.email is None}
    ledger.clock = None
    privacy.housekeeping(ports(ledger, sync, clock=Clock()), OPTIONS, budget_seconds=30)
    assert all(r.email is None for r in ledger.rows.values()) and len(cleared_first) == 100
    assert sync.states[0].retention_cursor is None
    assert sync.states[0].retention_cleared_at is None, "a pass that spanned runs is confirmed by a whole one"
    privacy.housekeeping(ports(ledger, sync, clock=Clock()), OPTIONS, budget_seconds=30)
    assert sync.states[0].retention_cleared_at == NOW


def test_rejected_bodies_expire_after_the_retention_period() -> None:
    def message(key: str, age: timedelta) -> RejectedMessage:
        return RejectedMessage(key, key, ORG, None, "bad", b"{}", 1, NOW - age)

    rejected = FakeRejected([message("old", timedelta(days=31)), message("young", timedelta(days=29))])
    report = privacy.housekeeping(ports(rejected=rejected), OPTIONS, budget_seconds=30)
    assert [m.key for m in rejected.messages] == ["young"] and report.rejected_expired == 1


def test_one_failing_step_does_not_stop_the_others() -> None:
    class Broken(FakeRejected):
        def expire(self, cutoff: datetime, *, limit: int) -> tuple[int, bool]:
            raise TransientError("Table Storage unreachable")

    ledger = FakeLedger([entry("r1")])
    report = privacy.housekeeping(
        ports(ledger, FakeSync([closed_webinar()]), rejected=Broken()), OPTIONS, budget_seconds=30
    )
    assert report.errors and "rejected bodies" in report.errors[0] and ledger.rows["r1"].email is None


# ---- erasure of one person -----------------------------------------------------------------------------------------
def test_forget_person_forgets_every_row_with_the_email_in_any_case_and_is_idempotent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = FakeLedger([entry("r1", email="Ada@X.example"), entry("r2", email="ada@x.example"), entry("r3")])
    body = b'{"attendee": {"email": "ADA@x.example"}, "orgId": "org-a"}'
    rejected = FakeRejected([RejectedMessage("k1", "m1", ORG, None, "bad", body, 1, NOW)])
    forgotten: list[str] = []
    with caplog.at_level(logging.INFO):
        report = privacy.forget_person(ORG, "ada@X.EXAMPLE", ports(ledger, rejected=rejected, forgotten=forgotten),
                                       actor="admin")  # fmt: skip
    assert sorted(forgotten) == ["r1", "r2"] and ledger.rows["r3"].email == "p@x.example"
    assert report.rejected_deleted == 1 and rejected.messages == []
    audit = [r for r in caplog.records if getattr(r, "audit", None) == "person.forgotten"]
    assert len(audit) == 1 and audit[0].registrations == 2 and audit[0].actor == "admin"
    assert "ada@" not in caplog.text.lower()
    again = privacy.forget_person(ORG, "ada@x.example", ports(ledger, rejected=rejected), actor="admin")
    assert again.registrations == [] and again.rejected_deleted == 0
    assert report.view(ORG)["registrations"] == [
        {"registrationId": "r1", "outcome": "forgotten"},
        {"registrationId": "r2", "outcome": "forgotten"},
    ]


def test_an_erasure_stopped_by_a_fault_says_so_and_a_repeat_finishes_it(caplog: pytest.LogCaptureFixture) -> None:
    ledger = FakeLedger([entry("r1"), entry("r2"), entry("r3")])
    with caplog.at_level(logging.INFO), pytest.raises(privacy.ErasureIncompleteError, match="after 1 of 3"):
        privacy.forget_person(ORG, "p@x.example", ports(ledger, fail_after=1), actor="admin")
    partial = [r for r in caplog.records if getattr(r, "audit", None) == "person.forgotten"]
    assert partial and partial[0].complete is False and partial[0].levelno == logging.WARNING
    report = privacy.forget_person(ORG, "p@x.example", ports(ledger), actor="admin")
    assert len(report.registrations) == 2 and all(r.email is None for r in ledger.rows.values())


def test_a_registration_known_only_by_its_parked_message_is_forgotten_and_the_message_goes() -> None:
    def parked_message(key: str, at: datetime) -> ParkedMessage:
        command = f'{{"action": "register", "attendee": {{"email": "Ada@X.example"}}, "registrationId": "{key}"}}'
        return ParkedMessage(ORG, key, command, at, at, 0)

    older = parked_message("p-old", NOW - timedelta(hours=2))
    newer = parked_message("p-new", NOW + timedelta(minutes=3))
    other = replace(parked_message("p-other", NOW), command='{"attendee": {"email": "bob@x.example"}}')
    parked = FakeParked([older, newer, other])
    forgotten: list[str] = []
    report = privacy.forget_person(ORG, "ada@x.example", ports(parked=parked, forgotten=forgotten), actor="admin")
    assert sorted(forgotten) == ["p-new", "p-old"] and report.parked_deleted == 1
    assert parked.messages == [newer, other], "a message newer than the forget decides after it, and stays"


@pytest.mark.parametrize(
    ("body", "found"),
    [
        (b'{"attendee":{"email":"ada@x.example"}}', True),
        (b'{"attendee":{"email":"ada\\u0040x.example"}}', True),  # escaped in JSON: found in the decoded string
        (b"not json but ADA@X.EXAMPLE inside", True),
        (b'{"attendee":{"email":"bob@x.example"}}', False),
        (b'{"attendee":{"email":"joann.ada@x.example"}}', False),  # another person whose address ends alike
        (b'{"attendee":{"email":"bada@x.example"}}', False),
        (b'{"attendee":{"email":"ada@x.example.org"}}', False),
        (b'{"emails":"ada@x.example, bob@x.example"}', True),
        (b"<p>ada@x.example.</p>", True),
        (b"\xff\xfe broken bytes", False),
    ],
)
def test_a_kept_body_mentions_the_email(body: bytes, found: bool) -> None:
    assert mentions(body, "ada@x.example") is found


# ---- purge ---------------------------------------------------------------------------------------------------------
def test_a_small_purge_deletes_everything_at_once_and_the_timer_closes_it_after_the_settle_time() -> None:
    ledger = FakeLedger([entry(f"r{i}") for i in range(5)])
    purges = FakePurges()
    clock = Clock()
    outcome = privacy.purge_org(ORG, ports(ledger, purges=purges, clock=clock), actor="admin")
    assert outcome.finished and not outcome.closed and ledger.rows == {}
    assert outcome.view()["status"] == "deleted" and ORG in purges.requests
    ledger.rows["late"] = entry("late")  # a delivery that was under way writes after the sweep
    privacy.housekeeping(ports(ledger, purges=purges, clock=clock), OPTIONS, budget_seconds=30)
    assert ORG in purges.requests, "too early for the final check"
    clock.now = NOW + privacy.PURGE_SETTLE
    report = privacy.housekeeping(ports(ledger, purges=purges, clock=clock), OPTIONS, budget_seconds=30)
    assert ledger.rows == {} and report.purges_closed == [ORG] and purges.requests == {}


def test_a_big_purge_stops_at_its_row_budget_and_the_timer_finishes_it() -> None:
    ledger = FakeLedger([entry(f"r{i:04}") for i in range(2500)])
    purges = FakePurges()
    outcome = privacy.purge_org(ORG, ports(ledger, purges=purges), actor="admin")
    assert not outcome.finished and outcome.view()["status"] == "running"
    assert outcome.request.deleted["ledger"] == privacy.INLINE_PURGE_ROWS == 2500 - len(ledger.rows)
    clock = Clock()
    clock.now = NOW + privacy.PURGE_SETTLE
    privacy.housekeeping(ports(ledger, purges=purges, clock=clock), OPTIONS, budget_seconds=30)
    assert ledger.rows == {} and purges.requests == {}


def test_a_repeated_purge_request_keeps_its_first_time() -> None:
    purges = FakePurges()
    first = privacy.purge_org(ORG, ports(purges=purges), actor="admin")
    clock = Clock()
    clock.now = NOW + timedelta(minutes=3)
    second = privacy.purge_org(ORG, ports(purges=purges, clock=clock), actor="someone else")
    assert second.request.requested_at == first.request.requested_at == NOW
    assert set(second.request.deleted) == set(PURGED_PARTS)


def test_a_purge_deletes_the_orgs_match_indexes_and_not_another_orgs() -> None:
    indexes = FakeIndexes((ORG, "7001"), (ORG, "7002"), ("other-org", "7001"))
    outcome = privacy.purge_org(ORG, ports(indexes=indexes), actor="admin")
    assert outcome.finished and outcome.request.deleted["matchIndexes"] == 2
    assert list(indexes.blobs) == [("other-org", "7001")]


# ---- forget tombstones (issue 18) --------------------------------------------------------------------------------
def test_a_forget_that_finds_nothing_still_leaves_a_tombstone_by_address_and_ids_for_what_it_finds() -> None:
    stones = FakeTombstones()
    report = privacy.forget_person(ORG, "Jorg.Muller@firma.example", ports(tombstones=stones), actor="officer")
    assert report.registrations == [] and stones.rows == {(ORG, "e|jorg.muller@firma.example"): NOW}
    ledger = FakeLedger([entry("r1", email="ivan.petrov@firma.example")])
    privacy.forget_person(ORG, "ivan.petrov@firma.example", ports(ledger, tombstones=stones), actor="officer")
    assert (ORG, "r|r1") in stones.rows and (ORG, "e|ivan.petrov@firma.example") in stones.rows


def test_tombstones_expire_after_their_retention_or_the_rejected_bodies_whichever_is_longer() -> None:
    from shared.store.tombstones import TOMBSTONE_RETENTION

    stones = FakeTombstones({(ORG, "r|old"): NOW - TOMBSTONE_RETENTION - timedelta(days=1),
                             (ORG, "r|young"): NOW - TOMBSTONE_RETENTION + timedelta(days=1)})  # fmt: skip
    report = privacy.housekeeping(ports(tombstones=stones), OPTIONS, budget_seconds=30)
    assert report.tombstones_expired == 1 and list(stones.rows) == [(ORG, "r|young")]
    stones.rows[(ORG, "r|mid")] = NOW - TOMBSTONE_RETENTION - timedelta(days=5)
    long_kept = replace(OPTIONS, rejected_retention=TOMBSTONE_RETENTION + timedelta(days=10))
    privacy.housekeeping(ports(tombstones=stones), long_kept, budget_seconds=30)
    assert sorted(stones.rows) == [(ORG, "r|mid"), (ORG, "r|young")], "a kept rejected body may still be replayed"


def test_a_forget_finds_a_row_retention_cleared_by_its_hash_and_hands_the_address_on() -> None:
    ledger = FakeLedger([entry("r1", email=None, email_hash="h:jorg.muller@firma.example"), entry("r2")])
    ledger.rows["r2"] = replace(ledger.rows["r2"], email="jorg.muller@firma.example")
    given: dict[str, str | None] = {}
    report = privacy.forget_person(ORG, "Jorg.Muller@firma.example", ports(ledger, given=given), actor="officer")
    assert sorted(r for r, _ in report.registrations) == ["r1", "r2"]
    assert given == {"r1": "Jorg.Muller@firma.example", "r2": None}, "only the cleared row needs the address"
