"""Seeding Table Storage fast for the benchmarks: entity-group transactions of 100 rows, built here and sent through
the Table SDK's own pipeline (its auth and transport), several in parallel.

Why not ``TableClient.submit_transaction``: in Python it costs ~0.4 ms of CPU a row (request building, and parsing
the multipart answer with the ``email`` package), so seeding was bound by this process, not by Azurite: 500,000
rows took 501 s. Built here, a row costs ~0.07 ms (the SDK's own ``_add_entity_properties`` still types each value)
and the answer is only checked for a non-2xx part: Azurite then sets the pace (~5,000 rows/s on 2 cores).
Benchmark set-up only; the product writes through ``shared.store``.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any

TRANSACTION_SIZE = 100  # Table Storage's limit of operations per entity-group transaction
_STATUS = re.compile(r"^HTTP/1\.1 (\d{3})[^\r\n]*", re.MULTILINE)


class SeedError(RuntimeError):
    """A transaction or one of its rows was refused (the first refused part's status line and message)."""


def insert_transaction(client: Any, entities: list[Mapping[str, Any]]) -> None:
    """Insert ``entities`` (one PartitionKey, at most 100) in one entity-group transaction.

    Raises:
        SeedError: the batch or any row was refused (a conflict included): nothing of it was written.
    """
    from azure.core.rest import HttpRequest
    from azure.data.tables._serialize import _add_entity_properties

    batch, change = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    base = f"{client.scheme}://{client._primary_hostname}"
    parts = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={change}\r\n\r\n"]
    for entity in entities:
        body = json.dumps(_add_entity_properties(dict(entity)), ensure_ascii=False)
        parts.append(
            f"--{change}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            f"POST {base}/{client.table_name} HTTP/1.1\r\nContent-Type: application/json\r\n"
            "Accept: application/json;odata=nometadata\r\nPrefer: return-no-content\r\nDataServiceVersion: 3.0\r\n"
            f"\r\n{body}\r\n"
        )
    parts.append(f"--{change}--\r\n\r\n--{batch}--\r\n")
    request = HttpRequest(
        "POST",
        f"{base}/$batch",
        headers={
            "x-ms-version": client.api_version,
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0;NetFx",
            "Content-Type": f"multipart/mixed; boundary={batch}",
            "Accept": "application/json",
        },
        content="".join(parts).encode("utf-8"),
    )
    response = client._client.send_request(request, stream=True)
    text = response.read().decode("utf-8", "replace")
    statuses = _STATUS.findall(text)
    if response.status_code != 202 or len(statuses) != len(entities) or any(s[0] != "2" for s in statuses):
        refused = next((m.group(0) for m in _STATUS.finditer(text) if not m.group(1).startswith("2")), "")
        raise SeedError(f"transaction of {len(entities)} rows refused ({response.status_code} {refused}): "
                        f"{text[-400:]!r}")  # fmt: skip


def insert_rows(connection_string: str, table_name: str, entities: Iterable[Mapping[str, Any]],
                *, threads: int = 4) -> int:  # fmt: skip
    """Insert ``entities`` (in PartitionKey runs) in transactions of 100, ``threads`` at a time; returns how many
    transactions were sent. A refusal stops the seeding with ``SeedError``."""
    from azure.data.tables import TableClient

    local = threading.local()

    def send(rows: list[Mapping[str, Any]]) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = TableClient.from_connection_string(connection_string, table_name)
        insert_transaction(client, rows)

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="seed")
    sent = 0
    in_flight: deque[Future[None]] = deque()
    try:  # a few transactions ahead of the senders, so 500,000 rows are never all in memory
        for rows in _transactions(entities):
            if len(in_flight) >= threads * 4:
                in_flight.popleft().result()
            in_flight.append(pool.submit(send, rows))
            sent += 1
        while in_flight:
            in_flight.popleft().result()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C or a refusal: do not wait for the rest
        raise
    pool.shutdown(wait=True)
    return sent


def _transactions(entities: Iterable[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
    """Runs of at most 100 rows of one PartitionKey (a transaction cannot span partitions)."""
    pending: list[Mapping[str, Any]] = []
    iterator = iter(entities)
    while chunk := list(islice(iterator, TRANSACTION_SIZE)):
        for entity in chunk:
            if pending and (len(pending) == TRANSACTION_SIZE or entity["PartitionKey"] != pending[0]["PartitionKey"]):
                yield pending
                pending = []
            pending.append(entity)
    if pending:
        yield pending
