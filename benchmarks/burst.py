"""A registration burst against ON24's per-account limit: how close the drain comes to the limit, and what it wastes.

What it does
    ``--registrations`` new registrations of one org (one ON24 account) are delivered by a simulated Service Bus
    queue (``benchmarks.chaos``'s: delivery counts, redelivery on raise, dead-lettering) to ``--workers``
    separate worker processes, ``--threads`` deliveries each. The ON24 stand-in enforces ``--limit`` registrant
    calls per ``--window`` seconds per account, with ON24's 403 "You have reached the maximum number of calls for
    this api". RetryParked runs in this process at the timer's period, time-scaled.

    The clock is scaled, the ratios kept: every deployed duration (the window, lease, waits, timeouts, the
    RetryParked period, the delivery's wait for its slot) is divided by ``60 / --window``. The default, 100
    calls per 6 s, keeps ON24's rate of 1,000 a minute (about 17 calls a second) against workers that each
    deliver far more, as in production; ``--registrations`` / ``--limit`` is the number of windows the burst
    needs (20 by default, like 20,000 registrations at 1,000 a minute).

    The run is done twice, each with its own state, webinars and workers: paced (the app's pacing at its
    default share of the limit, ``ON24_REGISTRANT_CALLS_PER_MINUTE`` 980 of 1,000), then unpaced (pacing set
    far above the limit, so that nothing waits: the code as it was before issue 22).

    It prints, for both: drain time / (registrations / limit per second); ON24 registrant calls refused / made;
    dead-lettered messages; wrong final states (ON24 not holding exactly the registration's registrant, or its
    ledger row not settled); and the targets as [PASS]/[FAIL] for the paced run: drain ratio <= 1.15, refused
    <= 1 %, 0 dead-lettered, 0 wrong.

How to run (from the repository root, after ``bash scripts/bootstrap.sh``):

    .venv/bin/python -m benchmarks.burst [--registrations 2000] [--limit 100] [--window 6] [--workers 4]

Exit status: 0 when the paced run meets every target; 1 otherwise; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from dataclasses import replace as replaced
from datetime import UTC, datetime, timedelta
from multiprocessing.managers import BaseManager
from typing import Any

from benchmarks.chaos import (
    FIRST_WEBINAR,
    ORG,
    ParkedRetries,
    ServiceBusSimulation,
    SoakStandIns,
    Worker,
    build_messages,
    deployed_timing,
    plan_registrations,
    verify,
    worker_main,
)
from benchmarks.common import port_of, run_with_cleanup, stepper, worker_environment

DRAIN_TARGET = 1.15
REFUSED_TARGET = 0.01


class BurstStandIns(SoakStandIns):
    """The chaos soak's stand-ins, plus ON24's registrant limit and its counts."""

    def set_registrant_limit(self, calls: int, window: float) -> None:
        self.on24.set_limit("registrant", calls, "403", window_seconds=window)

    def registrant_counts(self) -> tuple[int, int]:
        return self.on24.throttle_counts("registrant")

    def registrant_times(self) -> list[float]:
        return self.on24.throttle_times("registrant")


class TimerRetries(ParkedRetries):
    """RetryParked as the Functions timer runs it: started every period on the clock (a run still going when the
    next is due delays it), not a period after the previous run ended."""

    def _loop(self) -> None:
        from shared.app import get_app
        from shared.entrypoints.timers import run_retry_parked

        due = time.monotonic() + self._every
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due += self._every
            began = time.monotonic()
            with contextlib.suppress(Exception):  # storage hiccups: the next run tries again, as the timer would
                self.redriven.update(run_retry_parked(get_app()).outcomes)
                self.runs += 1
            self.spans.append((began, time.monotonic()))
            due = max(due, time.monotonic())

    def __init__(self, every: float) -> None:
        super().__init__(every)
        self.spans: list[tuple[float, float]] = []
        """Each run's start and end (``time.monotonic()``)."""


