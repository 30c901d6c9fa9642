"""A timer run's one read of an org's recent ledger rows (``shared.metrics.recent``) against Azurite: every webinar's
index refresh gets exactly its rows written since its mark from one query, a row written after the read is left to
the next refresh (the mark it gets says so), and a burst too big to keep falls back to one query per webinar."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from shared.app import App, get_app
from shared.metrics.pull import MATCH_COLUMNS
from shared.metrics.recent import RecentRows
from shared.store.ledger import LedgerEntry
from tests.integration.test_health_tally import CountingLedger  # counts queries and rows read

ORG = "org-recent"


@pytest.fixture
def app(base_env: dict[str, str]) -> App:
    return get_app()


def register(app: App, registration: str, webinar: str, email: str, user: int) -> None:
    entry = LedgerEntry(org_id=ORG, registration_id=registration, state="registered", webinar_id=webinar,
                        registrant_id=str(user), email=email, last_outcome="registered")  # fmt: skip
    assert app.ledger.write(entry) is not None


def emails(rows: Iterable[LedgerEntry]) -> set[str]:
    return {entry.email or "" for entry in rows}


def test_one_query_serves_every_webinar_and_a_row_written_after_it_is_left_to_the_next_refresh(app: App) -> None:
    since = datetime.now(UTC) - timedelta(minutes=15)
    register(app, "reg-a1", "880101", "jörg.müller@beispiel.de", 1)
    register(app, "reg-a2", "880101", "åsa.ødegård@eksempel.no", 2)
    register(app, "reg-b1", "880102", "иван.петров@пример.рф", 3)
    counting = CountingLedger(app)
    recent = RecentRows(counting, ORG, lambda: datetime.now(UTC))

    first, as_of = recent.written_since("880101", since, MATCH_COLUMNS)
    assert emails(first) == {"jörg.müller@beispiel.de", "åsa.ødegård@eksempel.no"}
    register(app, "reg-b2", "880102", "mikko.häkkinen@esimerkki.fi", 4)  # after the run's read
    second, as_of_b = recent.written_since("880102", since, MATCH_COLUMNS)
    assert emails(second) == {"иван.петров@пример.рф"} and as_of_b == as_of
    assert counting.queries == 1, "both webinars were served by one query of the partition"
    later = app.ledger.entries(ORG, webinar_id="880102", columns=MATCH_COLUMNS, updated_since=as_of)
    assert "mikko.häkkinen@esimerkki.fi" in emails(later), "a refresh marked as_of reads the late row next time"
    none, _ = recent.written_since("880103", since, MATCH_COLUMNS)
    assert emails(none) == set() and counting.queries == 1

    older, _ = recent.written_since("880102", since - timedelta(hours=1), MATCH_COLUMNS)  # an older mark
    assert counting.queries == 2, "a mark older than the read's reads again"
    assert emails(older) == {"иван.петров@пример.рф", "mikko.häkkinen@esimerkki.fi"}


def test_a_burst_too_big_to_keep_falls_back_to_one_query_per_webinar_and_loses_no_row(app: App) -> None:
    since = datetime.now(UTC) - timedelta(minutes=15)
    for n in range(5):
        register(app, f"reg-burst-{n}", "880201" if n < 3 else "880202", f"teilnehmer.{n}@beispiel.de", 10 + n)
    counting = CountingLedger(app)
    recent = RecentRows(counting, ORG, lambda: datetime.now(UTC), max_rows=4)

    a, _ = recent.written_since("880201", since, MATCH_COLUMNS)
    assert emails(a) == {f"teilnehmer.{n}@beispiel.de" for n in range(3)}
    b, _ = recent.written_since("880202", since, MATCH_COLUMNS)
    assert emails(b) == {"teilnehmer.3@beispiel.de", "teilnehmer.4@beispiel.de"}
    assert counting.queries == 3, "one read given up, then each webinar its own query"


def test_the_runs_discovery_read_serves_the_index_refreshes_that_ask_from_a_little_earlier(app: App) -> None:
    register(app, "reg-d1", "880301", "jörg.müller@beispiel.de", 21)
    register(app, "reg-d2", "880302", "åsa.ødegård@eksempel.no", 22)
    counting = CountingLedger(app)
    recent = RecentRows(counting, ORG, lambda: datetime.now(UTC))
    now = datetime.now(UTC)

    found = recent.webinars_since(now - timedelta(minutes=10), read_from=now - timedelta(minutes=15),
                                  columns=MATCH_COLUMNS)  # fmt: skip
    assert found is not None and {"880301", "880302"} <= found
    assert recent.webinars_since(now + timedelta(minutes=1), read_from=now, columns=MATCH_COLUMNS) == set()
    rows, _ = recent.written_since("880302", now - timedelta(minutes=15), MATCH_COLUMNS)
    assert emails(rows) == {"åsa.ødegård@eksempel.no"} and counting.queries == 1, "one read for all of them"
