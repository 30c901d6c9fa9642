"""Benchmark of the status route's registration count against Azurite: what ``GET .../webinar/status`` costs for
an org whose registrations recorded something in the last 10 minutes (the route counts its ledger again) and
for a quiet org (one question to the ledger).

    .venv/bin/python -m benchmarks.status [--rows 20000]

Seeds two orgs with ``--rows`` ledger rows each over two webinars, one written now, one yesterday, then times
the status use case (``shared.health.org_status``) for each: the first call (counts and saves the summary) and
the median of five more.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from benchmarks.common import run_with_cleanup, stepper, storage_only_app
from shared import health
from shared.app import App

BUSY, QUIET = "bench-org-busy", "bench-org-quiet"


def seed(app: App, org: str, rows: int, at: datetime) -> None:
    table = app.tables.table("ledger")
    for start in range(0, rows, 100):
        batch = [
            {
                "PartitionKey": org,
                "RowKey": f"{i:08d}-{uuid.uuid4().hex[:8]}",
                "State": "registered",
                "LastOutcome": "registered" if i % 10 else "failed",
                "On24EventId": "990001" if i % 2 else "990002",
                "Email": f"attendee{i}@{org}.example",
                "UpdatedAt": at,
            }
            for i in range(start, min(start + 100, rows))
        ]
        table.submit_transaction([("create", row) for row in batch])


def timed(app: App, org: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    answer = health.org_status(org, app.status_ports())
    return time.perf_counter() - started, answer


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    step = stepper()
    app = storage_only_app(stack)
    now = datetime.now(UTC)
    step(f"seeding {args.rows} ledger rows of a busy org and of a quiet one")
    seed(app, BUSY, args.rows, now)
    seed(app, QUIET, args.rows, now - timedelta(days=1))
    ok = True
    print(f"ledger rows per org ..................... {args.rows}")
    for org, label in ((BUSY, "outcomes in the last 10 min"), (QUIET, "quiet since its last count")):
        first, answer = timed(app, org)
        again = statistics.median(timed(app, org)[0] for _ in range(5))
        total = answer["registrations"]["total"]  # type: ignore[index]
        counted = total["registered"] + total["failed"]
        ok &= counted == args.rows and len(answer["webinars"]) == 2  # type: ignore[arg-type]
        print(f"{label} ".ljust(42, ".") + f" first call {first * 1000:,.0f} ms, then {again * 1000:,.0f} ms "
              f"(counted {counted})")  # fmt: skip
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    sys.exit(run_with_cleanup(run, parser.parse_args()))


if __name__ == "__main__":
    main()
