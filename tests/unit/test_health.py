"""The health summary's pure parts (counting, the 24-hour window, the token, next due) and the pass PullMetrics runs,
with hand-written fakes that record what the pass reads and writes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.health import (
    CHANGE_OVERLAP,
    COUNT_COLUMNS,
    HealthPorts,
    ParkedCounts,
    count_registrations,
    count_rejected,
    last_day,
    outcome_of,
    parked_counts,
    provider_contact,
    refresh_health,
    status_view,
    token_view,
)
from shared.metrics.schedule import is_due, next_due
from shared.store.credentials import OrgRecord
from shared.store.health import OrgHealth, RegistrationCounts
from shared.store.ledger import LedgerEntry
from shared.store.parked import ParkedMessage
from shared.store.rejected import RejectedSummaryRow
from shared.store.sync_state import WebinarSyncState

NOW = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)


def row(reg: str, outcome: str | None, at: datetime | None, **changes: object) -> LedgerEntry:
    return LedgerEntry(org_id="org", registration_id=reg, last_outcome=outcome, updated_at=at, **changes)  # type: ignore[arg-type]


def org(**changes: object) -> OrgRecord:
    return replace(OrgRecord("org", "1001", "na", "sealed", "kv:1", updated_at=NOW - timedelta(days=3)), **changes)  # type: ignore[arg-type]


# ---- counting ------------------------------------------------------------------------------------------------------
def test_outcomes_are_categories_and_a_held_row_is_in_progress() -> None:
    assert outcome_of(row("a", "registered", NOW)) == "registered"
    assert outcome_of(row("a", "skipped: integration disabled: no ON24 credentials for org", NOW)) == "skipped"
    assert outcome_of(row("a", "failed", NOW, lease_id="L")) == "in_progress", "a delivery holds it"
    assert outcome_of(row("a", None, NOW, state="new")) == "in_progress", "claimed, nothing recorded yet"
    assert outcome_of(row("a", "Dropped: org removed", NOW)) == "dropped", "a newer release's outcome is kept"


def test_count_registrations_totals_hours_failures_and_last_on24_success() -> None:
    rows = [
        row("r1", "registered", NOW - timedelta(minutes=5), state="registered"),
        row("r2", "updated", NOW - timedelta(hours=2), state="registered"),
        row("r3", "cancelled", NOW - timedelta(hours=30), state="cancelled"),
        row("r4", "registered", NOW - timedelta(minutes=1), state="registered", lease_id="L"),  # being changed
        *[row(f"f{i}", "failed", NOW - timedelta(minutes=10 * i), state="failed", reason=f"why {i}") for i in range(7)],
    ]
    counts = count_registrations(rows, NOW)
    assert counts.totals == {"registered": 1, "updated": 1, "cancelled": 1, "in_progress": 1, "failed": 7}
    assert counts.at_provider == 3
    assert counts.hours["2026-11-24T12:00Z"] == {"registered": 1, "failed": 4}
    assert counts.hours["2026-11-24T10:00Z"] == {"updated": 1}
    assert "2026-11-23T06:00Z" not in counts.hours, "older than 25 hours: not kept"
    assert [f.registration_id for f in counts.recent_failures] == ["f0", "f1", "f2", "f3", "f4"]
    assert counts.recent_failures[0].reason == "why 0"
    assert counts.last_provider_success == NOW - timedelta(minutes=5), "the held row's old outcome is not a success now"


def test_last_day_sums_the_hours_of_the_last_24_hours_at_reading_time() -> None:
    hours = {"2026-11-23T12:00Z": {"failed": 1}, "2026-11-23T11:00Z": {"failed": 5}, "2026-11-24T12:00Z": {"failed": 2}}
    assert last_day(hours, NOW) == {"failed": 3}
    assert last_day(hours, NOW + timedelta(hours=1)) == {"failed": 2}, "buckets age out without a recount"
    assert last_day({"2026-11-24T09:00Z": 4, "garbage": 9}, NOW) == {"count": 4}


def test_count_rejected_per_org_leaves_out_messages_that_name_none() -> None:
    rows = [
        RejectedSummaryRow("k1", "org", "bad email", NOW - timedelta(hours=1), None),
        RejectedSummaryRow("k2", "org", "bad guid", NOW - timedelta(minutes=1), NOW),
        RejectedSummaryRow("k3", "org", "old", NOW - timedelta(days=3), None),
        RejectedSummaryRow("k4", None, "not JSON", NOW, None),
    ]
    counts = count_rejected(rows, NOW)
    assert set(counts) == {"org"}
    assert counts["org"].total == 3 and counts["org"].waiting == 2
    assert counts["org"].latest_reason == "bad guid"
    assert sum(counts["org"].hours.values()) == 2


class FakeParked:
    def __init__(self, *parked_at: datetime | None) -> None:
        self.asked: list[str] = []
        self.rows = [ParkedMessage("org", f"r{i}", "{}", NOW, NOW, 0, parked_at=at) for i, at in enumerate(parked_at)]

    def for_org(self, org_id: str) -> list[ParkedMessage]:
        self.asked.append(org_id)
        return self.rows


def test_parked_counts_now_and_parked_in_the_last_24_hours() -> None:
    store = FakeParked(NOW - timedelta(hours=30), NOW - timedelta(hours=2), NOW, None)
    assert parked_counts(store, "org", NOW) == ParkedCounts(total=4, last_24h=2)
    assert store.asked == ["org"]


# ---- the token ------------------------------------------------------------------------------------------------------
def test_token_states_by_idle_days() -> None:
    def state(days: float, **changes: object) -> str:
        return str(token_view(org(**changes), NOW - timedelta(days=days), NOW)["state"])

    assert [state(d) for d in (0, 44.9, 45, 59.9, 60, 400)] == ["ok", "ok", "warning", "warning", "expired", "expired"]
    assert state(1, status="rejected") == "rejected"
    assert token_view(org(), None, NOW)["state"] == "unknown"


def test_on24_contact_counts_answered_pulls_only() -> None:
    ok = WebinarSyncState(
        "org", "1", last_success_at=NOW - timedelta(days=2), last_attempt_at=NOW, status="in progress"
    )
    assert provider_contact(ok) == NOW
    failed = replace(ok, status="error")
    assert provider_contact(failed) == NOW - timedelta(days=2), "an error answer is not a successful use"


# ---- next due ---------------------------------------------------------------------------------------------------
moments = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC))


@given(
    now=moments,
    live=st.one_of(st.none(), moments),
    success=st.one_of(st.none(), moments),
    window=st.one_of(st.none(), moments),
    pending=st.booleans(),
    probe=st.floats(min_value=0, max_value=1),
)
def test_next_due_is_the_first_moment_is_due_holds(
    now: datetime,
    live: datetime | None,
    success: datetime | None,
    window: datetime | None,
    pending: bool,
    probe: float,
) -> None:
    state = WebinarSyncState(
        "org", "1", live_start=live, last_success_at=success, window_end=window, pending_end=now if pending else None
    )
    due = next_due(state, now)
    if due is None:
        later = now + timedelta(days=400 * probe)
        assert not is_due(state, later)
        return
    assert due >= now and is_due(state, due)
    before = now + (due - now) * probe * 0.999
    assert before == due or not is_due(state, before), "nothing earlier is due"


# ---- the status answer ---------------------------------------------------------------------------------------------
def test_status_view_lists_webinars_the_admin_named_and_warns_about_what_needs_an_admin() -> None:
    failing = WebinarSyncState("org", "12", status="error", last_error="webinar 12: ON24 answered 500")
    counts = RegistrationCounts(NOW, totals={"failed": 2}, hours={"2026-11-24T12:00Z": {"failed": 2}})
    view = status_view(
        "org",
        org(webinar_ids=("9", "12")),
        {"status": "active", "metrics": {"status": "ok"}},
        [failing],
        OrgHealth("org", NOW, counts),
        ParkedCounts(total=4, last_24h=4),
        NOW,
    )
    assert [w["webinarId"] for w in view["webinars"]] == ["9", "12"], "numeric order"
    assert view["webinars"][0]["status"] == "never_pulled" and view["webinars"][0]["nextDue"] == NOW.isoformat()
    assert view["registrations"]["total"]["parked"] == 4 and view["registrations"]["last24h"]["failed"] == 2
    assert view["warnings"] == [
        {"code": "webinar_pull_failed", "message": "webinar 12: ON24 answered 500"},
        {"code": "registrations_failed", "message": "2 registrations failed in the last 24 hours"},
        {"code": "registrations_parked", "message": "4 registrations are parked until ON24 answers again"},
    ]


def test_a_webinar_the_provider_does_not_know_shows_its_checks_and_warns() -> None:
    lost = WebinarSyncState("org", "12", status="not found", not_found_count=2, last_success_at=NOW,
                            not_found_since=NOW - timedelta(hours=1), recheck_at=NOW + timedelta(hours=2))  # fmt: skip
    gone = WebinarSyncState("org", "13", status="gone", not_found_count=10, not_found_since=NOW - timedelta(days=31))
    view = status_view("org", org(webinar_ids=("12", "13")), {"status": "active", "metrics": {"status": "ok"}},
                       [lost, gone], OrgHealth("org", NOW, None), ParkedCounts(total=0, last_24h=0), NOW)  # fmt: skip
    first, second = view["webinars"]
    assert first["notFound"] == {"checks": 2, "since": (NOW - timedelta(hours=1)).isoformat(),
                                 "nextCheck": (NOW + timedelta(hours=2)).isoformat()}  # fmt: skip
    assert first["nextDue"] == (NOW + timedelta(hours=2)).isoformat() and second["nextDue"] is None
    assert [w["message"] for w in view["warnings"]] == [
        f"webinar 12: ON24 answered that it has no such webinar 2 times since "
        f"{(NOW - timedelta(hours=1)).isoformat()}; checked again at {(NOW + timedelta(hours=2)).isoformat()}",
        f"webinar 13: ON24 answered that it has no such webinar 10 times since "
        f"{(NOW - timedelta(days=31)).isoformat()}; no longer pulled",
    ]
    assert {w["code"] for w in view["warnings"]} == {"webinar_not_found"}
    assert [w["status"] for w in view["webinars"]] == ["not_found", "gone"]


def test_status_view_lists_webinars_with_registrations_and_never_answers_0_for_an_unknown_count() -> None:
    legacy = RegistrationCounts(NOW, totals={"registered": 3, "in progress": 1}, webinars=("7002", "7001"))
    view = status_view("org", org(webinar_ids=()), {"status": "active"}, [], OrgHealth("org", NOW, legacy),
                       ParkedCounts(), NOW)  # fmt: skip
    shown = [(w["webinarId"], w["status"]) for w in view["webinars"]]
    assert shown == [("7001", "never_pulled"), ("7002", "never_pulled")]
    assert view["registrations"]["total"]["in_progress"] == 1 and "in progress" not in view["registrations"]["total"]
    unknown = status_view("org", org(), {"status": "active"}, [], None, ParkedCounts(), NOW)["registrations"]
    assert unknown["total"]["registered"] is None and unknown["inOn24"] is None, "not counted yet, not 0"
    assert unknown["total"]["parked"] == 0, "parked is counted live"


# ---- the pass ------------------------------------------------------------------------------------------------------
class FakeOrgs:
    def __init__(self, *orgs: str) -> None:
        self.orgs = [org(org_id=o) for o in orgs]

    def list_orgs(self) -> Iterator[OrgRecord]:
        yield from self.orgs


class FakeLedger:
    def __init__(self) -> None:
        self.rows: dict[str, list[LedgerEntry]] = {}
        self.changed: set[str] = set()
        self.reads: list[str] = []
        self.asked: list[tuple[str, datetime]] = []

    def changed_since(self, org_id: str, since: datetime) -> bool:
        self.asked.append((org_id, since))
        return org_id in self.changed

    def entries(
        self,
        org_id: str,
        *,
        webinar_id: str | None = None,
        columns: Sequence[str] | None = None,
        updated_since: datetime | None = None,
    ) -> Iterator[LedgerEntry]:
        assert columns == COUNT_COLUMNS, "a narrow read"
        self.reads.append(org_id)
        rows = self.rows.get(org_id, [])
        yield from (r for r in rows if updated_since is None or r.updated_at is None or r.updated_at >= updated_since)


class FakeRejected:
    def __init__(self) -> None:
        self.rows: list[RejectedSummaryRow] = []
        self.changed = False
        self.reads = 0

    def changed_since(self, since: datetime) -> bool:
        return self.changed

    def summary_rows(self) -> Iterator[RejectedSummaryRow]:
        self.reads += 1
        yield from self.rows


class FakeRows:
    def __init__(self) -> None:
        self.rows: dict[str, OrgHealth] = {}
        self.saves: list[str] = []
        self.mark: datetime | None = None
        self.refuse: set[str] = set()

    def get(self, org_id: str) -> OrgHealth | None:
        return self.rows.get(org_id)

    def save(self, health: OrgHealth) -> OrgHealth | None:
        if health.org_id in self.refuse:
            return None
        self.saves.append(health.org_id)
        self.rows[health.org_id] = replace(health, etag="e")
        return self.rows[health.org_id]

    def rejected_mark(self) -> datetime | None:
        return self.mark

    def set_rejected_mark(self, counted_at: datetime) -> None:
        self.mark = counted_at


class Tallies:
    """Blobs in memory (the tally's store), etag-guarded like Blob Storage."""

    def __init__(self) -> None:
        self.blobs: dict[str, tuple[bytes, str]] = {}

    def load(self, org_id: str, name: str) -> tuple[bytes | None, str | None]:
        data, etag = self.blobs.get(f"{org_id}/{name}", (None, None))
        return data, etag

    def save(self, org_id: str, name: str, data: bytes, etag: str | None) -> str | None:
        current = self.blobs.get(f"{org_id}/{name}")
        if (current[1] if current else None) != etag:
            return None
        new = str(int(etag or "0") + 1)
        self.blobs[f"{org_id}/{name}"] = (data, new)
        return new


class FakeSync:
    def __init__(self) -> None:
        self.states: dict[str, list[WebinarSyncState]] = {}

    def list(self, org_id: str) -> list[WebinarSyncState]:
        return self.states.get(org_id, [])


def ports(
    orgs: FakeOrgs,
    ledger: FakeLedger,
    rejected: FakeRejected,
    rows: FakeRows,
    now: datetime,
    sync: FakeSync | None = None,
) -> HealthPorts:
    return HealthPorts(
        orgs=orgs,
        ledger=ledger,
        rejected=rejected,
        rows=rows,
        sync=sync or FakeSync(),
        tallies=Tallies(),
        clock=lambda: now,
    )


def test_the_pass_counts_again_only_orgs_whose_ledger_changed() -> None:
    orgs, ledger, rejected, rows = FakeOrgs("a", "b"), FakeLedger(), FakeRejected(), FakeRows()
    ledger.rows = {"a": [row("r1", "registered", NOW, state="registered")], "b": []}
    first = refresh_health(ports(orgs, ledger, rejected, rows, NOW))
    assert first.counted == ["a", "b"] and rows.saves == ["a", "b"], "no summary yet: count everything"
    assert rejected.reads == 1 and rows.mark == NOW

    ledger.reads.clear()
    rows.saves.clear()
    later = NOW + timedelta(minutes=15)
    quiet = refresh_health(ports(orgs, ledger, rejected, rows, later))
    assert quiet.unchanged == ["a", "b"] and ledger.reads == [] and rows.saves == [], (
        "nothing changed: no read, no write"
    )
    assert rejected.reads == 1, "the rejected messages are not read again either"
    assert ledger.asked[-1] == ("b", NOW - CHANGE_OVERLAP), "asked since the last count, with an overlap"

    ledger.changed = {"b"}
    ledger.rows["b"] = [row("r2", "failed", later, state="failed", reason="no email")]
    refresh_health(ports(orgs, ledger, rejected, rows, later))
    assert ledger.reads == ["b"] and rows.saves == ["b"]
    assert rows.rows["b"].registrations is not None and rows.rows["b"].registrations.totals == {"failed": 1}


def test_new_rejected_messages_reach_their_org_and_an_unconfigured_one() -> None:
    orgs, ledger, rejected, rows = FakeOrgs("a"), FakeLedger(), FakeRejected(), FakeRows()
    refresh_health(ports(orgs, ledger, rejected, rows, NOW))
    rejected.changed = True
    rejected.rows = [
        RejectedSummaryRow("k1", "a", "bad", NOW, None),
        RejectedSummaryRow("k2", "gone", "bad", NOW, None),
    ]
    rows.saves.clear()
    report = refresh_health(ports(orgs, ledger, rejected, rows, NOW + timedelta(minutes=15)))
    assert report.rejected_counted and sorted(rows.saves) == ["a", "gone"]
    assert rows.rows["a"].rejected.total == 1 and rows.rows["gone"].registrations is None


def test_a_lost_race_leaves_the_org_and_the_rejected_mark_for_the_next_pass() -> None:
    orgs, ledger, rejected, rows = FakeOrgs("a", "b"), FakeLedger(), FakeRejected(), FakeRows()
    rows.refuse = {"a"}
    report = refresh_health(ports(orgs, ledger, rejected, rows, NOW))
    assert list(report.failed) == ["a"] and rows.saves == ["b"], "the other org is still served"
    assert rows.mark is None, "the rejected messages are counted again next pass"


def test_the_pass_names_orgs_whose_token_needs_an_admin() -> None:
    orgs, ledger, rejected, rows, sync = (
        FakeOrgs("idle", "pulled", "refused"),
        FakeLedger(),
        FakeRejected(),
        FakeRows(),
        FakeSync(),
    )
    long_ago = NOW - timedelta(days=50)
    orgs.orgs = [
        org(org_id="idle", updated_at=long_ago),
        org(org_id="pulled", updated_at=long_ago),
        org(org_id="refused", status="rejected"),
    ]
    sync.states["pulled"] = [WebinarSyncState("pulled", "1", last_success_at=NOW - timedelta(days=1), status="ok")]
    report = refresh_health(ports(orgs, ledger, rejected, rows, NOW, sync))
    assert {org_id: token["state"] for org_id, token in report.tokens.items()} == {
        "idle": "warning",
        "refused": "rejected",
    }
    assert report.tokens["idle"]["idleDays"] == 50