class _Manager(BaseManager):
    pass


_Manager.register("BurstStandIns", BurstStandIns)


@dataclass
class Result:
    label: str
    registrations: int
    drain_seconds: float
    made: int
    refused: int
    dead_lettered: int
    wrong: int
    parked: int
    deliveries: int
    timeline: list[str] = field(default_factory=list)

    def drain_ratio(self, limit: int, window: float) -> float:
        return self.drain_seconds / (self.registrations / (limit / window))

    @property
    def refused_share(self) -> float:
        return self.refused / max(self.made, 1)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.burst", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--registrations", type=int, default=2000, help="new registrations in the burst (2000)")
    add("--limit", type=int, default=100, help="ON24's registrant calls per window, per account (100)")
    add("--window", type=float, default=6.0, help="ON24's window in seconds: the clock scale is 60 / this (6)")
    add("--workers", type=int, default=4, help="worker processes (4)")
    add("--threads", type=int, default=16, help="concurrent deliveries per worker (16)")
    add("--webinars", type=int, default=4, help="ON24 webinars of the account (4)")
    add("--unpaced", action=argparse.BooleanOptionalAction, default=True, help="also run without pacing (yes)")
    add("--drain-cap", type=float, default=4.0, help="stop waiting for parked messages after this x ideal (4)")
    add("--seed", type=int, default=1, help="random seed (1)")
    args = parser.parse_args(argv)
    if min(args.registrations, args.limit, args.workers, args.threads) < 1 or args.window <= 0:
        parser.error("--registrations, --limit, --workers, --threads and --window must be positive")
    args.scale = 60.0 / args.window
    args.timing = deployed_timing().scaled(args.scale)
    # What the chaos soak's plan, messages and queue read: new registrations only, each posted once, canonical.
    args.email_changes = args.moves = args.cancels = args.duplicates = args.dataverse_share = 0.0
    args.concurrency = args.workers * args.threads
    args.max_deliveries = args.timing.max_deliveries
    args.lock_seconds = args.timing.lock
    args.kill_every, args.max_kills = 0.0, 0
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run_with_cleanup(run, parse_args(argv))


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    step = stepper()
    manager = _Manager(ctx=multiprocessing.get_context("fork"))
    manager.start()
    stack.callback(manager.shutdown)
    stand_ins: Any = manager.BurstStandIns()  # type: ignore[attr-defined]
    stack.callback(stand_ins.close)

    from sandbox.azurite import Azurite
    from shared.app import reset_app

    azurite = Azurite(("blob", "table"))
    stack.callback(azurite.stop)
    azurite.start()
    stack.callback(reset_app)
    for name in list(os.environ):
        if name.startswith(("ON24_", "DATAVERSE_", "KEY_VAULT", "CREDENTIALS_KEY", "WEBSITE_", "STATE_")):
            del os.environ[name]
    step(f"{args.registrations} registrations, ON24 allows {args.limit} registrant calls per {args.window:g} s "
         f"(clock / {args.scale:g}); {args.workers} workers x {args.threads}")  # fmt: skip
    from shared.settings import Settings

    share = Settings.model_fields["on24_registrant_calls_per_minute"].default / 1000  # the default's share of ON24's
    runs = [("paced", int(args.limit * share), 0)]
    if args.unpaced:
        runs.append(("unpaced", 100_000, 1))  # the most the setting allows: 1,000 x the limit
    results = [one_run(args, stand_ins, azurite, label, pace, number, step) for label, pace, number in runs]
    return report(args, results)


