"""Benchmark: one webinar with 20,000 registrations reconciled within ON24's list limit, CRM read in pages.

    .venv/bin/python -m benchmarks.reconcile [--registrations 20000] [--scale 0.1]

Seeds the Dataverse stand-in with the registrations (and contacts) of one webinar's event and the ON24 stand-in
with their registrants (1% missing, 0.5% walk-ins, so the classes are not all ``agreed``), then reconciles the
webinar (a report) through the production ports, against Azurite for the shared pacing row.

The clock is scaled: ON24's limit of 100 list calls a minute becomes 100 per ``60 * scale`` seconds, for both the
app's shared limiter (its hold scaled alike) and the stand-in, which answers 429 beyond it; the ratio to the limit
is unchanged. Figures: ON24 list pages, CRM pages (more than one: read in pages), throttled calls (must be 0), the
ratio to the limit (the most list calls in any window, over the limit: at most 1.2; the shared limiter's design
makes it at most 1.0), and, for information, the time against the least the limit allows (whole windows between
the first and the last call; the call latency, not scaled, adds to it at small scales). Prints [PASS] or [FAIL].
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
from bisect import bisect_left
from dataclasses import replace
from pathlib import Path

from benchmarks.common import run_with_cleanup, stepper, worker_environment

ORG = "7d1e9c2a-5b3f-4e6d-8a1b-2c3d4e5f6a7b"
WEBINAR = 9900123
LIMIT = 100  # ON24: list calls per minute per account
RATIO_MAX = 1.2
REGISTRATIONS = "msevtmgt_eventregistrations"


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    from sandbox.azurite import Azurite
    from sandbox.dataverse import DataverseStandIn
    from sandbox.keyvault import KeyVaultStandIn, TestCertificateAuthority
    from sandbox.on24 import On24StandIn
    from sandbox.triggers import http_request
    from shared import reconcile
    from shared.app import get_app, reset_app
    from shared.ratelimit import RateLimiter
    from shared.store.pacing import DEFAULT_HOLD_SECONDS, SharedRateLimiter
    from StoreCredentials import main as store_main
    from tests.conftest import ON24_CLIENT_ID, ON24_KEY, ON24_SECRET, credentials_body, random_key

    step = stepper()
    window = 60.0 * args.scale
    on24, dataverse = On24StandIn(), DataverseStandIn(organization_id=ORG)
    for server in (on24, dataverse):
        server.start()
        stack.callback(server.close)
    azurite = Azurite(("table",))
    stack.callback(azurite.stop)
    azurite.start()
    ca = TestCertificateAuthority(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ca-"))))
    vault = KeyVaultStandIn(ca)
    vault.start()
    stack.callback(vault.close)
    vault.set_secret("on24-credentials-key", random_key())
    os.environ.update(worker_environment(azurite.connection_string, vault.url, str(ca.ca_path), on24.url,
                                         dataverse.url, ON24_ATTENDEE_CALLS_PER_MINUTE=str(LIMIT)))  # fmt: skip
    reset_app()
    stack.callback(reset_app)
    on24.add_client(ON24_CLIENT_ID, ON24_KEY, ON24_SECRET)
    on24.add_event(ON24_CLIENT_ID, WEBINAR, title="Benchmark webinar")
    assert store_main(http_request("PUT", ORG, credentials_body())).status_code == 200

    step(f"seeding {args.registrations} registrations in CRM and ON24")
    event = dataverse.add_row("msevtmgt_events", {"msevtmgt_name": "Benchmark", "msevtmgt_webinarid": str(WEBINAR)})
    missing = walk_ins = 0
    for i in range(args.registrations):
        email = f"teilnehmer.{i}@example.de"
        person = {"firstname": "Jörg", "lastname": f"Müller {i}", "emailaddress1": email}
        contact = dataverse.add_row("contacts", person)
        reg = dataverse.add_row(REGISTRATIONS, {"msevtmgt_eventid": event, "msevtmgt_contactid": contact})
        if i % 100 == 99:
            missing += 1  # never reached ON24 (a dead-lettered register)
            continue
        on24.add_registrant(WEBINAR, email, firstname="Jörg", lastname=f"Müller {i}", exteventusercd=reg)
        if i % 200 == 0:
            walk_ins += 1
            on24.add_registrant(WEBINAR, f"walk.in.{i}@example.se", firstname="Åsa")
    on24.set_limit("registrant_list", LIMIT, window_seconds=window)  # the stand-in refuses beyond the limit

    app = get_app()
    shared = SharedRateLimiter(app.tables.table("syncstate"), ON24_CLIENT_ID, LIMIT, window,
                               hold=DEFAULT_HOLD_SECONDS * args.scale)  # fmt: skip
    calls: list[float] = []

    class Recording(RateLimiter):
        def acquire(self) -> float:
            waited = shared.acquire()
            calls.append(time.monotonic())
            return waited

    ports = replace(app.reconcile_ports(), limiter_for=lambda org: Recording(LIMIT, window))
    on24.reset_log()
    step("reconciling")
    started = time.monotonic()
    result = reconcile.reconcile_webinar(
        ports, ORG, str(WEBINAR), repair=False, actor="benchmark", deadline=time.monotonic() + 1000 * window
    )
    elapsed = time.monotonic() - started
    pages = result.list_calls
    sent = on24.count("GET", "/registrant")
    busiest = max(bisect_left(calls, t + window) - k for k, t in enumerate(calls)) if calls else 0
    ratio = busiest / LIMIT
    least = (pages - 1) // LIMIT * window  # the last call may start only after this many whole windows
    expected = {"missingInOn24": missing, "notOurs": walk_ins, "agreed": args.registrations - missing}
    counts_ok = all(result.counts.get(name) == value for name, value in expected.items())
    print(f"registrations: {args.registrations}; ON24 registrants listed: {args.registrations - missing + walk_ins}")
    print(f"counts: {result.counts}")
    print(f"CRM pages: {result.crm_pages} (events query excluded); ON24 list pages: {pages}; requests sent: {sent}")
    print(f"limit: {LIMIT} list calls per {window:g} s (scale {args.scale:g} of a minute)")
    print(f"most calls in any {window:g} s window: {busiest}; ratio to the limit {ratio:.2f} (at most {RATIO_MAX})")
    print(f"throttled by ON24: {sent - pages}")
    print(f"time: {elapsed:.2f} s for {pages} pages; the least the limit allows: {least:.2f} s")
    ok = counts_ok and sent == pages and busiest <= LIMIT and ratio <= RATIO_MAX and result.crm_pages > 1
    print("[PASS]" if ok else "[FAIL]", "reconcile: 20,000 registrations within ON24's list limit" if ok else "")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registrations", type=int, default=20_000)
    parser.add_argument("--scale", type=float, default=0.1, help="seconds of a window / 60 (1: real time)")
    args = parser.parse_args()
    if args.registrations < 1 or not 0 < args.scale <= 1 or math.isnan(args.scale):
        parser.error("--registrations must be positive and --scale in (0, 1]")
    sys.exit(run_with_cleanup(run, args))


if __name__ == "__main__":
    main()
