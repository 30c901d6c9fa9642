"""PullMetrics' steady path end to end (Azurite, ON24 and Dataverse stand-ins): after the first run, a timer run
(pulls and health pass) reads only the ledger rows written since, whatever the size of the org's partition."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient

from shared.app import get_app
from shared.store.ledger import LedgerEntry
from shared.store.tables import TRANSACTION_SIZE
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