def one_run(
    args: argparse.Namespace, stand_ins: Any, azurite: Any, label: str, pace: int, number: int, step: Any
) -> Result:
    """One burst with its own table prefix, ON24 account, webinars and worker processes."""
    from sandbox.triggers import http_request
    from shared.app import get_app, reset_app
    from StoreCredentials import main as store_main
    from tests.conftest import ON24_KEY, ON24_SECRET, credentials_body

    client_id = str(40_000 + number)
    vault_url, ca_path = stand_ins.vault_info()
    on24_url, dataverse_url = stand_ins.urls()
    env = worker_environment(
        azurite.connection_string, vault_url, ca_path, on24_url, dataverse_url, **args.timing.settings(),
        ON24_REGISTRANT_CALLS_PER_MINUTE=str(pace), ON24_PACE_WINDOW_SECONDS=f"{args.window:g}",
        REGISTRATION_PACE_WAIT_SECONDS=f"{10.0 / args.scale:g}",
    )  # fmt: skip
    os.environ.update(env)
    reset_app()
    rng = random.Random(args.seed + number)
    first = FIRST_WEBINAR + 1000 * (number + 1)
    args.webinar_ids = [first + n for n in range(args.webinars)]
    registrations = plan_registrations(args, rng, datetime.now(UTC) - timedelta(days=1))
    for registration in registrations:  # the plan spreads over FIRST_WEBINAR + n: this run's webinars instead
        registration.changes = [replaced(c, webinar=c.webinar - FIRST_WEBINAR + first) for c in registration.changes]
    seed_rows = [{"registration_id": r.registration_id, "email": r.final.email, "webinar": r.final.webinar,
                  "cancelled": False} for r in registrations]  # fmt: skip
    events = {int(k): v for k, v in stand_ins.seed((client_id, ON24_KEY, ON24_SECRET), args.webinar_ids,
                                                   seed_rows).items()}  # fmt: skip
    for registration in registrations:
        registration.crm_event_ids = events
    stand_ins.own_dataverse(ORG)
    response = store_main(http_request("PUT", ORG, credentials_body(clientId=client_id)))
    if response.status_code != 200:
        raise RuntimeError(f"StoreCredentials answered {response.status_code}")
    messages = build_messages(registrations, ORG, args, rng)
    spawn_context = multiprocessing.get_context("spawn")
    on24_port = port_of(on24_url)

    def spawn() -> Worker:
        parent, child = spawn_context.Pipe()
        process = spawn_context.Process(
            target=worker_main, args=(child, env, args.threads, on24_port, 0.0, args.seed), daemon=True
        )
        process.start()
        child.close()
        return Worker(process, parent)

    bus = ServiceBusSimulation(messages, args, spawn, rng)
    bus.start_workers()
    retrying = TimerRetries(args.timing.retry_parked_every)
    try:
        stand_ins.set_registrant_limit(args.limit, args.window)
        step(f"{label}: delivering {len(messages)} messages")
        started = time.monotonic()
        retrying.start()
        bus.run(step)
        delivered = time.monotonic()
        cap = started + args.drain_cap * args.registrations / (args.limit / args.window)
        while get_app().parked.org_ids() and time.monotonic() < cap:  # parked messages end the drain too
            time.sleep(0.1)
        if get_app().parked.org_ids():
            step(f"{label}: still parked after {args.drain_cap:g} x the ideal drain time: stopped there")
        drained = time.monotonic() - started
    finally:
        retrying.stop()
        bus.stop()
    made, refused = stand_ins.registrant_counts()
    times = [t - started for t in stand_ins.registrant_times()]
    spans = [(a - started, b - started) for a, b in retrying.spans]
    budget = args.timing.retry_parked_budget
    timeline = describe_timeline(times, spans, delivered - started, drained, args.window, budget)
    verdict = verify(registrations, stand_ins.registrants(args.webinar_ids), stand_ins.crm_registration_ids(),
                     get_app().ledger, ORG)  # fmt: skip
    wrong = len(verdict.wrong) + len(verdict.ledger_unsettled) + verdict.orphans
    step(f"{label}: drained in {drained:.1f} s, {refused} of {made + refused} registrant calls refused")
    return Result(label, len(registrations), drained, made + refused, refused, len(bus.stats.dead_lettered), wrong,
                  sum(retrying.redriven.values()), bus.stats.deliveries, timeline)  # fmt: skip


