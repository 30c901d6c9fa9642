"""PullMetrics' steady path (``python -m benchmarks.pull_metrics --scenario steady``): a big org, one change.

One org whose ledger partition holds ``--ledger-rows`` rows (500,000 by default) over ``--webinars`` webinars
(100), written two hours ago: the ON24 attendees' rows and the org's history, seeded in entity-group transactions of
100, four in flight (``benchmarks/seeding.py``, ~130 s for 500,000 rows; ``submit_transaction`` took 501 s). Timer
runs sync every webinar (discovery, match indexes, the count tally and the reconciliation backfill read the
partition in full: the first sync). Then one registration of one webinar is cancelled, and the next timer run,
its health pass and one status call are measured: the ledger rows they read (Table entities, counted as the SDK
yields them) and query pages against the partition's size, the wall time, and the ledger queries by the product
function that asked, with the seconds until each one's last row came (a query that filters the org's partition on
non-key columns makes the service scan that partition).

Targets ([PASS]/[FAIL]): that run reads <= 1 % of the partition and finishes in <= 10 s. The naive baseline is
what the steady path did before (discovery and the health count re-read the whole partition whenever anything
changed): it is measured on the same partition and printed as a ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

STEADY_READ_SHARE, STEADY_WALL_S = 0.01, 10.0
FIRST_SYNC_RUNS = 5


class EntityCount:
    """Entities each Table query yields and the pages it fetched, per table (wrapping the SDK's query)."""

    def __init__(self) -> None:
        self.entities: Counter[str] = Counter()
        self.queries: Counter[str] = Counter()
        self.askers: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.seconds: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
        """Per table, the queries by the product function that asked (the nearest outside ``shared/store``)."""
        self.lock = threading.Lock()

    def reset(self) -> None:
        with self.lock:
            self.entities.clear()
            self.queries.clear()
            self.askers.clear()
            self.seconds.clear()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from azure.data.tables import TableClient

        original = TableClient.query_entities
        counter = self

        def query_entities(self: TableClient, *args: Any, **kwargs: Any) -> Any:
            name = self.table_name
            stack = reversed(traceback.extract_stack()[:-1])
            asker = next((f"{Path(frame.filename).stem}.{frame.name}" for frame in stack
                          if "/shared/" in frame.filename and "/shared/store/" not in frame.filename), "?")  # fmt: skip
            with counter.lock:
                counter.queries[name] += 1
                counter.askers[name][asker] += 1

            def counted() -> Iterator[Any]:
                started = time.perf_counter()
                try:
                    for entity in original(self, *args, **kwargs):
                        with counter.lock:
                            counter.entities[name] += 1
                        yield entity
                finally:
                    with counter.lock:
                        counter.seconds[name][asker] += time.perf_counter() - started

            return counted()

        TableClient.query_entities = query_entities  # type: ignore[method-assign]
        try:
            yield
        finally:
            TableClient.query_entities = original  # type: ignore[method-assign]


def seed_filler(connection_string: str, table_name: str, org_id: str, webinars: list[int], rows: int,
                written: datetime) -> float:
    """``rows`` registered ledger rows over ``webinars`` (no ON24 attendee: the org's history), written 2 h ago, in
    entity-group transactions of 100, four at a time (``benchmarks.seeding``: ~5,000 rows/s, Azurite's pace)."""
    from benchmarks.seeding import insert_rows
    from shared.store.ledger import LedgerEntry

    people = (("jörg.müller", "beispiel.de"), ("åsa.ødegård", "eksempel.no"), ("иван.петров", "пример.рф"))
    started = time.perf_counter()

    def history() -> Iterator[dict[str, Any]]:
        for i in range(rows):
            name, domain = people[i % len(people)]
            yield LedgerEntry(org_id=org_id, registration_id=f"hist-{i:07d}", state="registered",
                              webinar_id=str(webinars[i % len(webinars)]), registrant_id=str(10_000_000 + i),
                              email=f"{name}.{i}@{domain}", crm_event_id=None, last_outcome="registered",
                              crm_settled=True, updated_at=written).to_entity()  # fmt: skip

    insert_rows(connection_string, table_name, history(), threads=4)
    return time.perf_counter() - started


def run_steady(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    from benchmarks.common import stepper
    from benchmarks.pull_metrics import _start
    from benchmarks.seeding import insert_rows

    step = stepper()
    parts = _start(stack, "WARNING", ON24_ATTENDEE_CALLS_PER_MINUTE="100000", PULL_METRICS_BUDGET_SECONDS="600",
                   AzureFunctionsJobHost__functionTimeout="-1")  # fmt: skip
    stand_ins, azurite, env = parts.stand_ins, parts.azurite, parts.env
    os.environ.update(env)

    from azure.functions.timer import TimerRequest

    from PullMetrics import main as pull_main
    from sandbox.triggers import http_request
    from shared.app import get_app, reset_app
    from shared.health.counting import COUNT_COLUMNS, count_registrations
    from shared.store.ledger import LedgerEntry
    from StoreCredentials import main as store_main
    from WebinarStatus import main as status_main

    reset_app()
    seeded = stand_ins.seed_orgs(1, args.webinars, args.org_attendees)[0]
    org_id = "5e1d0a77-0b5e-4c00-8000-000000000001"
    body = {"clientId": seeded["client"], "accessTokenKey": seeded["key"], "accessTokenSecret": seeded["secret"],
            "dataverseUrl": stand_ins.dataverse_url_for(org_id)}  # fmt: skip
    response = store_main(http_request("PUT", org_id, body))
    if response.status_code != 200:
        raise RuntimeError(f"StoreCredentials answered {response.status_code}: {response.get_body()[:300]!r}")
    app = get_app()
    ledger_table = env["STATE_TABLE_PREFIX"] + "ledger"
    app.tables.table("ledger")
    written = datetime.now(UTC) - timedelta(hours=2)
    registered = [
        LedgerEntry(org_id=org_id, registration_id=registration, state="registered", webinar_id=str(webinar),
                    registrant_id=str(registrant_id), email=email, crm_event_id=crm_event, last_message_at=written,
                    last_outcome="registered", crm_settled=True, updated_at=written).to_entity()
        for webinar, crm_event, people in seeded["webinars"]
        for registration, registrant_id, email in people
    ]  # fmt: skip
    insert_rows(azurite.connection_string, ledger_table, registered)  # the attendees' rows, dated like the history
    attendees = len(registered)
    filler = max(0, args.ledger_rows - attendees)
    webinars = [w for w, _, _ in seeded["webinars"]]
    seconds = seed_filler(azurite.connection_string, ledger_table, org_id, webinars, filler, written)
    partition = attendees + filler
    sample = app.ledger.get(org_id, "hist-0000001") if filler > 1 else None
    if filler > 1 and (sample is None or sample.webinar_id != str(webinars[1]) or sample.updated_at is None
                       or abs((sample.updated_at - written).total_seconds()) >= 1):  # fmt: skip
        raise RuntimeError(f"a seeded ledger row reads back wrong: {sample}")
    step(f"seeded {partition} ledger rows over {args.webinars} webinars ({seconds:.0f} s for the history)")

    counter = EntityCount()
    stack.enter_context(counter.installed())

    split: dict[str, float] = {}

    def timer_run() -> tuple[float, int, int]:
        counter.reset()
        started = time.perf_counter()
        pull_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))
        split["timer run"] = time.perf_counter() - started
        status = status_main(http_request("GET", org_id))
        split["status call"] = time.perf_counter() - started - split["timer run"]
        assert status.status_code == 200, status.get_body()[:300]
        return time.perf_counter() - started, counter.entities[ledger_table], counter.queries[ledger_table]

    first, first_runs, synced = (0.0, 0, 0), 0, 0
    while synced < args.webinars and first_runs < FIRST_SYNC_RUNS:  # the budget may cut a first sync into runs
        run = timer_run()
        first, first_runs = (first[0] + run[0], first[1] + run[1], first[2] + run[2]), first_runs + 1
        synced = sum(1 for s in app.sync_state.list(org_id) if s.status == "ok" and s.pending_end is None)
        step(f"first sync, timer run {first_runs}: {run[0]:.1f} s, {run[1]} ledger rows read, "
             f"{synced}/{args.webinars} webinars synced")  # fmt: skip

    changed_reg = seeded["webinars"][0][2][0][0]
    current = app.ledger.get(org_id, changed_reg)
    assert current is not None
    assert app.ledger.write(replace(current, state="cancelled", last_outcome="cancelled")) is not None
    profile_lines: list[str] = []
    if args.profile:
        from benchmarks.sampler import StackSampler, process_cpu_seconds

        pid = azurite._process.pid if azurite._process is not None else 0
        cpu_before, server_before = process_cpu_seconds(pid), stand_ins.server_seconds()
        with StackSampler() as sampler:
            steady = timer_run()
        server = {k: v - server_before.get(k, 0.0) for k, v in stand_ins.server_seconds().items()}
        profile_lines = [f"  timer run {split['timer run']:.2f} s, status call {split['status call']:.2f} s; Azurite "
                         f"CPU {process_cpu_seconds(pid) - cpu_before:.2f} s; stand-in handlers "
                         + ", ".join(f"{k} {v:.2f} s" for k, v in server.items()),
                         "  Table queries of the run, all tables: "
                         + ", ".join(f"{t} {n} ({counter.entities[t]} rows)" for t, n in counter.queries.items()),
                         *sampler.report()]  # fmt: skip
    else:
        steady = timer_run()
    steady_askers = dict(counter.askers[ledger_table])
    steady_seconds = dict(counter.seconds[ledger_table])
    health = app.health.get(org_id)
    totals = health.registrations.totals if health and health.registrations else {}
    step(f"steady run: {steady[0]:.1f} s, {steady[1]} ledger rows read in {steady[2]} queries")

    # The naive baseline: the steady path as it was (discovery and the health count read the whole partition).
    counter.reset()
    started = time.perf_counter()
    app.ledger.webinars_touched_since(org_id, None)
    naive_counts = count_registrations(app.ledger.entries(org_id, columns=COUNT_COLUMNS), datetime.now(UTC))
    naive_wall, naive_rows = time.perf_counter() - started, counter.entities[ledger_table]

    problems = []
    if totals != naive_counts.totals:
        problems.append(f"the kept counts {totals} differ from a full recount {naive_counts.totals}")
    if synced != args.webinars:
        problems.append(f"{synced}/{args.webinars} webinars synced by {first_runs} timer runs")
    load = os.getloadavg()
    share = steady[1] / partition
    print()
    print(f"PullMetrics steady path: one org, {partition} ledger rows over {args.webinars} webinars "
          f"({args.org_attendees} ON24 attendees each), one registration cancelled; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    print(f"{'run':<44}{'wall s':>8}{'ledger rows read':>18}{'queries':>9}")
    label = f"first sync ({first_runs} timer run(s) + status calls)"
    print(f"{label:<44}{first[0]:8.1f}{first[1]:18d}{first[2]:9d}")
    print(f"{'one change (timer run + status call)':<44}{steady[0]:8.1f}{steady[1]:18d}{steady[2]:9d}")
    print(f"{'naive steady path (discovery + recount only)':<44}{naive_wall:8.1f}{naive_rows:18d}{2:9d}")
    print("ledger-table queries of the changed run by who asked: count (seconds until the last row came; a filter "
          "on non-key columns of the org's partition makes the service scan it):")
    print("  " + ", ".join(f"{asker} {n} ({steady_seconds.get(asker, 0.0):.1f} s)"
                           for asker, n in sorted(steady_askers.items(), key=lambda item: -item[1])))  # fmt: skip
    print(f"ratio steady/naive: rows read {steady[1] / max(1, naive_rows):.6f}, wall {steady[0] / naive_wall:.3f} "
          "(the steady run also pulls every due webinar from ON24; the naive figure is its two reads only)")
    print(f"{'[PASS]' if share <= STEADY_READ_SHARE else '[FAIL]'} the changed run reads {share:.4%} of the "
          f"partition (target <= {STEADY_READ_SHARE:.0%})")
    print(f"{'[PASS]' if steady[0] <= STEADY_WALL_S else '[FAIL]'} the changed run takes {steady[0]:.1f} s "
          f"(target <= {STEADY_WALL_S:g} s)")
    if profile_lines:
        print("profile of the changed run (--profile):")
        print("\n".join(profile_lines))
    print("correctness: " + ("FAILED\n  - " + "\n  - ".join(problems) if problems else "OK"))
    return 1 if problems else 0
