"""PullMetrics' run with hand-written fakes that record calls (no I/O): what is written, when it is not written
again, how a pull too large for its share resumes, and that one org's failure stays that org's."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.crm import checkin_id
from shared.dataverse import BatchResult
from shared.emailhash import EmailHasher
from shared.errors import CredentialsRejectedError, NotFoundError
from shared.health.tally import TALLY_BLOB
from shared.metrics import MetricsOptions, MetricsPorts, pull_metrics
from shared.privacy import closes_at
from shared.ratelimit import RateLimiter
from shared.store.credentials import OrgRecord
from shared.store.ledger import LedgerEntry
from shared.store.sync_state import WebinarSyncState
from shared.webinars import AttendancePage, AttendanceRow, WebinarSchedule

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
GRACE = timedelta(days=30)
OPTIONS = MetricsOptions(budget_seconds=240, grace=timedelta(days=30), lookback=timedelta(hours=48),
                         attendee_calls_per_minute=100)  # fmt: skip


class FakeProvider:
    """A webinar with ``rows`` attendees, served in pages of ``page_size``; ``fail`` raised on every call."""

    def __init__(self, rows: list[AttendanceRow], *, page_size: int = 2) -> None:
        self.rows, self.page_size = rows, page_size
        self.fail: Exception | None = None
        self.pages_read: list[int] = []
        self.pages_built: list[int] = []  # pages whose rows the pull built (not skipped by their fingerprint)

    def schedule(self, webinar_id: str) -> WebinarSchedule:
        if self.fail is not None:
            raise self.fail
        return WebinarSchedule(starts_at=NOW - timedelta(hours=3), ends_at=NOW + timedelta(days=30))

    def attendance_pages(
        self, webinar_id: str, *, start: datetime | None, end: datetime | None, first_page: int = 0
    ) -> Iterator[AttendancePage]:
        for index in itertools.count(first_page):
            page = self.rows[index * self.page_size : (index + 1) * self.page_size]
            if not page:
                return
            self.pages_read.append(index)
            yield AttendancePage(index, repr(page), len(page), functools.partial(self._build, index, page))

    def _build(self, index: int, page: list[AttendanceRow]) -> list[AttendanceRow]:
        self.pages_built.append(index)
        return page


class FakeCrm:
    def __init__(self) -> None:
        self.written: list[str] = []
        self.refuse: set[str] = set()  # check-in ids Dataverse refuses
        self.minutes: dict[str, int] = {}  # check-in id -> viewing minutes of the last write that landed
        self.before_write: Callable[[], None] | None = None  # runs once, just before the next write lands

    def upsert_checkins(self, rows: Sequence[tuple[str, dict[str, Any]]], *, max_parallel: int = 4) -> BatchResult:
        hook, self.before_write = self.before_write, None
        if hook is not None:
            hook()
        ok = tuple(cid for cid, _ in rows if cid not in self.refuse)
        self.minutes.update({cid: fields["msevtmgt_viewingdurationinmins"] for cid, fields in rows if cid in ok})
        self.written += ok
        return BatchResult(ok, {cid: "refused" for cid, _ in rows if cid in self.refuse}, 1)


class FakeLedger:
    def __init__(self, entries: list[LedgerEntry]) -> None:
        self.rows = {(e.org_id, e.registration_id): replace(e, updated_at=e.updated_at or NOW) for e in entries}
        self.asked_since: list[datetime | None] = []

    def entries(self, org_id: str, *, webinar_id: str | None = None, columns: Sequence[str] | None = None,
                updated_since: datetime | None = None) -> Iterator[LedgerEntry]:  # fmt: skip
        self.asked_since.append(updated_since)
        return iter([e for e in self.rows.values() if e.org_id == org_id and webinar_id in (None, e.webinar_id)
                     and (updated_since is None or (e.updated_at and e.updated_at >= updated_since))])  # fmt: skip

    def write(self, entry: LedgerEntry, at: datetime) -> None:
        """What a registration's write does: the row, stamped ``UpdatedAt``."""
        self.rows[entry.org_id, entry.registration_id] = replace(entry, updated_at=at)

    def webinars_touched_since(self, org_id: str, since: datetime | None) -> set[str]:
        return {e.webinar_id for e in self.rows.values() if e.org_id == org_id and e.webinar_id}



