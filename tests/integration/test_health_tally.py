"""The org's registration counts against Azurite (Table and Blob): after the first count, a count reads only the
ledger rows written since (never the partition), stays exact across register -> cancel -> forget, and two passes
counting at once never count a row twice.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared.app import App, get_app
from shared.health.counting import COUNT_COLUMNS, count_registrations
from shared.health.current import current_health
from shared.health.tally import TALLY_BLOB, tallied_counts
from shared.store.ledger import LedgerEntry
from shared.store.tables import TRANSACTION_SIZE

ORG = "org-tally"
HOUR_AGO = datetime.now(UTC) - timedelta(hours=1)
PEOPLE = ("jörg.müller", "åsa.ødegård", "иван.петров")


@pytest.fixture
def app(base_env: dict[str, str]) -> App:
    return get_app()


class CountingLedger:
    """The app's ledger on Azurite, counting the queries made (each one a scan of the org's partition) and the rows
    they return (what a pass costs in Table reads)."""

    def __init__(self, app: App) -> None:
        self.ledger = app.ledger
        self.queries = 0
        self.rows_read = 0

    def changed_since(self, org_id: str, since: datetime) -> bool:
        return self.ledger.changed_since(org_id, since)

    def entries(
        self,
        org_id: str,
        *,
        webinar_id: str | None = None,
        columns: Sequence[str] | None = None,
        updated_since: datetime | None = None,
    ) -> Iterator[LedgerEntry]:
        self.queries += 1
        found = self.ledger.entries(org_id, webinar_id=webinar_id, columns=columns, updated_since=updated_since)
        return self._counted(found)

    def _counted(self, found: Iterator[LedgerEntry]) -> Iterator[LedgerEntry]:
        for entry in found:
            self.rows_read += 1
            yield entry


def seed(env: dict[str, str], count: int) -> None:
    """``count`` registered rows written an hour ago (batch transactions, as a busy org's history)."""
    service = TableServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    table = service.create_table_if_not_exists(env["STATE_TABLE_PREFIX"] + "ledger")
    rows = [
        LedgerEntry(
            org_id=ORG, registration_id=f"reg-{i:05}", state="registered", last_outcome="registered",
            webinar_id=str(7001 + i % 3), registrant_id=f"eu-{i}", email=f"{PEOPLE[i % 3]}.{i}@example.de",
            updated_at=HOUR_AGO,
        ).to_entity()
        for i in range(count)
    ]  # fmt: skip
    for start in range(0, count, TRANSACTION_SIZE):
        table.submit_transaction([("upsert", row) for row in rows[start : start + TRANSACTION_SIZE]])


def write(app: App, reg: str, **changes: Any) -> None:
    current = app.ledger.get(ORG, reg)
    assert current is not None
    assert app.ledger.write(replace(current, **changes)) is not None


def recount(app: App, now: datetime) -> Any:
    return count_registrations(app.ledger.entries(ORG, columns=COUNT_COLUMNS), now)


def test_after_the_first_count_a_count_reads_only_the_rows_written_since(
    app: App, base_env: dict[str, str]
) -> None:
    seed(base_env, 400)
    ledger = CountingLedger(app)
    first = current_health(ORG, ledger, app.health, app.match_indexes, datetime.now(UTC))
    assert first is not None and first.registrations is not None
    assert first.registrations.totals == {"registered": 400} and ledger.rows_read == 400, "the first count: all"

    write(app, "reg-00007", state="cancelled", last_outcome="cancelled")
    ledger.rows_read = 0
    second = current_health(ORG, ledger, app.health, app.match_indexes, datetime.now(UTC) + timedelta(seconds=1))
    assert second is not None and second.registrations is not None
    assert ledger.rows_read == 1, "one row changed: one row read, not the 400 of the partition"
    assert second.registrations.totals == {"registered": 399, "cancelled": 1}
    assert second.registrations.at_provider == 399


def test_counts_stay_exact_across_register_cancel_and_forget(app: App, base_env: dict[str, str]) -> None:
    seed(base_env, 30)
    ledger = CountingLedger(app)
    steps: list[tuple[str, dict[str, Any]]] = [
        ("reg-00001", {"state": "cancelled", "last_outcome": "cancelled"}),
        ("reg-00001", {"state": "registered", "last_outcome": "registered"}),  # registered again
        ("reg-00002", {"lease_id": "L1", "lease_until": datetime.now(UTC) + timedelta(minutes=1)}),
        ("reg-00002", {"lease_id": None, "lease_until": None, "state": "failed", "last_outcome": "failed: ON24 500",
                       "reason": "ON24 answered 500"}),
        ("reg-00003", {"state": "cancelled", "last_outcome": "cancelled"}),
        ("reg-00003", {"state": "forgotten", "last_outcome": "forgotten", "email": None}),
        ("reg-00003", {"state": "forgotten", "last_outcome": "forgotten"}),  # a redelivered forget: no new outcome
    ]
    for step, (reg, changes) in enumerate(steps):
        write(app, reg, **changes)
        now = datetime.now(UTC) + timedelta(seconds=step + 1)
        read = tallied_counts(ORG, ledger, app.match_indexes, now)
        assert read.counts == recount(app, now), f"step {step}: the tally equals a full recount"
        assert not read.full or step == 0
    final = tallied_counts(ORG, ledger, app.match_indexes, datetime.now(UTC) + timedelta(seconds=30)).counts
    assert final.totals == {"registered": 28, "failed": 1, "forgotten": 1}
    assert final.at_provider == 28 and [f.registration_id for f in final.recent_failures] == ["reg-00002"]


class StagedStore:
    """The app's blob store, holding each pass after it loaded the tally until both have loaded it."""

    def __init__(self, app: App, parties: int) -> None:
        self.store = app.match_indexes
        self.loaded = threading.Barrier(parties, timeout=30)
        self.saves: list[str | None] = []
        self.lock = threading.Lock()
        self.first_saved = threading.Event()
        self.order: list[str] = []

    def load(self, org_id: str, name: str) -> tuple[bytes | None, str | None]:
        loaded = self.store.load(org_id, name)
        self.loaded.wait()
        return loaded

    def save(self, org_id: str, name: str, data: bytes, etag: str | None) -> str | None:
        with self.lock:
            result = self.store.save(org_id, name, data, etag)
            self.saves.append(result)
            return result


def test_two_passes_counting_at_once_never_count_a_change_twice(app: App, base_env: dict[str, str]) -> None:
    seed(base_env, 50)
    tallied_counts(ORG, app.ledger, app.match_indexes, datetime.now(UTC))  # the first (full) count
    write(app, "reg-00010", state="cancelled", last_outcome="cancelled")
    write(app, "reg-00011", state="cancelled", last_outcome="cancelled")
    staged = StagedStore(app, 2)
    results: list[Any] = []
    now = datetime.now(UTC) + timedelta(seconds=1)
    threads = [
        threading.Thread(target=lambda: results.append(tallied_counts(ORG, app.ledger, staged, now)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 2 and sorted(s is not None for s in staged.saves) == [False, True], (
        "both loaded the same version: one save wins, the other is refused"
    )
    assert all(r.counts.totals == {"registered": 48, "cancelled": 2} for r in results), "each answers right"
    write(app, "reg-00012", state="cancelled", last_outcome="cancelled")
    later = datetime.now(UTC) + timedelta(seconds=2)
    after = tallied_counts(ORG, app.ledger, app.match_indexes, later)
    assert after.counts.totals == {"registered": 47, "cancelled": 3}, "no change counted twice, none lost"
    assert after.counts == recount(app, later)
    data, _ = app.match_indexes.load(ORG, TALLY_BLOB)
    assert data is not None and b"@" not in zlib.decompress(data), "the tally holds no email"


def test_a_pass_parses_the_stored_tally_only_when_another_process_wrote_it(
    app: App, base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 500,000 registrations parsing the tally blob takes seconds: the timer run's health pass and the status
    call after it (same process) parse it once between them, and a tally another process saved is still read."""
    from shared.health import tally as tally_module

    parses: list[int] = []
    parse = tally_module.Tally.from_bytes.__func__  # type: ignore[attr-defined]

    def counted(cls: type[tally_module.Tally], data: bytes | None) -> tally_module.Tally:
        if data:
            parses.append(len(data))
        return parse(cls, data)  # type: ignore[no-any-return]

    monkeypatch.setattr(tally_module.Tally, "from_bytes", classmethod(counted))
    seed(base_env, 60)
    ledger = CountingLedger(app)
    now = datetime.now(UTC)
    assert tallied_counts(ORG, ledger, app.match_indexes, now).full

    write(app, "reg-00001", state="cancelled", last_outcome="cancelled")  # Åsa Ødegård cancels
    health_pass = tallied_counts(ORG, ledger, app.match_indexes, now + timedelta(seconds=1))
    status_call = tallied_counts(ORG, ledger, app.match_indexes, now + timedelta(seconds=2))
    assert parses == [], "the tally this process saved is not parsed again by its next passes"
    assert health_pass.saved and health_pass.counts.totals == {"registered": 59, "cancelled": 1}
    assert status_call.counts == recount(app, now + timedelta(seconds=2))

    # Another process counted Иван Петров's failure and saved the tally: its bytes are new, so they are parsed.
    data, etag = app.match_indexes.load(ORG, TALLY_BLOB)
    theirs = tally_module.Tally.from_bytes(data)
    write(app, "reg-00002", state="failed", last_outcome="failed: ON24 500", reason="ON24 answered 500")
    theirs.apply(app.ledger.entries(ORG, columns=COUNT_COLUMNS, updated_since=theirs.mark))
    assert app.match_indexes.save(ORG, TALLY_BLOB, theirs.to_bytes(), etag) is not None
    parses.clear()
    after = tallied_counts(ORG, ledger, app.match_indexes, now + timedelta(seconds=3))
    assert len(parses) == 1, "a tally saved elsewhere is parsed, never answered from this process' copy"
    assert after.counts == recount(app, now + timedelta(seconds=3))
    assert after.counts.totals == {"registered": 58, "cancelled": 1, "failed": 1}
