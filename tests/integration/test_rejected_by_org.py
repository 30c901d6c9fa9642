"""Rejected messages are found by org, by key (issue 18, item 8): one org's erasure reads only its own rows and
body blobs, however many another org has; rows kept before the change stay readable and move to their org's
partition. Azurite for tables and blobs; the requests and rows are counted at the SDK's edge."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables import TableClient

from shared.app import App, get_app
from shared.store.rejected import INLINE_BODY_BYTES, REJECTED_PARTITION, rejection_key
from shared.store.transport import HttpClientTransport

ORG_A = "5b0c2d1e-3f4a-4b5c-9d6e-7f8091a2b3c4"
ORG_B = "7e0c2d1e-3f4a-4b5c-9d6e-7f8091a2b3c5"


@pytest.fixture
def app(base_env: dict[str, str]) -> App:
    return get_app()


class Reads:
    """Table requests, the table rows they returned, and the body blobs read and deleted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from azure.storage.blob import ContainerClient

        self.requests: list[str] = []
        self.blobs: list[str] = []
        self.rows = 0
        original_send = HttpClientTransport.send
        original_query = TableClient.query_entities
        original_download, original_delete = ContainerClient.download_blob, ContainerClient.delete_blob
        reads = self

        def download(container: Any, name: str, *args: Any, **kwargs: Any) -> Any:
            reads.blobs.append(f"GET {name}")
            return original_download(container, name, *args, **kwargs)

        def delete(container: Any, name: str, *args: Any, **kwargs: Any) -> Any:
            reads.blobs.append(f"DELETE {name}")
            return original_delete(container, name, *args, **kwargs)

        monkeypatch.setattr(ContainerClient, "download_blob", download)
        monkeypatch.setattr(ContainerClient, "delete_blob", delete)

        def send(transport: Any, request: Any, **kwargs: Any) -> Any:
            reads.requests.append(f"{request.method} {request.url.split('?')[0]}")
            return original_send(transport, request, **kwargs)

        def query(table: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            for entity in original_query(table, *args, **kwargs):
                reads.rows += 1
                yield entity

        monkeypatch.setattr(HttpClientTransport, "send", send)
        monkeypatch.setattr(TableClient, "query_entities", query)

    def reset(self) -> None:
        self.requests.clear()
        self.blobs.clear()
        self.rows = 0


def body(org: str, email: str, pad: int = 0) -> bytes:
    return f'{{"orgId": "{org}", "action": "dance", "attendee": {{"email": "{email}"}}, "pad": "{"x" * pad}"}}'.encode()


def test_one_orgs_lookup_reads_only_its_own_rows_and_blobs(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    app.rejected.record("a-small", "bad", body(ORG_A, "jörg.müller@firma.example"), org_id=ORG_A)
    app.rejected.record("a-large", "bad", body(ORG_A, "åsa.ødegård@firma.example", INLINE_BODY_BYTES), org_id=ORG_A)
    for i in range(300):  # org B has many kept messages, three of them with large bodies (blobs)
        pad = 0 if i % 100 else INLINE_BODY_BYTES
        app.rejected.record(f"b{i}", "bad", body(ORG_B, f"иван.петров{i}@пример.example", pad), org_id=ORG_B)
    reads = Reads(monkeypatch)

    found = sorted(m.message_id for m in app.rejected.list_for_org(ORG_A))
    assert found == ["a-large", "a-small"]
    assert reads.rows == 2, f"read {reads.rows} rows for org A's 2 messages"
    assert len(reads.blobs) == 1 and reads.blobs[0].startswith(f"GET {ORG_A}/"), reads.blobs
    assert len(reads.requests) == 2, reads.requests  # its partition, its rows kept before the change

    reads.reset()
    assert app.rejected.delete_org_rows(ORG_A, limit=100) == 2
    assert reads.rows == 2 and len(reads.blobs) == 1, "a purge of A never reads B's rows or blobs"
    assert len(list(app.rejected.list_for_org(ORG_B))) == 300


def legacy_row(table: TableClient, org: str | None, message_id: str, data: bytes) -> str:
    """A row as kept before issue 18: partition ``~rejected``, the org only in a column."""
    key = rejection_key(message_id, data)
    table.upsert_entity({
        "PartitionKey": REJECTED_PARTITION, "RowKey": key, "MessageId": message_id, "OrgId": org or "",
        "Reason": "bad", "Body": data, "BodyBytes": len(data), "BodySha256": hashlib.sha256(data).hexdigest(),
        "DeliveryCount": 1, "RejectedAt": datetime.now(UTC),
    })  # fmt: skip
    return key


def test_rows_kept_before_the_change_stay_readable_and_move_to_their_orgs_partition(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = app.tables.table("ledger")
    legacy_row(table, ORG_A, "old-a", body(ORG_A, "jörg.müller@firma.example"))
    legacy_row(table, ORG_B, "old-b", body(ORG_B, "åsa.ødegård@firma.example"))
    legacy_row(table, None, "old-none", b"{not json")
    app.rejected.record("new-a", "bad", body(ORG_A, "jörg.müller@firma.example"), org_id=ORG_A)
    reads = Reads(monkeypatch)
    assert sorted(m.message_id for m in app.rejected.list_for_org(ORG_A)) == ["new-a", "old-a"]
    assert reads.rows == 2, "the old partition is asked for org A's rows only (filtered by Table Storage)"

    assert app.rejected.move_legacy(limit=100) == (2, True)
    assert app.rejected.move_legacy(limit=100) == (0, True), "idempotent"
    left = [r["MessageId"] for r in table.query_entities("PartitionKey eq @p", parameters={"p": REJECTED_PARTITION})]
    assert left == ["old-none"], "only the message that names no org stays in ~rejected"
    reads.reset()
    moved = {m.message_id: m for m in app.rejected.list_for_org(ORG_A)}
    assert sorted(moved) == ["new-a", "old-a"] and reads.rows == 2
    assert moved["old-a"].body == body(ORG_A, "jörg.müller@firma.example")
    assert sorted(m.message_id for m in app.rejected.list()) == ["new-a", "old-a", "old-b", "old-none"]
    assert app.rejected.mark_replayed(moved["old-a"].key, "queue")
    assert app.rejected.delete([moved["old-a"]]) == 1
    assert sorted(m.message_id for m in app.rejected.list()) == ["new-a", "old-b", "old-none"]