def describe_timeline(
    times: list[float], spans: list[tuple[float, float]], delivered: float, drained: float, window: float, budget: float
) -> list[str]:
    """Where the drain's time went: ON24 registrant calls let through per window, idle windows, RetryParked's runs."""
    windows = max(1, int(drained // window) + 1)
    per = [0] * windows
    for t in times:
        per[min(windows - 1, max(0, int(t // window)))] += 1
    lines = [f"queue delivered (each message done or parked) at {delivered:.1f} s; last ON24 call at "
             f"{max(times, default=0.0):.1f} s; drain ended at {drained:.1f} s"]  # fmt: skip
    lines.append(f"calls let through per {window:g} s window: {' '.join(str(n) for n in per)}")
    idle = sum(1 for n in per[:-1] if n == 0)
    lines.append(f"idle windows (no call) before the last: {idle}")
    if spans:
        lengths = sorted(b - a for a, b in spans)
        at_budget = sum(1 for n in lengths if n >= 0.95 * budget)
        lines.append(f"RetryParked runs: {len(spans)}, length min {lengths[0]:.2f} s, median "
                     f"{lengths[len(lengths) // 2]:.2f} s, max {lengths[-1]:.2f} s; {at_budget} used their "
                     f"{budget:g} s budget")  # fmt: skip
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    if gaps:
        lines.append(f"gaps between calls: longest {gaps[-1]:.2f} s, 2nd {gaps[-2] if len(gaps) > 1 else 0:.2f} s")
    return lines


def report(args: argparse.Namespace, results: list[Result]) -> int:
    ideal = args.registrations / (args.limit / args.window)
    print()
    print("RegisterAttendee burst against ON24's registrant limit (one account)")
    print(f"  ON24 limit .................. {args.limit} registrant calls per {args.window:g} s per account "
          f"(1,000 a minute on the clock / {args.scale:g}); 403 'maximum number of calls' past it")  # fmt: skip
    print(f"  burst ....................... {args.registrations} new registrations, {args.workers} worker "
          f"processes x {args.threads} deliveries; ideal drain {ideal:.1f} s")  # fmt: skip
    print(f"  {'':28}{''.join(f'{r.label:>14}' for r in results)}")
    rows = [
        ("drain time (s)", [f"{r.drain_seconds:.1f}" for r in results]),
        ("drain / (regs / limit)", [f"{r.drain_ratio(args.limit, args.window):.3f}" for r in results]),
        ("ON24 calls made", [str(r.made) for r in results]),
        ("refused / made", [f"{r.refused_share:.2%}" for r in results]),
        ("deliveries", [str(r.deliveries) for r in results]),
        ("parked, re-driven", [str(r.parked) for r in results]),
        ("dead-lettered", [str(r.dead_lettered) for r in results]),
        ("wrong final states", [str(r.wrong) for r in results]),
    ]
    for name, values in rows:
        print(f"  {name:28}{''.join(f'{v:>14}' for v in values)}")
    for result in results:
        print(f"  timeline, {result.label}:")
        for line in result.timeline:
            print(f"    {line}")
    paced = results[0]
    checks = [
        (f"drain ratio {paced.drain_ratio(args.limit, args.window):.3f} <= {DRAIN_TARGET}",
         paced.drain_ratio(args.limit, args.window) <= DRAIN_TARGET),
        (f"refused {paced.refused_share:.2%} <= {REFUSED_TARGET:.0%}", paced.refused_share <= REFUSED_TARGET),
        (f"dead-lettered {paced.dead_lettered} == 0", paced.dead_lettered == 0),
        (f"wrong final states {paced.wrong} == 0", paced.wrong == 0),
    ]  # fmt: skip
    print("  targets (paced run):")
    for text, ok in checks:
        print(f"    [{'PASS' if ok else 'FAIL'}] {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
