"""PullMetrics' steady path end to end (Azurite, ON24 and Dataverse stand-ins): after the first run, a timer run
(pulls and health pass) reads only the ledger rows written since, whatever the size of the org's partition."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient

from shared.app import get_app
from shared.store.ledger import LedgerEntry
from shared.store.tables import TRANSACTION_SIZE
from tests.builders import CrmOrg
from tests.conftest import ON24_CLIENT_ID
from tests.e2e.test_pull_metrics import ORG_A, Webinars, run_timer

HISTORY = 1000


@pytest.fixture
def webinars(app_env: dict[str, str], on24: Any, dataverse: Any) -> Webinars:
    return Webinars(on24, dataverse)


def seed_history(count: int) -> None:
    """The org's older registrations (written an hour ago, no ON24 attendee): what makes its partition big."""
    table = get_app().tables.table("ledger")
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    rows = [
        LedgerEntry(org_id=ORG_A, registration_id=f"hist-{i:05}", state="registered", last_outcome="registered",
                    webinar_id="7002", registrant_id=str(50_000 + i), email=f"åsa.ødegård.{i}@exempel.se",
                    updated_at=hour_ago).to_entity()
        for i in range(count)
    ]  # fmt: skip
    for start in range(0, count, TRANSACTION_SIZE):
        table.submit_transaction([("upsert", row) for row in rows[start : start + TRANSACTION_SIZE]])


def test_a_run_after_one_change_reads_the_rows_written_since_not_the_partition(
    webinars: Webinars, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = webinars
    for email in ("jörg.müller@beispiel.de", "иван.петров@пример.рф"):
        w.register(ORG_A, 7001, email)
        w.watch(7001, email, live=10)
    seed_history(HISTORY)
    run_timer()  # the first run: discovery, indexes and the count tally read the partition

    ledger = get_app().ledger
    changed = ledger.get(ORG_A, "hist-00042")
    assert changed is not None
    assert ledger.write(replace(changed, state="cancelled", last_outcome="cancelled")) is not None
    read: list[str] = []
    original = TableClient.query_entities

    def counted(self: TableClient, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for entity in original(self, *args, **kwargs):
            if self.table_name.endswith("ledger"):
                read.append(str(entity.get("RowKey", "")))  # discovery selects only the event id
            yield entity

    monkeypatch.setattr(TableClient, "query_entities", counted)
    run_timer()
    assert 0 < len(read) <= 30, f"{len(read)} ledger rows read of a partition of {HISTORY + 2}"
    assert set(read) - {""} <= {"hist-00042", *w.regs.values()}, "only rows written in the last minutes"
    health = get_app().health.get(ORG_A)
    assert health is not None and health.registrations is not None
    assert health.registrations.totals == {"registered": HISTORY + 1, "cancelled": 1}, "the change is counted"


def test_a_run_after_one_change_queries_the_ledger_a_few_times_however_many_webinars_are_due(
    webinars: Webinars, on24: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each query with a filter on non-key columns is a scan of the org's partition by the service: one per due
    webinar (its index refresh) made a run over 100 webinars of a 500,000-row partition cost 100 scans."""
    w = webinars
    people = ("jörg.müller@beispiel.de", "åsa.ødegård@eksempel.no", "иван.петров@пример.рф",
              "mikko.häkkinen@esimerkki.fi")  # fmt: skip
    events = [7101 + n for n in range(8)]
    for n, event in enumerate(events):
        on24.add_event(ON24_CLIENT_ID, event, livestart=w.live, liveend=w.live + timedelta(hours=1))
        w.crm[event] = CrmOrg(w.dataverse, webinar_id=str(event))
        email = people[n % len(people)].replace("@", f".{n}@")
        w.register(ORG_A, event, email)
        w.watch(event, email, live=5 + n)
    run_timer()  # the first run builds every webinar's index

    late = "sigríður.jónsdóttir@dæmi.is"
    w.register(ORG_A, events[3], late)  # one change: a registration in one webinar, who watched too
    w.watch(events[3], late, live=42)
    queries: list[str | None] = []
    original = TableClient.query_entities

    def counted(self: TableClient, *args: Any, **kwargs: Any) -> Any:
        text = str(kwargs.get("query_filter") or (args[0] if args else ""))
        if self.table_name.endswith("ledger") and "PartitionKey eq @org" in text:  # one org's partition
            queries.append(" / ".join(frame.name for frame in traceback.extract_stack()[-5:-1]))  # who asked
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TableClient, "query_entities", counted)
    run_timer()
    # Per org one read of its recent rows (discovery, and every webinar's index refresh) and the health pass
    # (changed?, then the tally for the org that changed): 5 for the two orgs, whatever the number of webinars.
    assert len(queries) <= 5, f"{len(queries)} partition scans for {len(events)} due webinars: {queries}"
    checkin = w.checkin(ORG_A, late)
    assert checkin is not None and checkin["msevtmgt_viewingdurationinmins"] == 42, "the change is matched at once"
