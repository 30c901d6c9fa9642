"""Benchmark of the client stacks RegisterAttendee could run on: sync (threads) against async (asyncio).

What it measures
    Client-side CPU per operation and operations per second at ``--concurrency`` operations in flight (16, as
    ``maxConcurrentCalls``), for the two kinds of call a registration makes:

    * a Table Storage point read (``get_entity``) against Azurite: azure-data-tables on requests (the SDK's
      default), on this app's ``http.client`` transport (``shared/store/transport.py``), and
      ``azure.data.tables.aio`` on aiohttp (the SDK's async default);
    * an ON24 registrant POST against the ON24 stand-in: ``httpx.Client`` (threads) and ``httpx.AsyncClient``.

    Client CPU is the CPU time of the threads that make the calls (``time.thread_time()`` around each call on
    worker threads; around the whole batch on the event loop's one thread), so the stand-in's own threads in
    this process are not counted; Azurite is a separate process.

How to run (from the repository root, after ``bash scripts/bootstrap.sh``):

    .venv/bin/python -m benchmarks.stacks [--operations 2000] [--concurrency 16]

Exit status: 0.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def threaded(operation: Callable[[], Any], operations: int, concurrency: int) -> tuple[float, float]:
    """(client CPU ms per operation, operations per second) with ``concurrency`` threads."""

    def timed(_: int) -> float:
        started = time.thread_time()
        operation()
        return time.thread_time() - started

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(timed, range(concurrency * 4)))  # warm the connection pools
        wall = time.perf_counter()
        cpu = sum(pool.map(timed, range(operations)))
        return 1000 * cpu / operations, operations / (time.perf_counter() - wall)


async def gathered(operation: Callable[[], Awaitable[Any]], operations: int, concurrency: int) -> tuple[float, float]:
    """(client CPU ms per operation, operations per second) with ``concurrency`` tasks on one event loop."""
    limit = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with limit:
            await operation()

    await asyncio.gather(*(one() for _ in range(concurrency * 4)))
    cpu, wall = time.thread_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(operations)))
    return 1000 * (time.thread_time() - cpu) / operations, operations / (time.perf_counter() - wall)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stacks", description=__doc__.split("\n")[0])
    parser.add_argument("--operations", type=int, default=2000, help="operations per stack (2000)")
    parser.add_argument("--concurrency", type=int, default=16, help="operations in flight (16)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import httpx
    from azure.core.pipeline.transport import RequestsTransport
    from azure.data.tables import TableServiceClient
    from azure.data.tables.aio import TableServiceClient as AsyncTableServiceClient

    from sandbox.azurite import Azurite
    from sandbox.on24 import On24StandIn
    from shared.store.transport import HttpClientTransport

    n, c = args.operations, args.concurrency
    rows: list[tuple[str, float, float]] = []
    with Azurite(("table",)) as azurite, On24StandIn() as on24:
        on24.add_client("1", "k", "s")
        on24.add_event("1", 5)
        url = f"{on24.url}/v2/client/1/event/5/registrant"
        form = {"email": "ada@example.com", "firstname": "Ada", "lastname": "Lovelace"}
        headers = {"accessTokenKey": "k", "accessTokenSecret": "s"}
        name = "stacks" + uuid.uuid4().hex[:8]
        connection = azurite.connection_string
        for label, transport in (("requests (SDK default)", RequestsTransport(use_env_settings=False)),
                                 ("http.client (this app)", HttpClientTransport())):  # fmt: skip
            service = TableServiceClient.from_connection_string(connection, transport=transport)
            table = service.create_table_if_not_exists(name)
            table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "State": "registered"})
            rows.append((f"Table get, sync threads, {label}", *threaded(lambda t=table: t.get_entity("p", "r"), n, c)))
        with httpx.Client() as client:
            rows.append(("ON24 POST, httpx.Client, threads",
                         *threaded(lambda: client.post(url, data=form, headers=headers), n, c)))  # fmt: skip

        async def run_async() -> None:
            async with AsyncTableServiceClient.from_connection_string(connection) as service:
                table = service.get_table_client(name)
                rows.append(("Table get, asyncio, aiohttp (SDK default)",
                             *await gathered(lambda: table.get_entity("p", "r"), n, c)))  # fmt: skip
            async with httpx.AsyncClient() as client:
                rows.append(("ON24 POST, httpx.AsyncClient, asyncio",
                             *await gathered(lambda: client.post(url, data=form, headers=headers), n, c)))  # fmt: skip

        asyncio.run(run_async())
    print(f"client stacks: {n} operations each, {c} in flight (Python {sys.version.split()[0]})\n")
    print(f"{'stack':52s} {'client CPU ms/op':>17s} {'ops/s':>8s}")
    print("-" * 79)
    for label, cpu, rate in sorted(rows):
        print(f"{label:52s} {cpu:17.3f} {rate:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
