"""Long operations and the status route's on-demand count, as rules over plain rows (the Table Storage stores run
for real in the e2e tests: ``test_pull_webinar``, ``test_privacy``, ``test_webinar_status``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.health.current import current_health
from shared.operations import OperationPorts, current, start, view
from shared.store.health import OrgHealth, RegistrationCounts
from shared.store.ledger import LedgerEntry
from shared.store.operations import Operation
from shared.store.purges import PurgeRequest
from shared.store.sync_state import WebinarSyncState
from tests.unit.test_health import Tallies  # the tally store in memory, etag-guarded

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
ORG = "7d1f4c2a-9b3e-4f5a-8c6d-2e1f0a9b8c7d"


class Rows:
    """Operation rows with etags, as the store keeps them; ``steal`` makes the next ``finish`` lose its race."""

    def __init__(self) -> None:
        self.rows: dict[str, Operation] = {}
        self.steal: Operation | None = None

    def create(self, operation: Operation) -> Operation:
        self.rows[operation.operation_id] = replace(operation, etag="1")
        return self.rows[operation.operation_id]

    def get(self, org_id: str, operation_id: str) -> Operation | None:
        return self.rows.get(operation_id)

    def finish(self, operation: Operation) -> Operation | None:
        if self.steal is not None:
            self.rows[operation.operation_id], self.steal = self.steal, None
            return None
        self.rows[operation.operation_id] = replace(operation, etag=str(int(operation.etag or "0") + 1))
        return self.rows[operation.operation_id]


class Sync:
    def __init__(self, state: WebinarSyncState | None = None) -> None:
        self.state = state

    def get(self, org_id: str, webinar_id: str) -> WebinarSyncState | None:
        return self.state


class Purges:
    def __init__(self, request: PurgeRequest | None) -> None:
        self.request = request

    def get(self, org_id: str) -> PurgeRequest | None:
        return self.request


def ports(sync: Sync, purges: Purges | None = None, rows: Rows | None = None) -> OperationPorts:
    return OperationPorts(rows or Rows(), sync, purges or Purges(None), clock=lambda: NOW)


def partial(at: datetime) -> WebinarSyncState:
    return WebinarSyncState(ORG, "4471234", last_attempt_at=at, pending_end=at, status="in progress")


def test_a_pull_runs_until_a_later_attempt_finished_with_nothing_pending() -> None:
    sync = Sync(partial(NOW - timedelta(seconds=5)))
    p = ports(sync)
    operation = start(p, ORG, "pull", webinar_id="4471234")
    assert current(p, ORG, operation.operation_id).status == "running"
    sync.state = replace(sync.state, pending_end=None, status="ok")  # type: ignore[arg-type]
    assert current(p, ORG, operation.operation_id).status == "running", "the same attempt, not a later one"
    sync.state = replace(sync.state, last_attempt_at=NOW + timedelta(minutes=15), counts={"written": 240})  # type: ignore[arg-type]
    done = current(p, ORG, operation.operation_id)
    assert done.status == "succeeded" and done.result == {
        "webinarId": "4471234",
        "counts": {"pulled": 0, "matched": 0, "written": 240, "unchanged": 0, "unmatched": 0, "failed": 0},
    }
    assert view(done)["finishedAt"] == NOW.isoformat()


def test_a_pull_that_ended_in_error_or_not_found_is_failed_with_the_error_object() -> None:
    for status, code in (("error", "pull_failed"), ("not found", "webinar_not_found")):
        sync = Sync(partial(NOW - timedelta(minutes=1)))
        p = ports(sync)
        operation = start(p, ORG, "pull", webinar_id="4471234")
        reason = "webinar 4471234: Dataverse refused POST $batch (HTTP 403)"
        sync.state = replace(sync.state, status=status, last_attempt_at=NOW, last_error=reason)  # type: ignore[arg-type]
        failed = current(p, ORG, operation.operation_id)
        assert failed.status == "failed" and failed.error is not None and failed.error["code"] == code
        assert failed.error["message"].startswith(reason), "the pages left do not keep a poller waiting forever"


def test_the_first_reader_records_the_outcome_and_a_second_reader_answers_what_was_recorded() -> None:
    rows = Rows()
    sync = Sync(partial(NOW - timedelta(minutes=1)))
    p = ports(sync, rows=rows)
    operation = start(p, ORG, "pull", webinar_id="4471234")
    sync.state = replace(sync.state, status="ok", pending_end=None, last_attempt_at=NOW)  # type: ignore[arg-type]
    other = replace(operation, status="succeeded", finished_at=NOW - timedelta(seconds=1), result={"by": "other"})
    rows.steal = other
    assert current(p, ORG, operation.operation_id).result == {"by": "other"}, "the row's outcome wins"
    sync.state = replace(sync.state, status="error", last_attempt_at=NOW + timedelta(hours=1))  # type: ignore[arg-type]
    assert current(p, ORG, operation.operation_id).result == {"by": "other"}, "a finished operation never changes"


def test_a_purge_is_done_when_nothing_is_left_or_its_request_is_gone() -> None:
    request = PurgeRequest(ORG, NOW, "ops@contoso.com", deleted={"ledger": 1000})
    purges = Purges(request)
    p = ports(Sync(), purges)
    operation = start(p, ORG, "purge")
    assert current(p, ORG, operation.operation_id).status == "running"
    purges.request = replace(request, deleted={"ledger": 2500}, deleted_at=NOW)
    done = current(p, ORG, operation.operation_id)
    assert done.status == "succeeded" and done.result["deleted"]["ledger"] == 2500
    gone = start(p, ORG, "purge")
    purges.request = None
    assert current(p, ORG, gone.operation_id).status == "succeeded"


# ---- the status route's count ------------------------------------------------------------------------------------
class Ledger:
    def __init__(self, rows: list[LedgerEntry], changed: bool) -> None:
        self.rows, self.changed, self.reads = rows, changed, 0

    def changed_since(self, org_id: str, since: datetime) -> bool:
        return self.changed

    def entries(
        self,
        org_id: str,
        *,
        webinar_id: str | None = None,
        columns: Sequence[str] | None = None,
        updated_since: datetime | None = None,
    ) -> Iterator[LedgerEntry]:
        self.reads += 1
        yield from (r for r in self.rows if updated_since is None or (r.updated_at or NOW) >= updated_since)


class Summary:
    def __init__(self, health: OrgHealth | None, *, lose: bool = False) -> None:
        self.health, self.lose, self.saved = health, lose, 0

    def get(self, org_id: str) -> OrgHealth | None:
        return self.health

    def save(self, health: OrgHealth) -> OrgHealth | None:
        self.saved += 1
        return None if self.lose else health


def registered(reg: str, webinar: str) -> LedgerEntry:
    return LedgerEntry(ORG, reg, state="registered", last_outcome="registered", updated_at=NOW, webinar_id=webinar)


def test_the_count_is_made_when_the_ledger_changed_and_kept_when_it_did_not() -> None:
    hour_ago = NOW - timedelta(hours=1)
    old = OrgHealth(ORG, hour_ago, RegistrationCounts(hour_ago, totals={"registered": 1}))
    ledger = Ledger([registered("r1", "7001"), registered("r2", "7002")], changed=True)
    fresh = current_health(ORG, ledger, Summary(old), Tallies(), NOW)
    assert fresh is not None and fresh.registrations is not None
    assert fresh.registrations.totals == {"registered": 2} and fresh.registrations.webinars == ("7001", "7002")
    quiet = Ledger([], changed=False)
    assert current_health(ORG, quiet, Summary(old), Tallies(), NOW) == old and quiet.reads == 0, "one question, no read"


def test_a_lost_save_still_answers_this_count_and_an_unknown_org_writes_nothing() -> None:
    lost = Summary(None, lose=True)
    fresh = current_health(ORG, Ledger([registered("r1", "7001")], changed=True), lost, Tallies(), NOW)
    assert fresh is not None and fresh.registrations is not None and fresh.registrations.totals == {"registered": 1}
    nobody = Summary(None)
    current_health("no-such-org", Ledger([], changed=False), nobody, Tallies(), NOW)
    assert nobody.saved == 0, "probing an org id creates no row"