class FakeIndexes:
    """Blobs with etags, saved only at the version read (as ``MatchIndexes``)."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.saves = 0
        self._etags = itertools.count(1)
        self.before_save: Callable[[], None] | None = None  # runs once, just before the next save

    def load(self, org_id: str, webinar_id: str) -> tuple[bytes | None, str | None]:
        stored = self.blobs.get((org_id, webinar_id))
        return stored if stored is not None else (None, None)

    def save(self, org_id: str, webinar_id: str, data: bytes, etag: str | None) -> str | None:
        hook, self.before_save = self.before_save, None
        if hook is not None:
            hook()
        current = self.blobs.get((org_id, webinar_id))
        if (current[1] if current else None) != etag:
            return None
        self.saves += webinar_id != TALLY_BLOB  # match indexes only
        self.blobs[org_id, webinar_id] = (data, new := str(next(self._etags)))
        return new


class FakeSync:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], WebinarSyncState] = {}
        self._etags = itertools.count(1)

    def get(self, org_id: str, webinar_id: str) -> WebinarSyncState | None:
        return self.rows.get((org_id, webinar_id))

    def list(self, org_id: str) -> list[WebinarSyncState]:
        return [s for (o, _), s in self.rows.items() if o == org_id]

    def save(self, state: WebinarSyncState) -> WebinarSyncState | None:
        current = self.rows.get((state.org_id, state.webinar_id))
        if (current.etag if current else None) != state.etag:
            return None
        stored = replace(state, etag=str(next(self._etags)))
        self.rows[(state.org_id, state.webinar_id)] = stored
        return stored

    def discovery_mark(self, org_id: str) -> datetime | None:
        return None

    def set_discovery_mark(self, org_id: str, scanned_until: datetime) -> None:
        return None


class FakeOrgs:
    def __init__(self, *org_ids: str) -> None:
        self.orgs = {o: OrgRecord(o, f"10{i}", "na", "envelope", "kid") for i, o in enumerate(org_ids)}
        self.health: dict[str, tuple[str, str | None]] = {}

    def list_orgs(self) -> Iterator[OrgRecord]:
        return iter(list(self.orgs.values()))

    def get(self, org_id: str) -> OrgRecord | None:
        return self.orgs.get(org_id)

    def set_status(self, org_id: str, status: Any, reason: str | None) -> bool:
        self.orgs[org_id] = replace(self.orgs[org_id], status=status, status_reason=reason)
        return True

    def set_metrics_health(self, org_id: str, status: Any, reason: str | None, at: datetime) -> bool:
        self.health[org_id] = (status, reason)
        return True


def registered(org_id: str, n: int) -> LedgerEntry:
    return LedgerEntry(org_id=org_id, registration_id=f"00000000-0000-4000-8000-{n:012d}", state="registered",
                       webinar_id="777", registrant_id=f"u{n}", email=f"p{n}@example.com")  # fmt: skip


def attended(n: int, minutes: int = 30) -> AttendanceRow:
    return AttendanceRow(registrant_id=f"u{n}", email=f"p{n}@example.com", registration_id=None,
                         live_minutes=minutes, last_activity=NOW - timedelta(hours=1))  # fmt: skip


class World:
    def __init__(self, *org_ids: str, attendees: int = 5) -> None:
        self.orgs = FakeOrgs(*org_ids)
        self.ledger = FakeLedger([registered(o, n) for o in org_ids for n in range(attendees)])
        self.sync, self.crm, self.indexes = FakeSync(), FakeCrm(), FakeIndexes()
        self.providers = {o: FakeProvider([attended(n) for n in range(attendees)]) for o in org_ids}
        self.ticks = itertools.count()
        self.now = NOW
        self.ports = MetricsPorts(
            orgs=self.orgs, ledger=self.ledger, sync=self.sync,
            provider_for=lambda org, limiter: self.providers[org.org_id], crm_for=lambda org: self.crm,
            indexes=self.indexes, email_hasher=lambda: EmailHasher("local:test#match-index", b"k" * 32),
            clock=lambda: self.now, monotonic=lambda: float(next(self.ticks)),
            limiter_for=lambda org: RateLimiter(100, 60.0),
        )  # fmt: skip

    def run(self, **options: Any) -> Any:
        return pull_metrics(self.ports, replace(OPTIONS, **options))


def test_a_run_writes_each_check_in_once_and_an_unchanged_run_writes_nothing() -> None:
    w = World("org-a")
    report = w.run()
    assert [r.status for r in report.webinars] == ["ok"]
    assert sorted(w.crm.written) == sorted(checkin_id("org-a", reg) for _, reg in w.ledger.rows)
    assert report.total("written") == 5 and w.orgs.health["org-a"] == ("ok", None)
    w.crm.written.clear()
    again = w.run()
    assert w.crm.written == [] and again.total("unchanged") == 5, "unchanged metrics are not written again"


def test_a_pull_out_of_its_share_keeps_a_checkpoint_and_the_next_run_resumes_after_it() -> None:
    w = World("org-a", attendees=6)
    first = w.run(budget_seconds=3)  # the fake clock ticks once per look: the share ends after the first page
    assert [r.status for r in first.webinars] == ["partial"]
    state = w.sync.get("org-a", "777")
    assert state is not None and state.pending_page >= 1 and state.pending_anchor
    second = w.run()
    assert [r.status for r in second.webinars] == ["ok"]
    assert sorted(set(w.crm.written)) == sorted(checkin_id("org-a", reg) for _, reg in w.ledger.rows)
    assert w.sync.get("org-a", "777").pending_end is None  # type: ignore[union-attr]


def test_one_orgs_refused_credentials_stay_that_orgs_and_the_others_are_served() -> None:
    w = World("org-a", "org-b")
    w.providers["org-a"].fail = CredentialsRejectedError("ON24 get_event (event 777): ON24 answered 401")
    report = w.run()
    assert "org-a" in report.orgs_failed and w.orgs.orgs["org-a"].status == "rejected"
    assert w.orgs.health["org-a"][0] == "error" and w.orgs.health["org-b"] == ("ok", None)
    assert set(w.crm.written) == {checkin_id("org-b", reg) for org, reg in w.ledger.rows if org == "org-b"}


def test_a_provider_404_is_re_checked_with_backoff_and_does_not_end_the_webinar() -> None:
    w = World("org-a")
    w.run()  # the webinar's schedule is known: it ends in 30 days, plus grace
    before = w.sync.get("org-a", "777")
    assert before is not None and before.window_end is not None
    w.providers["org-a"].fail = NotFoundError("ON24 get_event (event 777): ON24 answered 404")
    w.now = NOW + timedelta(hours=7)  # the schedule is refreshed every 6 hours
    assert [r.status for r in w.run().webinars] == ["not found"]
    state = w.sync.get("org-a", "777")
    assert state is not None and state.status == "not found" and state.window_end == before.window_end
    assert state.recheck_at == w.now + timedelta(hours=1), "re-checked after an hour, not given up"
    assert closes_at(state, GRACE) == before.window_end + GRACE, "retention waits for the real end, and more"

    w.providers["org-a"].fail = None  # a provider fault: the webinar is back
    w.now += timedelta(minutes=30)
    w.crm.written.clear()
    w.run()
    assert w.crm.written == [], "no provider call before the re-check"
    w.now += timedelta(minutes=31)
    assert [r.status for r in w.run().webinars] == ["ok"]
    state = w.sync.get("org-a", "777")
    assert state is not None and (state.status, state.not_found_count, state.recheck_at) == ("ok", 0, None)


def test_only_many_404s_over_a_month_mark_a_webinar_gone_and_never_before_its_real_end() -> None:
    w = World("org-a")
    w.run()
    real_end = w.sync.get("org-a", "777").window_end  # type: ignore[union-attr]
    w.providers["org-a"].fail = NotFoundError("ON24 get_event (event 777): ON24 answered 404")
    checks, waits = 0, []
    w.now = NOW + timedelta(hours=7)
    while True:
        w.run()
        state = w.sync.get("org-a", "777")
        assert state is not None
        checks = state.not_found_count
        if state.status == "gone":
            break
        assert state.recheck_at is not None
        waits.append(state.recheck_at - w.now)
        w.now = state.recheck_at
    assert checks >= 10 and w.now - (NOW + timedelta(hours=7)) >= timedelta(days=30)
    assert waits[:3] == [timedelta(hours=1), timedelta(hours=2), timedelta(hours=4)] and max(waits) == timedelta(days=1)
    assert state.window_end == max(real_end, w.now), "a webinar that ends later keeps its real end"  # type: ignore[type-var]
    w.now += timedelta(days=1)
    assert w.run().webinars == [], "given up: no run pulls it again"


# ---- the match index: an unchanged page costs its fingerprint; whatever changed is read again -----------------
def test_an_unchanged_rerun_builds_no_page_and_reads_only_the_ledger_rows_written_since() -> None:
    w = World("org-a", attendees=6)
    w.run()
    provider = w.providers["org-a"]
    assert provider.pages_built == [0, 1, 2] and w.ledger.asked_since == [None, None], (
        "the first run reads all rows: the org's count tally (discovery), then the webinar's match index"
    )
    provider.pages_built.clear()
    w.crm.written.clear()
    w.now = NOW + timedelta(minutes=15)
    again = w.run()
    assert provider.pages_built == [], "pages whose fingerprint is unchanged are not built, matched or hashed"
    assert w.crm.written == [] and again.total("unchanged") == 6 and again.total("pulled") == 6
    assert w.indexes.saves == 1, "an index nothing changed in is not saved again"
    assert w.ledger.asked_since[-1] is not None and w.ledger.asked_since[-1] < w.now, "only rows written since"


def test_a_page_whose_attendee_watched_more_is_read_and_only_that_check_in_is_written() -> None:
    w = World("org-a", attendees=6)
    w.run()
    provider = w.providers["org-a"]
    provider.pages_built.clear()
    w.crm.written.clear()
    provider.rows[3] = attended(3, minutes=55)
    w.now = NOW + timedelta(minutes=15)
    report = w.run()
    assert provider.pages_built == [1], "only the page that changed is built"
    assert w.crm.written == [checkin_id("org-a", registered("org-a", 3).registration_id)]
    assert report.total("written") == 1 and report.total("unchanged") == 5


def test_a_registration_changed_in_the_ledger_has_its_page_read_and_its_check_in_rewritten() -> None:
    w = World("org-a", attendees=6)
    w.run()
    provider = w.providers["org-a"]
    provider.pages_built.clear()
    w.crm.written.clear()
    w.now = NOW + timedelta(minutes=15)
    moved = replace(w.ledger.rows["org-a", registered("org-a", 4).registration_id], contact_id="new-contact")
    w.ledger.write(moved, w.now - timedelta(minutes=1))
    w.run()
    assert provider.pages_built == [2] and w.crm.written == [checkin_id("org-a", moved.registration_id)]


def test_a_new_registration_matching_a_walk_in_is_found_on_a_page_that_did_not_change() -> None:
    w = World("org-a", attendees=4)
    provider = w.providers["org-a"]
    provider.rows.append(attended(9))  # on page 2: nobody registered with that email or registrant id yet
    first = w.run()
    assert first.total("unmatched") == 1
    provider.pages_built.clear()
    w.crm.written.clear()
    w.now = NOW + timedelta(minutes=15)
    w.ledger.write(registered("org-a", 9), w.now - timedelta(minutes=1))
    again = w.run()
    assert provider.pages_built == [2], "pages with unmatched attendees are read again when the ledger changed"
    assert w.crm.written == [checkin_id("org-a", registered("org-a", 9).registration_id)]
    assert again.total("unmatched") == 0


def test_a_check_in_dataverse_refused_is_written_again_next_run() -> None:
    w = World("org-a", attendees=4)
    refused = checkin_id("org-a", registered("org-a", 1).registration_id)
    w.crm.refuse = {refused}
    assert w.run().total("failed") == 1
    w.crm.refuse.clear()
    w.crm.written.clear()
    w.providers["org-a"].pages_built.clear()
    w.now = NOW + timedelta(minutes=15)
    w.run()
    assert w.crm.written == [refused] and w.providers["org-a"].pages_built == [0]


def test_a_lost_index_is_rebuilt_from_the_ledger_and_nothing_is_missed() -> None:
    w = World("org-a", attendees=4)
    w.run()
    w.indexes.blobs.clear()
    w.providers["org-a"].rows[0] = attended(0, minutes=99)
    w.crm.written.clear()
    w.now = NOW + timedelta(minutes=15)
    report = w.run()
    assert checkin_id("org-a", registered("org-a", 0).registration_id) in w.crm.written
    assert report.total("pulled") == 4 and w.ledger.asked_since[-1] is None, "rebuilt from every row"


def test_two_pulls_of_one_webinar_at_once_leave_the_check_ins_both_wrote_to_be_written_again() -> None:
    """Pull A (a timer run) reads 40 minutes; before its write lands, pull B (an on-demand pull) reads 50, writes
    them and saves its index. Then A's older write lands: CRM says 40, B's index says "50 written". A's save is
    refused; merged into B's index, the check-ins A wrote lose their hashes, so the next pull writes 50 again."""
    w = World("org-a", attendees=4)
    w.run()
    provider = w.providers["org-a"]
    w.now = NOW + timedelta(minutes=15)
    provider.rows[:] = [attended(n, minutes=40) for n in range(4)]

    def pull_b() -> None:
        provider.rows[:] = [attended(n, minutes=50) for n in range(4)]
        w.run()

    w.crm.before_write = pull_b
    w.run()  # pull A
    assert set(w.crm.minutes.values()) == {40}, "A's older write landed last"
    w.now = NOW + timedelta(minutes=30)
    w.run()
    assert set(w.crm.minutes.values()) == {50}, "the next pull writes the newest metrics again"
    w.crm.written.clear()
    w.now = NOW + timedelta(minutes=45)
    w.run()
    assert w.crm.written == [], "then they are settled"
