"""The privacy methods of the stores against Azurite (tables and blobs): clearing personal data only from rows
still at the version read, bounded purges that stay inside one org, expiry of rejected bodies that spares one
kept again meanwhile, purge requests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient

from shared.app import App, get_app
from shared.store.ledger import LedgerEntry, RegistrantRef
from shared.store.parked import PARKED_PARTITION
from shared.store.rejected import INLINE_BODY_BYTES, REJECTED_PARTITION
from shared.store.sync_state import WebinarSyncState

NOW = datetime.now(UTC)


@pytest.fixture
def app(base_env: dict[str, str]) -> App:
    return get_app()


def raw_table(env: dict[str, str], suffix: str) -> TableClient:
    service = TableServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    return service.get_table_client(env["STATE_TABLE_PREFIX"] + suffix)


def add(app: App, org: str, reg: str, **fields: Any) -> LedgerEntry:
    base = LedgerEntry(org_id=org, registration_id=reg, state="registered", webinar_id="7001",
                       registrant_id=f"eu-{reg}", email=f"{reg}@people.example")  # fmt: skip
    written = app.ledger.write(replace(base, **fields))
    assert written is not None
    return written


def test_personal_rows_lists_only_rows_with_an_email_of_that_webinar(app: App) -> None:
    add(app, "org-a", "r1")
    add(app, "org-a", "r2", email=None)
    add(app, "org-a", "r3", email=None, state="cancelled", pending=(RegistrantRef("7001", "p@people.example"),))
    add(app, "org-a", "r4", webinar_id="7002")
    add(app, "org-b", "r5")
    assert [e.registration_id for e in app.ledger.personal_rows("org-a", "7001")] == ["r1", "r3"]
    assert [e.registration_id for e in app.ledger.personal_rows("org-a", "7001", after="r1")] == ["r3"]
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert list(app.ledger.personal_rows("org-a", "7001", updated_since=later)) == []


def test_clearing_spares_a_row_written_since_it_was_read_and_keeps_every_id(app: App) -> None:
    rows = [add(app, "org-a", f"r{i:03}", pending=(RegistrantRef("7001", f"R{i:03}@people.example"),))
            for i in range(120)]  # fmt: skip
    add(app, "org-a", "r999")  # never read: not in the call
    leased = app.ledger.write(replace(rows[5], lease_id="L1", lease_until=NOW + timedelta(minutes=1)))
    assert leased is not None  # a delivery took the row after it was read: its etag changed
    cleared = app.ledger.clear_personal_data(rows)
    assert len(cleared) == 119 and rows[5].registration_id not in cleared
    first = app.ledger.get("org-a", "r000")
    assert first is not None and first.email is None and first.pending == ()
    assert (first.state, first.webinar_id, first.registrant_id, first.last_message_at) == (
        "registered", "7001", "eu-r000", rows[0].last_message_at
    )  # fmt: skip
    still = app.ledger.get("org-a", rows[5].registration_id)
    assert still is not None and still.email is not None and still.lease_id == "L1", "never written over a lease"
    untouched = app.ledger.get("org-a", "r999")
    assert untouched is not None and untouched.email == "r999@people.example"


def test_purge_deletes_are_bounded_and_stay_inside_the_org(app: App, base_env: dict[str, str]) -> None:
    app.tables.ensure()
    ledger = raw_table(base_env, "ledger")
    for org in ("org-a", "org-a.b", "org-ab"):
        for start in range(0, 250, 100):
            ledger.submit_transaction(
                [("create", {"PartitionKey": org, "RowKey": f"r{i:04}"}) for i in range(start, min(start + 100, 250))]
            )
        ledger.submit_transaction(
            [("create", {"PartitionKey": PARKED_PARTITION, "RowKey": f"{org}|r{i}"}) for i in range(3)]
        )
    assert app.ledger.delete_org_rows("org-a", limit=200) == 200
    assert app.ledger.delete_org_rows("org-a", limit=200) == 50, "fewer than asked: none left"
    assert app.ledger.delete_org_rows("org-a", limit=200) == 0
    assert app.ledger.delete_parked("org-a", limit=10) == 3
    left = [(e["PartitionKey"], e["RowKey"]) for e in ledger.list_entities()]
    assert not [key for key in left if key[0] == "org-a" or key[1].startswith("org-a|")]
    assert len(left) == 2 * 253, "the orgs whose ids start like it keep every row"


def test_sync_state_lists_every_org_and_purges_one(app: App) -> None:
    for org, webinar in (("org-a", "1"), ("org-a", "2"), ("org-b", "3")):
        assert app.sync_state.save(WebinarSyncState(org, webinar, window_end=NOW, retention_cursor="r5"))
    app.sync_state.set_discovery_mark("org-a", NOW)
    table = app.tables.table("syncstate")
    table.upsert_entity({"PartitionKey": "org-a", "RowKey": "~health", "Total": 3})  # the status route's summary
    table.upsert_entity({"PartitionKey": "~pace", "RowKey": "1001", "Calls": 7})  # per ON24 account, no org
    states = app.sync_state.list_all()
    assert sorted((s.org_id, s.webinar_id) for s in states) == [("org-a", "1"), ("org-a", "2"), ("org-b", "3")]
    assert {s.retention_cursor for s in states} == {"r5"}, "the retention bookmark is stored with the row"
    assert app.sync_state.delete_org_rows("org-a", limit=100) == 4, "the discovery mark and health summary go too"
    assert [(s.org_id, s.webinar_id) for s in app.sync_state.list_all()] == [("org-b", "3")]


class RecordAfterListing:
    """A table client whose query of expired rows is followed, before anything is deleted, by a redelivery that
    keeps the same message again (the interleaving ``expire`` must survive)."""

    def __init__(self, table: TableClient, again: Any) -> None:
        self._table, self._again = table, again

    def query_entities(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        rows = list(self._table.query_entities(*args, **kwargs))
        self._again()
        return iter(rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


def test_expiry_deletes_old_bodies_and_blobs_but_not_one_kept_again_meanwhile(app: App) -> None:
    large = b'{"orgId": "org-a", "x": "' + b"y" * (INLINE_BODY_BYTES + 10) + b'"}'
    app.rejected.record("m-small", "bad", b"{not json", org_id="org-a")
    app.rejected.record("m-large", "bad", large, org_id="org-a")
    app.rejected.record("m-again", "bad", b"{again", org_id="org-b")
    cutoff = datetime.now(UTC) + timedelta(seconds=1)  # everything so far is "old"
    container = app._blob_container("rejected")
    assert [b.name for b in container.list_blobs()], "the large body is a blob"

    def again() -> None:
        app.rejected.record("m-again", "bad", b"{again", org_id="org-b")  # a redelivery: a fresh RejectedAt

    ledger = RecordAfterListing(app.tables.table("ledger"), again)
    racing = type(app.rejected)(ledger, lambda: app._blob_container("rejected"))  # type: ignore[arg-type]
    deleted, finished = racing.expire(cutoff, limit=100)
    assert (deleted, finished) == (2, True)
    assert [m.message_id for m in app.rejected.list()] == ["m-again"]
    assert [b.name for b in container.list_blobs()] == [], "the large body's blob went with its row"


def test_expiry_spares_a_large_body_kept_again_meanwhile_row_and_blob(app: App) -> None:
    large = b"z" * (INLINE_BODY_BYTES + 1)
    app.rejected.record("m-large", "bad", large, org_id="org-a")
    cutoff = datetime.now(UTC)  # the message is older than this
    # Blob times have one-second resolution: let the clock pass the cutoff before the message is kept again.
    time.sleep(1.2)
    racing = type(app.rejected)(
        RecordAfterListing(
            app.tables.table("ledger"), lambda: app.rejected.record("m-large", "bad", large, org_id="org-a")
        ),
        lambda: app._blob_container("rejected"),
    )
    assert racing.expire(cutoff, limit=10) == (0, True), "listed as expired, but kept again before the delete"
    assert [m.body for m in app.rejected.list()] == [large], "the row and its blob are both still there"
    assert app.rejected.expire(datetime.now(UTC) + timedelta(seconds=2), limit=10) == (1, True)
    assert list(app.rejected.list()) == [] and list(app._blob_container("rejected").list_blobs()) == []


def test_rejected_purge_and_erasure_delete_rows_and_blobs_of_one_org(app: App) -> None:
    large = b"q" * (INLINE_BODY_BYTES + 1)
    app.rejected.record("a1", "bad", large, org_id="org-a")
    app.rejected.record("a2", "bad", b"{", org_id="org-a")
    app.rejected.record("b1", "bad", large + b"b", org_id="org-b")
    app.rejected.record("n1", "bad", b"{")
    assert sorted(m.message_id for m in app.rejected.list_for_org("org-a")) == ["a1", "a2"]
    assert app.rejected.delete_org_rows("org-a", limit=100) == 2
    assert sorted(m.message_id for m in app.rejected.list()) == ["b1", "n1"]
    assert len(list(app._blob_container("rejected").list_blobs())) == 1, "org-b's blob stays"
    assert app.rejected.delete(list(app.rejected.list_for_org("org-b"))) == 1
    assert [m.message_id for m in app.rejected.list()] == ["n1"]
    assert not list(app._blob_container("rejected").list_blobs())
    rows = list(app.tables.table("ledger").query_entities(f"PartitionKey eq '{REJECTED_PARTITION}'"))
    assert len(rows) == 1


def test_a_purge_request_is_recorded_once_and_never_lists_as_an_org(app: App) -> None:
    first = app.purges.open("org-a", actor="admin", now=NOW)
    again = app.purges.open("org-a", actor="someone else", now=NOW + timedelta(minutes=5))
    assert again.requested_at == first.requested_at and again.requested_by == "admin"
    assert app.purges.save(replace(again, deleted={"ledger": 7}, deleted_at=NOW))
    stored = app.purges.get("org-a")
    assert stored is not None and stored.deleted["ledger"] == 7 and stored.deleted_at == NOW
    assert [r.org_id for r in app.purges.list()] == ["org-a"] and list(app.credentials.list_orgs()) == []
    app.purges.close("org-a")
    app.purges.close("org-a")
    assert app.purges.get("org-a") is None and not app.purges.save(stored), "a finished request is not re-created"


def test_match_index_blobs_are_saved_only_at_the_version_read_and_purged_per_org(app: App) -> None:
    indexes = app.match_indexes
    assert indexes.load("org-a", "7001") == (None, None)
    first = indexes.save("org-a", "7001", b"v1", None)
    assert first is not None and indexes.load("org-a", "7001") == (b"v1", first)
    assert indexes.save("org-a", "7001", b"other", None) is None, "another pull created it meanwhile"
    second = indexes.save("org-a", "7001", b"v2", first)
    assert second is not None and second != first
    assert indexes.save("org-a", "7001", b"stale", first) is None, "another pull saved it meanwhile"
    assert indexes.load("org-a", "7001") == (b"v2", second)
    indexes.save("org-a", "7002", b"w", None)
    indexes.save("org-b", "7001", b"b", None)
    assert indexes.delete_org("org-a", limit=10) == 2
    assert indexes.load("org-a", "7002") == (None, None) and indexes.load("org-b", "7001")[0] == b"b"
    indexes.delete("org-b", "7001")
    indexes.delete("org-b", "7001")  # idempotent
    assert indexes.load("org-b", "7001") == (None, None)
