"""Benchmark of the privacy work against Azurite: retention of a closed webinar's ledger rows, the forget
route's lookup by email, and an org's purge.

    .venv/bin/python -m benchmarks.privacy [--rows 20000]

Seeds one org with ``--rows`` ledger rows of one closed webinar (each with an email) plus a second org of the
same size that must stay untouched, then times each step and prints rows per second and how many rows fit the
default housekeeping share of a PullMetrics run (10% of 240 s).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from benchmarks.common import run_with_cleanup, stepper, storage_only_app
from shared import privacy
from shared.app import App
from shared.entrypoints.timers import HOUSEKEEPING_SHARE
from shared.store.sync_state import WebinarSyncState

ORG, OTHER = "bench-org-leaving", "bench-org-staying"
WEBINAR = "990001"


def ledger_row(org: str, i: int) -> dict[str, str]:
    return {
        "PartitionKey": org,
        "RowKey": f"{i:08d}-{uuid.uuid4().hex[:8]}",
        "State": "registered",
        "On24EventId": WEBINAR,
        "EventUserId": str(10_000_000 + i),
        "Email": f"attendee{i}@{org}.example",
        "Pending": "",
        "Intent": "",
    }


def seed(app: App, org: str, rows: int) -> None:
    table = app.tables.table("ledger")
    for start in range(0, rows, 100):
        table.submit_transaction([("create", ledger_row(org, i)) for i in range(start, min(start + 100, rows))])
    app.sync_state.save(WebinarSyncState(org, WEBINAR, window_end=datetime.now(UTC) - timedelta(days=1)))


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    step = stepper()
    app = storage_only_app(stack)
    for org in (ORG, OTHER):
        step(f"seeding {args.rows} ledger rows of org {org}")
        seed(app, org, args.rows)
    ports, options = app.privacy_ports(), app.privacy_options()
    share = 240 * HOUSEKEEPING_SHARE

    started = time.perf_counter()
    found = app.ledger.registrations_of(ORG, contact_id=None, email=f"ATTENDEE{args.rows // 2}@{ORG}.example")
    lookup = time.perf_counter() - started
    assert len(found) == 1

    started = time.perf_counter()
    report = privacy.housekeeping(ports, options, budget_seconds=3600)
    retention = time.perf_counter() - started
    step(f"retention: {report.rows_cleared} rows cleared, {report.webinars_cleared} webinars")

    started = time.perf_counter()
    inline = privacy.purge_org(ORG, ports, actor="benchmark")
    route = time.perf_counter() - started
    later = replace(ports, clock=lambda: datetime.now(UTC) + privacy.PURGE_SETTLE)
    started = time.perf_counter()
    privacy.housekeeping(later, options, budget_seconds=3600)
    timer = time.perf_counter() - started
    left = sum(1 for _ in app.tables.table("ledger").query_entities(f"PartitionKey eq '{ORG}'"))
    others = sum(1 for _ in app.tables.table("ledger").query_entities(f"PartitionKey eq '{OTHER}'"))

    purged = args.rows + 1  # its ledger rows and its sync-state row
    print(f"rows per org ............................ {args.rows}")
    rate = report.rows_cleared / retention
    print(f"retention (clear emails, both orgs) ..... {retention:.1f} s for {report.rows_cleared} rows, {rate:,.0f} "
          f"rows/s: {rate * share:,.0f} rows per {share:.0f} s housekeeping share")  # fmt: skip
    print(f"forget lookup by email (whole org) ...... {lookup:.2f} s, {args.rows / lookup:,.0f} rows/s")
    print(f"purge, inside DELETE ?purge=true ........ {route:.2f} s for {sum(inline.request.deleted.values())} rows "
          f"({'200' if inline.finished else '202'})")  # fmt: skip
    rest = purged - sum(inline.request.deleted.values())  # what the DELETE left for the timer
    print(f"purge, rest in the timer ................ {timer:.1f} s for {rest} rows, {rest / timer:,.0f} rows/s")
    print(f"rows left of the purged org ............. {left}")
    print(f"rows of the other org ................... {others} (of {args.rows})")
    return 0 if left == 0 and others == args.rows else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    sys.exit(run_with_cleanup(run, parser.parse_args()))


if __name__ == "__main__":
    main()
