"""Benchmark of the PullMetrics timer function: one ON24 webinar of 100,000 attendees synced into CRM check-ins.

What it measures
    ``PullMetrics.main`` (the timer entry point, fed an ``azure.functions`` ``TimerRequest``) against real parts
    on 127.0.0.1: Azurite (Table Storage: org credentials, the registration ledger, per-webinar sync state), the
    HTTPS Key Vault stand-in (throwaway CA), and the ON24 and Dataverse stand-ins. The worker environment is the
    one ``tests/conftest.py`` ``app_env`` builds, plus ``ON24_ATTENDEE_CALLS_PER_MINUTE`` raised (see below) and
    ``PULL_METRICS_BUDGET_SECONDS`` large enough for one timer run to finish the webinar.

    Three runs of one webinar with ``--attendees`` attendees (default 100,000 = 1,000 ON24 pages of 100):

    (a) first full sync: every attendee becomes one check-in (``$batch`` upserts of 1,000 rows, four in flight);
        the webinar's match index is built from its 100,000 ledger rows and saved (one blob);
    (b) the same again with nothing changed in ON24: the index is refreshed with the ledger rows written since
        (none), every page's fingerprint matches, so no page is parsed and zero Dataverse writes are made;
    (c) 1% of the attendees watched the recording too (their minutes grew): exactly those rows are written.

    Then the naive baseline (``benchmarks/naive_pull.py``: one PATCH per check-in, no change detection) pulls the
    first ``--baseline-pages`` pages of the same webinar twice (first sync, nothing changed), in this process
    against the same stand-ins; its figures are scaled to the whole webinar (its cost is linear in attendees) and
    printed beside (a) and (b) with ratios, under the targets: (b) at most 10 s wall and 3 s CPU, (a) at most
    60 s wall and 250 MiB peak RSS (PASS/FAIL; not enforced).

    The reconciliation step of the timer (``shared.reconcile``) runs after the pull in (a): storing the credentials
    switched the integration on, so a backfill reconciles the open webinar (reads CRM's registrations, ON24's
    registrant list and the ledger, and finds every registration agreed: nothing to repair). "First sync" is the
    pull until the webinar is complete (with the health pass); the step is timed apart (a wrapper around
    ``shared.entrypoints.timers.run_reconciliations``) and printed on its own line beside it: wall, CPU, peak RSS,
    ON24/Dataverse/Table calls, the classes found and the repairs. A correctness check fails if it found drift.

    Per run it prints wall time, CPU time of this process, peak Python heap (``tracemalloc`` peak while the run
    was traced) and peak RSS of this process during the run (``resource.getrusage`` ``ru_maxrss``, reset before
    each run through ``/proc/self/clear_refs`` where Linux allows it, else the process high-water mark), the
    Dataverse requests (``$batch`` and others) and writes, the ON24 requests, and the Table Storage calls (queries,
    entity-group transactions, single-entity calls). ON24 and Dataverse figures come from the stand-ins' request
    logs; Table Storage calls from a counter wrapped around ``HttpClientTransport.send`` (the Table transport,
    ``shared/store/transport.py``) by this script (production code is not touched). Time spent waiting on each
    service is the sum over threads of the wrapped transports' wall time (Dataverse batches run four in
    parallel, so that sum can exceed the run's wall time).

With a field mapping (``--mapping beside``, the default)
    After those passes, (a)-(c) run once more on fresh state for an org whose field mapping (issue 21) writes 5
    extra columns (3 on the check-in, 2 on the registration, defined on the Dataverse stand-in and checked against
    its metadata when the credentials are stored); their figures (``$batch`` and other Dataverse requests, row
    writes, ON24 and Table Storage calls, wall and CPU) are printed beside those without a mapping, and sampled
    rows' mapped columns are verified. ``--mapping off`` skips it.

Set-up (not measured)
    * The world production holds after RegisterAttendee (``StandIns.registrant``): each person is a CRM contact
      (names from Germany, the Nordics, Russia) and a registration of the webinar's event, and an ON24 registrant
      carrying the registration id (``exteventusercd``); then their attendance (``set_attendee``). ON24: one
      account and one webinar that went live three hours ago; default paging (``"zero"``, 100 a page). A
      check-in's ``msevtmgt_RegistrationId@odata.bind`` points at the existing registration.
    * Ledger: one ``registered`` row per registration (``On24EventId``, ``EventUserId``, ``Email``,
      ``CrmEventId``), built with ``LedgerEntry.to_entity`` and written directly in entity-group transactions of
      100, four in flight (``benchmarks/seeding.py``). Pushing 100,000 messages through RegisterAttendee is what
      ``benchmarks/register_attendee.py`` measures.
    * Org credentials: ``StoreCredentials.main`` with a ``func.HttpRequest`` (this also builds the App and warms it).

    The ON24 and Dataverse stand-ins live in a separate process (a ``multiprocessing`` manager), as the real
    services are remote: their CPU, GIL and memory (100,000 attendees, registrations and check-ins) would otherwise
    count against the function. Log records are emitted at INFO and formatted into a discarding handler, as the
    Functions worker ships every record to the host.

ON24's rate limit
    Production paces attendee-list calls at 100 per minute (``ON24_ATTENDEE_CALLS_PER_MINUTE``), so 1,000 pages
    take at least ten minutes; the run budget (``PULL_METRICS_BUDGET_SECONDS``, 240 s) makes a run stop and record
    the next page, and the following timer runs resume. The benchmark raises the limit (``--calls-per-minute``,
    100,000) to measure the code rather than the pacing, and prints how many timer runs the production settings
    would need, simulated with the real ``RateLimiter`` on a virtual clock and the per-page cost measured in (a).

Many orgs (``--scenario orgs``)
    ``--orgs`` orgs (50), each its own ON24 account, with ``--webinars`` webinars (4) of ``--org-attendees``
    attendees (50); the ledger rows are seeded directly, the credentials through ``StoreCredentials.main``. Timer
    runs use the production budget and ON24 pacing, with ``--on24-latency-ms``/``--dataverse-latency-ms`` (100)
    added to every stand-in request, until every webinar is synced; then one more run with nothing changed.
    Prints wall and CPU time, webinars synced, and ON24, Dataverse and Table Storage calls per timer run.

One change in a big org (``--scenario steady``, ``benchmarks/pull_steady.py``)
    One org of ``--ledger-rows`` ledger rows (500,000) over ``--webinars`` webinars (use 100), one registration
    cancelled after the first sync: the next timer run (with its health pass and a status call) must read <= 1 %
    of the partition and take <= 10 s ([PASS]/[FAIL]), beside the naive full-partition steady path.

How to run (from the repository root; needs ``npm ci`` done for Azurite):

    .venv/bin/python -m benchmarks.pull_metrics [--attendees 100000] [--changed-ratio 0.01] [--profile]
    .venv/bin/python -m benchmarks.pull_metrics --scenario orgs [--orgs 50] [--webinars 4] [--org-attendees 50]
    .venv/bin/python -m benchmarks.pull_metrics --scenario steady --webinars 100 [--ledger-rows 500000]

    ``--profile`` runs every phase under cProfile (this process' main thread, and the stand-ins' request handlers)
    and prints the hot spots; wall times are then inflated, so use it on a smaller run (``--attendees 20000``).

Exit status: 0 when correct, 1 when a correctness check fails, 130 on Ctrl-C. Azurite, the Key Vault stand-in and
the stand-ins' process are stopped on every exit path (Ctrl-C and SIGTERM included).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import logging
import math
import multiprocessing
import os
import platform
import pstats
import random
import re
import resource
import sys
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.common import (
    ROOT,
    Parts,
    StandInServers,
    port_of,
    run_with_cleanup,
    start_parts,
    stepper,
)

ORG = "3c9e1b7a-5d2f-4a8e-9b61-0f4d2c8a7e15"
WEBINAR = 880101
CHECKINS = "msevtmgt_checkins"
REGISTRATIONS = "msevtmgt_eventregistrations"
REGISTRATION_NAMESPACE = uuid.UUID("0b1e8c55-2f4d-4a3b-8e7f-6c5d4b3a2f10")
TRANSACTION_SIZE = 100  # Table Storage's limit of operations per entity-group transaction
PRODUCTION_CALLS_PER_MINUTE = 100
PRODUCTION_BUDGET_SECONDS = 240.0
PRODUCTION_SCHEDULE_MINUTES = 15  # shared.settings.DEFAULT_SCHEDULE "0 */15 * * * *"
MAX_TIMER_RUNS = 20
SLOW_SECONDS = 180.0
LARGE_RSS_BYTES = 500 * 1024 * 1024
MIB = 1024 * 1024
UNCHANGED_WALL_TARGET_S, UNCHANGED_CPU_TARGET_S = 10.0, 3.0  # an unchanged re-run of the webinar
FIRST_WALL_TARGET_S, FIRST_RSS_TARGET_BYTES = 60.0, 250 * MIB  # a first full sync
PEOPLE = (("Jörg", "Müller"), ("Åsa", "Ødegård"), ("Иван", "Петров"), ("Mikko", "Häkkinen"))


# ---- the attendees ---------------------------------------------------------------------------------------------
def registration_id(index: int) -> str:
    """The CRM registration id of attendee ``index`` (deterministic, so nothing has to be kept in memory)."""
    return str(uuid.uuid5(REGISTRATION_NAMESPACE, f"registration-{index}"))


def email_of(index: int) -> str:
    return f"attendee{index:06d}@fabrikam.example"


def live_minutes(index: int) -> int:
    return 1 + (index * 7919) % 60


def archive_minutes(index: int) -> int:
    return 5 + index % 20


def interactions(index: int) -> int:
    return index % 4 + (index // 4) % 3  # questions asked + polls answered


def expected_minutes(index: int, grown: bool) -> int:
    return live_minutes(index) + (archive_minutes(index) if grown else 0)


# ---- the stand-ins' process ----------------------------------------------------------------------------------
BENCH_MAPPING: dict[str, Any] = {
    "toCrm": [
        {"value": "liveMinutes", "table": "msevtmgt_checkin", "column": "new_liveminutes"},
        {"value": "onDemandMinutes", "table": "msevtmgt_checkin", "column": "new_ondemandminutes"},
        {"value": "attendanceStatus", "table": "msevtmgt_checkin", "column": "new_attendancestatus"},
        {"value": "engagementScore", "table": "msevtmgt_eventregistration", "column": "new_engagementscore"},
        {"value": "lastActivity", "table": "msevtmgt_eventregistration", "column": "new_lastactivity"},
    ]
}
"""The ``--mapping`` pass: an org field mapping of 5 extra columns, 3 on the check-in and 2 on the registration."""
BENCH_COLUMNS = (
    ("msevtmgt_checkins", "new_liveminutes", "int"), ("msevtmgt_checkins", "new_ondemandminutes", "int"),
    ("msevtmgt_checkins", "new_attendancestatus", "string"),
    ("msevtmgt_eventregistrations", "new_engagementscore", "decimal"),
    ("msevtmgt_eventregistrations", "new_lastactivity", "datetime"),
)  # fmt: skip


class StandIns(StandInServers):
    """The stand-ins with what this benchmark seeds, times and inspects; called through a manager proxy."""

    def __init__(self) -> None:
        super().__init__()
        self.live_start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        self._profiler: cProfile.Profile | None = None
        self._profile_lock = threading.Lock()
        self._server_seconds: Counter[str] = Counter()

    def registrant(self, webinar: int, crm_event: str, registration: str, email: str, name: str, n: int) -> None:
        """One person as production holds them after RegisterAttendee: a CRM contact and registration, and an ON24
        registrant carrying the registration id (``exteventusercd``), so a reconciliation finds them agreed."""
        first, last = PEOPLE[n % len(PEOPLE)]
        contact = self.dataverse.add_row("contacts", {"firstname": first, "lastname": f"{last} {n}",
                                                      "emailaddress1": email})  # fmt: skip
        self.dataverse.add_row(
            REGISTRATIONS,
            {"msevtmgt_eventregistrationid": registration, "msevtmgt_name": name, "msevtmgt_eventid": crm_event,
             "msevtmgt_contactid": contact, "msevtmgt_iscanceled": False, "statecode": 0},
        )
        self.on24.add_registrant(webinar, email, firstname=first, lastname=f"{last} {n}", exteventusercd=registration)

    def seed(self, count: int, client_id: str, key: str, secret: str) -> tuple[str, list[int]]:
        """The webinar and ``count`` attendees in ON24, the CRM event and ``count`` registrations in Dataverse.

        Returns:
            The CRM event id and each attendee's ON24 ``eventuserid`` (by attendee index).
        """
        live = self.live_start
        self.on24.add_client(client_id, key, secret)
        self.on24.add_event(client_id, WEBINAR, title="Quarterly product webinar", livestart=live,
                            liveend=live + timedelta(hours=1))
        crm_event_id = self.dataverse.add_row(
            "msevtmgt_events",
            {"msevtmgt_name": "Quarterly product webinar", "msevtmgt_webinarid": str(WEBINAR),
             "msevtmgt_eventformat": 100000002},
        )
        event_user_ids: list[int] = []
        for index in range(count):
            registration = registration_id(index)
            self.registrant(WEBINAR, crm_event_id, registration, email_of(index), f"REG-{index:06d}", index)
            first = live + timedelta(seconds=index % 600)
            row = self.on24.set_attendee(
                WEBINAR,
                email_of(index),
                liveminutes=live_minutes(index),
                liveviewed=1,
                firstliveactivity=first,
                lastliveactivity=first + timedelta(minutes=live_minutes(index)),
                askedquestions=index % 4,
                answeredpolls=(index // 4) % 3,
                engagementscore=round(1 + (index % 90) / 10, 1),
            )
            event_user_ids.append(int(row["eventuserid"]))
        return crm_event_id, event_user_ids

    def seed_orgs(self, orgs: int, webinars: int, attendees: int) -> list[dict[str, Any]]:
        """``orgs`` ON24 accounts with ``webinars`` webinars of ``attendees`` attendees each, and their CRM rows.

        Returns:
            Per org: ``client``, ``key``, ``secret``, ``webinars`` = [(webinar, crm event id, [(registration id,
            eventuserid, email)])].
        """
        live = self.live_start
        seeded: list[dict[str, Any]] = []
        for n in range(orgs):
            client = str(70_000 + n)
            key, secret = f"key-{client}", f"Secret-{client}-bench"
            self.on24.add_client(client, key, secret)
            entry: dict[str, Any] = {"client": client, "key": key, "secret": secret, "webinars": []}
            for w in range(webinars):
                webinar = 900_000 + n * 100 + w
                self.on24.add_event(client, webinar, livestart=live, liveend=live + timedelta(hours=1))
                crm_event = self.dataverse.add_row(
                    "msevtmgt_events", {"msevtmgt_name": f"Webinar {webinar}", "msevtmgt_webinarid": str(webinar)}
                )
                people = []
                for a in range(attendees):
                    registration = str(uuid.uuid5(REGISTRATION_NAMESPACE, f"org{n}-webinar{w}-{a}"))
                    email = f"a{a}.w{w}@org{n}.example"
                    self.registrant(webinar, crm_event, registration, email, f"REG-{n}-{w}-{a}", a)
                    row = self.on24.set_attendee(
                        webinar, email, liveminutes=1 + a % 50,
                        firstliveactivity=live + timedelta(minutes=1),
                        lastliveactivity=live + timedelta(minutes=2 + a % 50),
                    )
                    people.append((registration, int(row["eventuserid"]), email))
                entry["webinars"].append((webinar, crm_event, people))
            seeded.append(entry)
        return seeded

    def set_latency(self, on24_seconds: float, dataverse_seconds: float) -> None:
        self.on24.latency = on24_seconds
        self.dataverse.latency = dataverse_seconds

    def grow(self, indices: Sequence[int]) -> None:
        """These attendees watched the recording too: archive minutes and activity are added."""
        opened = self.live_start + timedelta(hours=1, minutes=20)
        for index in indices:
            self.on24.set_attendee(
                WEBINAR,
                email_of(index),
                archiveminutes=archive_minutes(index),
                archiveviewed=1,
                firstarchiveactivity=opened,
                lastarchiveactivity=opened + timedelta(minutes=archive_minutes(index)),
            )

    def add_mapping_columns(self) -> None:
        """The org's own columns ``BENCH_MAPPING`` writes (served by the stand-in's metadata API, type-checked)."""
        from sandbox.dataverse import Column

        for entity_set, name, kind in BENCH_COLUMNS:
            self.dataverse.add_column(entity_set, name, Column(kind, max_length=20 if kind == "string" else None))

    def mapped_values(self, registration_ids: Sequence[str], org_id: str) -> dict[str, dict[str, Any]]:
        """The mapped columns of each registration's check-in and registration row, as stored."""
        from shared.crm import checkin_id

        found: dict[str, dict[str, Any]] = {}
        for registration in registration_ids:
            checkin = self.dataverse.row(CHECKINS, checkin_id(org_id, registration)) or {}
            reg = self.dataverse.row(REGISTRATIONS, registration) or {}
            found[registration] = {name: (checkin if entity_set == CHECKINS else reg).get(name)
                                   for entity_set, name, _ in BENCH_COLUMNS}  # fmt: skip
        return found

    def reset_for_second_pass(self, grown: Sequence[int]) -> None:
        """Back to the state before run (a): no check-ins, and the grown attendees without their archive viewing.

        The stand-ins have no public control to remove a value, so this edits their tables directly (benchmark
        only): check-ins are dropped and the archive keys ``grow`` added are deleted from the attendee metrics.
        """
        with self.dataverse._data_lock:
            self.dataverse._tables[CHECKINS].clear()
        with self.on24._state:
            event = self.on24._events[WEBINAR]
            for index in grown:
                metrics = event.attendees[email_of(index)]
                for key in ("archiveminutes", "archiveviewed", "firstarchiveactivity", "lastarchiveactivity"):
                    metrics.pop(key, None)
            event.touch()

    def checkins(self, registration_ids: Sequence[str], org_id: str) -> dict[str, dict[str, Any] | None]:
        """The stored check-in of each registration (by the id PullMetrics derives), or None."""
        from shared.crm import checkin_id

        found: dict[str, dict[str, Any] | None] = {}
        for registration in registration_ids:
            row = self.dataverse.row(CHECKINS, checkin_id(org_id, registration))
            found[registration] = None if row is None else {
                key: row.get(key)
                for key in ("msevtmgt_viewingdurationinmins", "msevtmgt_numberofquestionsasked",
                            "_msevtmgt_registrationid_value", "_msevtmgt_event_value", "msevtmgt_checkintype",
                            "msevtmgt_checkintime", "msevtmgt_checkouttime")
            }
        return found

    def checkin_count(self) -> int:
        with self.dataverse._data_lock:  # len() of the table, without copying 100,000 rows through rows()
            return len(self.dataverse._tables[CHECKINS])

    def reset_logs(self) -> None:
        super().reset_logs()
        self._server_seconds.clear()

    def log_counts(self) -> dict[str, int]:
        return {
            "on24": self.on24.count(),
            "on24_attendee": self.on24.count("GET", "/attendee"),
            "dataverse": self.dataverse.count(),
            "dataverse_batch": self.dataverse.count("POST", "$batch"),
            "dataverse_writes": self.dataverse.writes,
            "max_in_flight": self.dataverse.max_in_flight,
        }

    def server_seconds(self) -> dict[str, float]:
        return dict(self._server_seconds)

    def rss_bytes(self) -> int:
        return _current_rss()

    # ---- timing and profiling of the request handlers -----------------------------------------------------
    def instrument(self) -> None:
        """Time every request handled (by stand-in), and profile the handlers while a profiler is on."""
        for name, server in (("on24", self.on24), ("dataverse", self.dataverse)):
            original = server.handle

            def timed(request: Any, _original: Callable[[Any], Any] = original, _name: str = name) -> Any:
                started = time.perf_counter()
                try:
                    profiler = self._profiler
                    if profiler is None:
                        return _original(request)
                    with self._profile_lock:  # cProfile follows one thread: profile the handlers one at a time
                        return profiler.runcall(_original, request)
                finally:
                    self._server_seconds[_name] += time.perf_counter() - started

            server.handle = timed  # type: ignore[method-assign]

    def start_profile(self) -> None:
        self._profiler = cProfile.Profile()

    def stop_profile(self, top: int) -> list[str]:
        profiler, self._profiler = self._profiler, None
        return [] if profiler is None else hot_spots(profiler, top, areas=("sandbox/", "shared/"))

class _StandInManager(BaseManager):
    pass


_StandInManager.register("StandIns", StandIns)


# ---- call counters around the transports (benchmark-only wrappers) -------------------------------------------
@dataclass
class Calls:
    counts: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    enabled: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, seconds: float) -> None:
        if self.enabled:
            with self.lock:
                self.counts[kind] += 1
                self.seconds[kind.split(" ")[0]] += seconds

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.seconds.clear()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self.enabled = False
        try:
            yield
        finally:
            self.enabled = True


CALLS = Calls()


def _table_kind(method: str, path: str) -> str:
    if path.endswith("$batch"):
        return "table transaction"
    if method == "GET":
        return "table query"
    return "table single"


@contextlib.contextmanager
def counting_calls(*, table_port: int, on24_port: int, dataverse_port: int) -> Iterator[None]:
    """Count (and time) each HTTP exchange by destination, by wrapping azure-core's and httpx's transports."""
    import httpx

    from shared.store.transport import HttpClientTransport

    original_azure = HttpClientTransport.send
    original_httpx = httpx.Client.send

    def azure_send(self: Any, request: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original_azure(self, request, **kwargs)
        finally:
            parts = urlsplit(request.url)
            if parts.port == table_port:
                CALLS.add(_table_kind(request.method, parts.path), time.perf_counter() - started)

    def httpx_send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        started = time.perf_counter()
        try:
            return original_httpx(self, request, **kwargs)
        finally:
            port = request.url.port
            if port in (on24_port, dataverse_port):
                CALLS.add("on24" if port == on24_port else "dataverse", time.perf_counter() - started)

    HttpClientTransport.send = azure_send  # type: ignore[method-assign]
    httpx.Client.send = httpx_send  # type: ignore[method-assign]
    try:
        yield
    finally:
        HttpClientTransport.send = original_azure  # type: ignore[method-assign]
        httpx.Client.send = original_httpx  # type: ignore[method-assign]


class DiscardingHandler(logging.Handler):
    """Formats every record (the worker serialises each one to the host) and keeps the first warnings."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        self.records = 0
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        self.records += 1
        if record.levelno >= logging.WARNING and len(self.warnings) < 5:
            self.warnings.append(text[:300])

    def reset(self) -> None:
        self.records = 0
        self.warnings.clear()


# ---- memory ----------------------------------------------------------------------------------------------------
def _current_rss() -> int:
    with contextlib.suppress(OSError, AttributeError, ValueError):
        text = Path("/proc/self/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+)\s+kB", text)
        if match:
            return int(match.group(1)) * 1024
    return 0


def reset_peak_rss() -> bool:
    """Reset this process' RSS high-water mark (Linux >= 4.0: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss() -> int:
    """``ru_maxrss`` of this process, in bytes (kilobytes on Linux, bytes on macOS)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


# ---- seeding the ledger ------------------------------------------------------------------------------------------
def seed_ledger(connection_string: str, table_name: str, crm_event_id: str, event_user_ids: Sequence[int]) -> int:
    """One ``registered`` ledger row per attendee, 100 per entity-group transaction, four in parallel
    (``benchmarks.seeding``).

    Returns:
        The number of transactions submitted.
    """
    from benchmarks.seeding import insert_rows
    from shared.store.ledger import LedgerEntry

    now = datetime.now(UTC) - timedelta(hours=3)  # registered before the webinar went live, three hours ago
    rows = (
        LedgerEntry(org_id=ORG, registration_id=registration_id(index), state="registered", webinar_id=str(WEBINAR),
                    registrant_id=str(user_id), email=email_of(index), crm_event_id=crm_event_id,
                    last_message_at=now, last_outcome="registered", crm_settled=True, updated_at=now).to_entity()
        for index, user_id in enumerate(event_user_ids)
    )  # fmt: skip
    return insert_rows(connection_string, table_name, rows, threads=4)


# ---- running -----------------------------------------------------------------------------------------------------
@dataclass
class Phase:
    name: str
    wall_s: float
    cpu_s: float
    timer_runs: int
    heap_peak: int | None
    rss_before: int
    rss_peak: int
    rss_peak_is_phase: bool
    logs: dict[str, int]
    table: Counter[str]
    seconds: Counter[str]
    server_seconds: dict[str, float]
    counts: dict[str, int]
    status: str
    log_records: int
    warnings: list[str]
    writes: int = 0
    profile: list[str] = field(default_factory=list)
    server_profile: list[str] = field(default_factory=list)
    reconcile: ReconcileCost | None = None

    @property
    def table_total(self) -> int:
        return sum(self.table.values())

    @property
    def pull_s(self) -> float:
        """The timer runs' wall time without their reconciliation step: the pull (and the health summaries)."""
        return self.wall_s - (self.reconcile.wall_s if self.reconcile else 0.0)

    @property
    def pull_cpu_s(self) -> float:
        return self.cpu_s - (self.reconcile.cpu_s if self.reconcile else 0.0)


@dataclass
class ReconcileCost:
    """What the timer runs' reconciliation step (``shared.entrypoints.timers.run_reconciliations``) cost."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    rss_peak: int = 0
    """Peak RSS of this process during the step (0: the high-water mark could not be reset)."""
    pull_rss_peak: int = 0
    """Peak RSS of the timer runs before the step (the pull)."""
    reconciled: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    repairs: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        table = sum(v for k, v in self.calls.items() if k.startswith("table"))
        drift = ", ".join(f"{k} {v}" for k, v in self.counts.items() if v) or "none"
        repairs = ", ".join(f"{k} {v}" for k, v in self.repairs.items()) or "none"
        peak = f", peak RSS {_mib(self.rss_peak)} MiB" if self.rss_peak else ""
        return (f"reconciliation step: {self.wall_s:.1f} s wall, {self.cpu_s:.1f} s CPU{peak} in {self.steps} step(s), "
                f"{self.reconciled} webinar(s) reconciled; calls: ON24 {self.calls['on24']}, Dataverse "
                f"{self.calls['dataverse']}, Table {table}; classes: {drift}; repairs: {repairs}")


@contextlib.contextmanager
def timing_reconcile(cost: ReconcileCost) -> Iterator[None]:
    """Time the timer's reconciliation step and count its calls (a benchmark-only wrapper; the product runs as is)."""
    from shared.entrypoints import timers

    original = timers.run_reconciliations

    def timed(app: Any, **kwargs: Any) -> Any:
        before = Counter(CALLS.counts)
        cost.pull_rss_peak = max(cost.pull_rss_peak, peak_rss())  # the pull's peak so far; then the step's own
        resets = reset_peak_rss()
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            report = original(app, **kwargs)
        finally:
            cost.wall_s += time.perf_counter() - started
            cost.cpu_s += time.process_time() - cpu_started
            cost.calls.update(Counter(CALLS.counts) - before)
            cost.steps += 1
            if resets:
                cost.rss_peak = max(cost.rss_peak, peak_rss())
                reset_peak_rss()
        if report is not None:
            cost.reconciled += len(report.reconciled)
        return report

    timers.run_reconciliations = timed
    try:
        yield
    finally:
        timers.run_reconciliations = original


def run_phase(
    name: str,
    stand_ins: Any,
    log_handler: DiscardingHandler,
    *,
    trace_memory: bool,
    profile: bool,
    writes_before: int,
) -> Phase:
    """Timer runs until the webinar's pull is complete (one run when the budget is large enough)."""
    from azure.functions.timer import TimerRequest

    from PullMetrics import main as pull_main
    from shared.app import get_app

    stand_ins.reset_logs()
    log_handler.reset()
    CALLS.reset()
    gc.collect()
    rss_before = _current_rss()
    phase_peak = reset_peak_rss()
    profiler = cProfile.Profile() if profile else None
    if profile:
        stand_ins.start_profile()
    if trace_memory:
        tracemalloc.start()
    cost = ReconcileCost()
    started, cpu_started = time.perf_counter(), time.process_time()
    runs = 0
    state = None
    with timing_reconcile(cost):
        while runs < MAX_TIMER_RUNS:
            runs += 1
            if profiler is not None:
                profiler.enable()
            try:
                pull_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))
            finally:
                if profiler is not None:
                    profiler.disable()
            with CALLS.paused():
                state = get_app().sync_state.get(ORG, str(WEBINAR))
            if state is None or state.pending_end is None:
                break
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if cost.reconciled:
        with CALLS.paused():
            reconciled = get_app().reconciliations.get(ORG, str(WEBINAR))
        if reconciled is not None:
            cost.counts, cost.repairs = dict(reconciled.counts), dict(reconciled.repairs)
    heap_peak = None
    if trace_memory:
        heap_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    rss_peak = peak_rss()
    if cost.rss_peak:  # the pull's peak is the one before the step (whose own peak is reported with it): after
        rss_peak = cost.pull_rss_peak  # it, the RSS the step left (Python keeps its freed memory) is not the pull's
    logs = stand_ins.log_counts()
    phase = Phase(
        name=name,
        wall_s=wall,
        cpu_s=cpu,
        timer_runs=runs,
        heap_peak=heap_peak,
        rss_before=rss_before,
        rss_peak=rss_peak,
        rss_peak_is_phase=phase_peak,
        logs=logs,
        table=Counter({k: v for k, v in CALLS.counts.items() if k.startswith("table")}),
        seconds=Counter(CALLS.seconds),
        server_seconds=stand_ins.server_seconds(),
        counts=dict(state.counts) if state is not None else {},
        status=state.status if state is not None else "no sync state",
        log_records=log_handler.records,
        warnings=list(log_handler.warnings),
        writes=logs["dataverse_writes"] - writes_before,
        reconcile=cost if cost.steps else None,
    )
    if profiler is not None:
        phase.profile = hot_spots(profiler, 18, areas=("shared/",))
        phase.server_profile = stand_ins.stop_profile(12)
    return phase


# ---- correctness -------------------------------------------------------------------------------------------------
def verify_checkins(
    stand_ins: Any, crm_event_id: str, sample: Sequence[int], grown: set[int], label: str
) -> list[str]:
    problems: list[str] = []
    stored = stand_ins.checkins([registration_id(i) for i in sample], ORG)
    wrong: list[str] = []
    for index in sample:
        registration = registration_id(index)
        row = stored.get(registration)
        if row is None:
            wrong.append(f"attendee {index}: no check-in")
            continue
        expected = {
            "msevtmgt_viewingdurationinmins": expected_minutes(index, index in grown),
            "msevtmgt_numberofquestionsasked": interactions(index),
            "_msevtmgt_registrationid_value": registration,
            "_msevtmgt_event_value": crm_event_id,
            "msevtmgt_checkintype": 100000001,
        }
        diffs = {k: (row.get(k), v) for k, v in expected.items() if row.get(k) != v}
        if diffs:
            wrong.append(f"attendee {index}: (stored, expected) {diffs}")
    if wrong:
        problems.append(f"{label}: {len(wrong)} of {len(sample)} sampled check-ins wrong, e.g. {wrong[0]}")
    return problems


def verify_mapped(stand_ins: Any, sample: Sequence[int], label: str) -> list[str]:
    """The mapped columns of sampled attendees carry the attendance detail (live minutes, status, score)."""
    stored = stand_ins.mapped_values([registration_id(i) for i in sample], ORG)
    wrong = [
        index for index in sample
        if stored[registration_id(index)]["new_liveminutes"] != live_minutes(index)
        or stored[registration_id(index)]["new_attendancestatus"] != "live"
        or stored[registration_id(index)]["new_engagementscore"] != round(1 + (index % 90) / 10, 1)
    ]  # fmt: skip
    if not wrong:
        return []
    return [f"{label}: {len(wrong)} of {len(sample)} sampled mapped columns wrong, e.g. attendee {wrong[0]}"]


def verify_reconciled(phase: Phase, attendees: int) -> list[str]:
    """The backfill after the switch-on reconciled the webinar and found every registration agreed (the world is
    what production holds: each attendee a registrant carrying its registration id), so nothing was repaired."""
    cost = phase.reconcile
    if cost is None or not cost.reconciled:
        return [f"{phase.name}: the backfill's reconciliation of the webinar did not run"]
    if cost.counts.get("agreed") != attendees or cost.repairs:
        return [f"{phase.name}: reconciliation found {cost.counts} and repaired {cost.repairs or 'nothing'}, "
                f"expected {attendees} agreed and no repair"]
    return []


def verify_phase(phase: Phase, attendees: int, expected_writes: int, writes_per_row: int = 1) -> list[str]:
    problems: list[str] = []
    counts = phase.counts
    if phase.status != "ok":
        problems.append(f"{phase.name}: webinar sync status {phase.status!r}, expected 'ok'")
    if counts.get("pulled") != attendees or counts.get("matched") != attendees:
        problems.append(f"{phase.name}: pulled {counts.get('pulled')}, matched {counts.get('matched')}, "
                        f"expected {attendees} each")
    if counts.get("failed"):
        problems.append(f"{phase.name}: {counts['failed']} check-ins refused by Dataverse")
    if phase.writes != expected_writes * writes_per_row or counts.get("written") != expected_writes:
        problems.append(f"{phase.name}: {phase.writes} Dataverse writes ({counts.get('written')} counted written), "
                        f"expected exactly {expected_writes * writes_per_row}")
    if counts.get("unchanged") != attendees - expected_writes:
        problems.append(f"{phase.name}: {counts.get('unchanged')} unchanged, expected {attendees - expected_writes}")
    return problems


def index_rows_without_hash(attendees: int) -> int:
    """Registrations whose check-in hash the webinar's match index lacks (or missing from it) after a sync."""
    from shared.app import get_app
    from shared.metrics.checkins import METRICS_HASH_VERSION
    from shared.metrics.index import MatchIndex

    with CALLS.paused():
        stored, _ = get_app().match_indexes.load(ORG, str(WEBINAR))
    from shared.emailhash import MATCH_INDEX

    email_key = get_app().email_hashers(MATCH_INDEX)
    index = MatchIndex.from_bytes(ORG, str(WEBINAR), METRICS_HASH_VERSION, email_key, stored)
    return attendees - sum(1 for row in index.rows.values() if row.metrics_hash)


# ---- production estimate -------------------------------------------------------------------------------------------
def production_timer_runs(pages: int, page_seconds: float, calls_per_minute: int, budget: float) -> tuple[int, float]:
    """Timer runs (and the pacing-bound time) needed for ``pages`` pages with production settings.

    Simulated with the real ``RateLimiter`` on a virtual clock, as ``shared.metrics.run`` does: each run builds a fresh
    limiter, every page waits on it, takes ``page_seconds``, and the run stops after the first page that ends at or
    past the budget (the next run resumes at the following page).
    """
    from shared.ratelimit import RateLimiter

    now = [0.0]

    def advance(seconds: float) -> None:
        now[0] += seconds

    remaining, runs, busy = pages, 0, 0.0
    while remaining > 0 and runs < 1000:
        runs += 1
        now[0] = 0.0
        limiter = RateLimiter(calls_per_minute, 60.0, clock=lambda: now[0], sleep=advance)
        while remaining > 0:
            limiter.acquire()
            advance(page_seconds)
            remaining -= 1
            if now[0] >= budget:
                break
        busy += now[0]
    return runs, busy


# ---- profile -------------------------------------------------------------------------------------------------------
def _area(filename: str) -> str:
    path = filename.replace("\\", "/")
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1]
    if path.startswith(str(ROOT)):
        return path[len(str(ROOT)) + 1:]
    return path


def hot_spots(profiler: cProfile.Profile, top: int, *, areas: Sequence[str]) -> list[str]:
    """The functions with the most own time, then the project functions with the most cumulative time."""
    stats = pstats.Stats(profiler, stream=io.StringIO())
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1.0
    lines = [f"  profiled time {total:.2f} s; own time (tottime), top {top}:"]
    by_own = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:top]
    for (filename, line, name), (_cc, nc, tt, ct, _callers) in by_own:
        label = f"{_area(filename)}:{line} {name}" if filename != "~" else name
        lines.append(f"    {tt:7.2f} s {tt / total:6.1%}  cum {ct:7.2f} s  calls {nc:>9}  {label[:110]}")
    lines.append(f"  project functions ({', '.join(areas)}) by cumulative time, top {top}:")
    ours = [
        (ct, tt, nc, f"{_area(filename)}:{line} {name}")
        for (filename, line, name), (_cc, nc, tt, ct, _callers) in raw.items()
        if _area(filename).startswith(tuple(areas))
    ]
    for ct, tt, nc, label in sorted(ours, reverse=True)[:top]:
        lines.append(f"    cum {ct:7.2f} s {ct / total:6.1%}  own {tt:6.2f} s  calls {nc:>9}  {label[:110]}")
    return lines


# ---- set-up ------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pull_metrics",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--scenario", choices=("webinar", "orgs", "steady"), default="webinar",
                        help="webinar: one webinar of --attendees attendees (default); orgs: --orgs orgs x "
                             "--webinars webinars of --org-attendees attendees each, production pacing and budget; "
                             "steady: one org of --ledger-rows ledger rows over --webinars webinars, one changed "
                             "(benchmarks/pull_steady.py; use --webinars 100)")
    parser.add_argument("--ledger-rows", type=int, default=500_000,
                        help="ledger rows of the org in the steady scenario (500000)")
    parser.add_argument("--orgs", type=int, default=50, help="orgs in the orgs scenario (50)")
    parser.add_argument("--webinars", type=int, default=4, help="webinars per org in the orgs scenario (4)")
    parser.add_argument("--org-attendees", type=int, default=50, help="attendees per webinar in the orgs scenario (50)")
    parser.add_argument("--on24-latency-ms", type=float, default=100.0,
                        help="added ON24 stand-in latency per request in the orgs scenario (100)")
    parser.add_argument("--dataverse-latency-ms", type=float, default=100.0,
                        help="added Dataverse stand-in latency per request in the orgs scenario (100)")
    parser.add_argument("--attendees", type=int, default=100_000, help="attendees of the webinar (100000)")
    parser.add_argument("--changed-ratio", type=float, default=0.01,
                        help="share of attendees whose minutes grow before run (c) (0.01)")
    parser.add_argument("--calls-per-minute", type=int, default=100_000,
                        help="ON24_ATTENDEE_CALLS_PER_MINUTE for the benchmark (100000; production: 100)")
    parser.add_argument("--budget", type=float, default=3600.0,
                        help="PULL_METRICS_BUDGET_SECONDS for the benchmark (3600; production: 240)")
    parser.add_argument("--sample", type=int, default=500, help="check-ins compared field by field per run (500)")
    parser.add_argument("--tracemalloc", choices=("pass", "inline", "off"), default="pass",
                        help="Python heap peaks: from a second pass of (a)-(c) on fresh state, traced, so the timed "
                             "pass is not slowed down ~4x by tracemalloc (pass); traced in the timed pass (inline); "
                             "not measured (off)")
    parser.add_argument("--profile", action="store_true",
                        help="run the timed pass under cProfile and print hot spots (inflates its wall times)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"),
                        help="root log level; records are formatted, then dropped (INFO)")
    parser.add_argument("--mapping", choices=("beside", "off"), default="beside",
                        help="'beside': also run (a)-(c) for an org with a 5-column field mapping and print its "
                             "figures beside those without one (default); 'off': without a mapping only")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the sample and the changed rows (1)")
    parser.add_argument("--baseline-pages", type=int, default=50,
                        help="ON24 pages the naive baseline pulls (50 = 5,000 attendees; 0: no baseline)")
    args = parser.parse_args(argv)
    if args.attendees < 100 or not 0 < args.changed_ratio < 1 or args.calls_per_minute < 1 or args.budget < 5:
        parser.error("--attendees must be at least 100, --changed-ratio within (0, 1), --calls-per-minute >= 1, "
                     "--budget >= 5")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.scenario == "steady":
        from benchmarks.pull_steady import run_steady

        return run_with_cleanup(run_steady, args)
    return run_with_cleanup(run_orgs if args.scenario == "orgs" else run, args)


@dataclass
class World:
    """What both passes share: the running parts, the seeded ON24/CRM data and the choices of rows."""

    stand_ins: Any
    env: dict[str, str]
    connection_string: str
    crm_event_id: str
    event_user_ids: list[int]
    sample: list[int]
    changed: list[int]
    log_handler: DiscardingHandler
    step: Callable[[str], None]


def _start(stack: contextlib.ExitStack, log_level: str, **settings: str) -> Parts:
    return start_parts(stack, _StandInManager(ctx=multiprocessing.get_context("fork")), log_level, DiscardingHandler(),
                       **settings)


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    step = stepper()
    # A budget beyond host.json's functionTimeout is refused (shared/hosting.py): this one-run benchmark lifts the
    # time-out the way an app setting would (AzureFunctionsJobHost__functionTimeout overrides host.json).
    parts = _start(stack, args.log_level, ON24_ATTENDEE_CALLS_PER_MINUTE=str(args.calls_per_minute),
                        PULL_METRICS_BUDGET_SECONDS=f"{args.budget:g}", AzureFunctionsJobHost__functionTimeout="-1")
    stand_ins, azurite, env, log_handler = parts.stand_ins, parts.azurite, parts.env, parts.log_handler
    on24_url, dataverse_url = parts.on24_url, parts.dataverse_url
    stand_ins.instrument()
    step("started Azurite, Key Vault (HTTPS), ON24 and Dataverse stand-ins")

    from tests.conftest import ON24_CLIENT_ID, ON24_KEY, ON24_SECRET

    n = args.attendees
    started = time.perf_counter()
    crm_event_id, event_user_ids = stand_ins.seed(n, ON24_CLIENT_ID, ON24_KEY, ON24_SECRET)
    step(f"seeded {n} ON24 attendees and {n} CRM registrations ({time.perf_counter() - started:.1f} s)")
    rng = random.Random(args.seed)
    world = World(
        stand_ins=stand_ins,
        env=env,
        connection_string=azurite.connection_string,
        crm_event_id=crm_event_id,
        event_user_ids=event_user_ids,
        sample=sorted(rng.sample(range(n), min(args.sample, n))),
        changed=sorted(rng.sample(range(n), max(1, round(n * args.changed_ratio)))),
        log_handler=log_handler,
        step=step,
    )
    ports = {
        "table_port": azurite.ports["table"], "on24_port": port_of(on24_url), "dataverse_port": port_of(dataverse_url)
    }
    stack.enter_context(counting_calls(**ports))

    timed, problems = run_pass(args, world, "timed", trace_memory=args.tracemalloc == "inline", profile=args.profile)
    baseline = [] if args.baseline_pages <= 0 else run_baseline(args, world)
    traced: list[Phase] = []
    if args.tracemalloc == "pass":
        stand_ins.reset_for_second_pass(world.changed)
        traced, more = run_pass(args, world, "traced", trace_memory=True, profile=False)
        problems += more
    mapped: list[Phase] = []
    if args.mapping == "beside":
        stand_ins.reset_for_second_pass(world.changed)
        stand_ins.add_mapping_columns()
        mapped, more = run_pass(args, world, "mapped", trace_memory=False, profile=False, mapping=BENCH_MAPPING)
        problems += more
    step("verified")
    report(args, timed, traced, problems, stand_ins.rss_bytes(), len(world.changed))
    print()
    for line in targets_report(timed, baseline, args.attendees):
        print(line)
    for line in mapping_report(timed, mapped):
        print(line)
    return 1 if problems else 0


def mapping_report(plain: Sequence[Phase], mapped: Sequence[Phase]) -> list[str]:
    """(a)-(c) without a field mapping beside the same runs for an org with ``BENCH_MAPPING`` (5 extra columns)."""
    if not mapped:
        return []
    lines = ["", "with a field mapping of 5 extra columns (3 on the check-in, 2 on the registration), beside none:",
             f"  {'':28s} {'none':>10s} {'5 columns':>10s}"]  # fmt: skip
    for ours, theirs in zip(plain, mapped, strict=True):
        rows = [
            ("Dataverse $batch requests", ours.logs["dataverse_batch"], theirs.logs["dataverse_batch"]),
            ("Dataverse other requests", ours.logs["dataverse"] - ours.logs["dataverse_batch"],
             theirs.logs["dataverse"] - theirs.logs["dataverse_batch"]),
            ("Dataverse row writes", ours.writes, theirs.writes),
            ("ON24 requests", ours.logs["on24"], theirs.logs["on24"]),
            ("Table Storage calls", ours.table_total, theirs.table_total),
            ("wall (s)", ours.wall_s, theirs.wall_s),
            ("CPU (s)", ours.cpu_s, theirs.cpu_s),
        ]  # fmt: skip
        lines.append(f"  {ours.name}:")
        lines += [f"    {label:28s} {mine:10.1f} {with_mapping:10.1f}" for label, mine, with_mapping in rows]
    return lines


@dataclass
class BaselineRun:
    name: str
    attendees: int
    wall_s: float
    cpu_s: float
    dataverse: int
    on24: int
    writes: int


def run_baseline(args: argparse.Namespace, world: World) -> list[BaselineRun]:
    """The naive pull (benchmarks/naive_pull.py) over the first ``--baseline-pages`` pages of the same webinar, in
    the same process against the same stand-ins, twice: a first sync and a re-run with nothing changed."""
    from benchmarks.naive_pull import naive_pull
    from shared.app import get_app

    runs = []
    for name in ("(a) first full sync", "(b) no change"):
        world.stand_ins.reset_logs()
        started, cpu_started = time.perf_counter(), time.process_time()
        done = naive_pull(get_app(), ORG, str(WEBINAR), max_pages=args.baseline_pages)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        logs = world.stand_ins.log_counts()
        runs.append(BaselineRun(name, done.pulled, wall, cpu, logs["dataverse"], logs["on24"], done.patched))
        world.step(f"naive baseline {name}: {done.pulled} attendees in {wall:.1f} s")
    return runs


def targets_report(timed: Sequence[Phase], baseline: Sequence[BaselineRun], attendees: int) -> list[str]:
    first, unchanged = timed[0], timed[1]
    step_peak = first.reconcile.rss_peak if first.reconcile else 0
    checks = [
        (unchanged.wall_s <= UNCHANGED_WALL_TARGET_S,
         f"unchanged re-run wall <= {UNCHANGED_WALL_TARGET_S:g} s: {unchanged.wall_s:.1f} s"),
        (unchanged.cpu_s <= UNCHANGED_CPU_TARGET_S,
         f"unchanged re-run CPU <= {UNCHANGED_CPU_TARGET_S:g} s: {unchanged.cpu_s:.1f} s"),
        (first.pull_s <= FIRST_WALL_TARGET_S,
         f"first sync wall (the pull until the webinar is complete) <= {FIRST_WALL_TARGET_S:g} s: {first.pull_s:.1f} s"
         f"{f' (+ {first.reconcile.wall_s:.1f} s of reconciliation, below)' if first.reconcile else ''}"),
        (first.rss_peak <= FIRST_RSS_TARGET_BYTES,
         f"first sync peak RSS (the pull) <= {_mib(FIRST_RSS_TARGET_BYTES)} MiB: {_mib(first.rss_peak)} MiB"
         f"{f' (the reconciliation step: {_mib(step_peak)} MiB, below)' if step_peak else ''}"),
    ]  # fmt: skip
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    lines = [f"targets (load average at the end: {load}; the machine's load inflates wall times):",
             *(f"  {_mark(ok)} {text}" for ok, text in checks)]  # fmt: skip
    lines += [f"  {p.name}, beside it: {p.reconcile.line()}" for p in timed if p.reconcile]
    if not baseline:
        return lines
    scale = attendees / max(1, baseline[0].attendees)
    lines += [
        "",
        "beside the naive baseline (benchmarks/naive_pull.py: one PATCH per check-in, no change detection), run on "
        f"the first {baseline[0].attendees} attendees and scaled x{scale:g} to {attendees} (its cost is linear):",
        f"  {'':34s} {'this':>10s} {'naive':>10s} {'this/naive':>11s}",
    ]
    for ours, theirs in zip(timed[:2], baseline, strict=True):
        rows = [
            ("Dataverse requests", ours.logs["dataverse"], theirs.dataverse * scale),
            ("Dataverse row writes", ours.writes, theirs.writes * scale),
            ("wall (s), the pull", ours.pull_s, theirs.wall_s * scale),
            ("CPU (s), the pull", ours.pull_cpu_s, theirs.cpu_s * scale),
        ]
        lines.append(f"  {ours.name}:")
        for label, mine, naive in rows:
            ratio = f"{mine / naive:.3f}" if naive else "-"
            lines.append(f"    {label:32s} {mine:10.1f} {naive:10.1f} {ratio:>11s}")
    return lines


def _mark(ok: bool) -> str:
    return "[PASS]" if ok else "[FAIL]"


def run_pass(
    args: argparse.Namespace,
    world: World,
    label: str,
    *,
    trace_memory: bool,
    profile: bool,
    mapping: dict[str, Any] | None = None,
) -> tuple[list[Phase], list[str]]:
    """Fresh state tables (a new prefix), credentials (with ``mapping`` as the org's field mapping), ledger; then
    runs (a), (b), (c), each verified. With registration columns mapped, each changed row is two row writes."""
    from sandbox.triggers import http_request
    from shared.app import get_app, reset_app
    from StoreCredentials import main as store_main
    from tests.conftest import credentials_body

    n = args.attendees
    stand_ins, step = world.stand_ins, world.step
    env = {**world.env, "STATE_TABLE_PREFIX": "bench" + uuid.uuid4().hex[:12]}
    os.environ.update(env)
    reset_app()
    started = time.perf_counter()
    stand_ins.own_dataverse(ORG)
    body = credentials_body() if mapping is None else credentials_body(fieldMapping=mapping)
    response = store_main(http_request("PUT", ORG, body))
    if response.status_code != 200:
        raise RuntimeError(f"StoreCredentials answered {response.status_code}: {response.get_body()[:300]!r}")
    get_app().tables.table("ledger")  # created by the App, as in production
    transactions = seed_ledger(world.connection_string, env["STATE_TABLE_PREFIX"] + "ledger", world.crm_event_id,
                               world.event_user_ids)
    step(f"{label} pass: stored the org's credentials; seeded {n} ledger rows in {transactions} transactions "
         f"({time.perf_counter() - started:.1f} s)")

    problems: list[str] = []
    phases: list[Phase] = []
    options = {"trace_memory": trace_memory, "profile": profile}
    writes = stand_ins.log_counts()["dataverse_writes"]
    first = run_phase("(a) first full sync", stand_ins, world.log_handler, writes_before=writes, **options)
    phases.append(first)
    step(f"{label} pass: run (a) done in {first.wall_s:.1f} s")
    stored = stand_ins.checkin_count()
    if stored != n:
        problems.append(f"(a): {stored} check-ins in Dataverse, expected {n}")
    per_row = 2 if mapping and any(e["table"] == "msevtmgt_eventregistration" for e in mapping["toCrm"]) else 1
    problems += verify_phase(first, n, n, per_row)
    problems += verify_reconciled(first, n)
    problems += verify_checkins(stand_ins, world.crm_event_id, world.sample, set(), "(a)")
    if mapping:
        problems += verify_mapped(stand_ins, world.sample, "(a)")
    without_hash = index_rows_without_hash(n)
    if without_hash:
        problems.append(f"(a): {without_hash} registrations without a check-in hash in the match index after the sync")

    second = run_phase("(b) no change", stand_ins, world.log_handler, writes_before=first.logs["dataverse_writes"],
                       **options)
    phases.append(second)
    step(f"{label} pass: run (b) done in {second.wall_s:.1f} s")
    problems += verify_phase(second, n, 0)
    if second.logs["dataverse_batch"]:
        problems.append(f"(b): {second.logs['dataverse_batch']} $batch requests, expected none")

    changed = world.changed
    stand_ins.grow(changed)
    third = run_phase(f"(c) {len(changed)} grew", stand_ins, world.log_handler,
                      writes_before=second.logs["dataverse_writes"], **options)
    phases.append(third)
    step(f"{label} pass: run (c) done in {third.wall_s:.1f} s")
    problems += verify_phase(third, n, len(changed), per_row)
    checked = sorted(set(world.sample) | set(changed[: args.sample]))
    problems += verify_checkins(stand_ins, world.crm_event_id, checked, set(changed), "(c)")
    stored = stand_ins.checkin_count()
    if stored != n:
        problems.append(f"(c): {stored} check-ins in Dataverse, expected {n} (upserts must not duplicate)")
    return phases, [f"{label} pass: {problem}" for problem in problems]


# ---- many orgs ---------------------------------------------------------------------------------------------------
def run_orgs(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    """Many tenants: every org its own ON24 account; timer runs with the production budget and ON24 pacing until
    every webinar is synced, then one more run with nothing changed."""
    step = stepper()
    parts = _start(stack, "INFO", ON24_ATTENDEE_CALLS_PER_MINUTE=str(PRODUCTION_CALLS_PER_MINUTE),
                        PULL_METRICS_BUDGET_SECONDS=f"{PRODUCTION_BUDGET_SECONDS:g}")
    stand_ins, azurite, env = parts.stand_ins, parts.azurite, parts.env
    on24_url, dataverse_url = parts.on24_url, parts.dataverse_url
    os.environ.update(env)

    from azure.data.tables import TableClient
    from azure.functions.timer import TimerRequest

    from PullMetrics import main as pull_main
    from sandbox.triggers import http_request
    from shared.app import get_app, reset_app
    from shared.store.ledger import LedgerEntry
    from StoreCredentials import main as store_main

    reset_app()
    seeded = stand_ins.seed_orgs(args.orgs, args.webinars, args.org_attendees)
    now = datetime.now(UTC)
    ledger = TableClient.from_connection_string(azurite.connection_string, env["STATE_TABLE_PREFIX"] + "ledger")
    for n, org in enumerate(seeded):
        org_id = f"{n:08x}-0b5e-4c00-8000-{n:012x}"
        org["org_id"] = org_id
        body = {"clientId": org["client"], "accessTokenKey": org["key"], "accessTokenSecret": org["secret"],
                "dataverseUrl": stand_ins.dataverse_url_for(org_id)}  # fmt: skip
        response = store_main(http_request("PUT", org_id, body))
        if response.status_code != 200:
            raise RuntimeError(f"StoreCredentials answered {response.status_code}: {response.get_body()[:300]!r}")
        get_app().tables.table("ledger")
        for webinar, crm_event, people in org["webinars"]:
            operations: list[Any] = []
            for registration, registrant_id, email in people:
                entry = LedgerEntry(org_id=org_id, registration_id=registration, state="registered",
                                    webinar_id=str(webinar), registrant_id=str(registrant_id), email=email,
                                    crm_event_id=crm_event, last_message_at=now, crm_settled=True, updated_at=now)
                operations.append(("create", entry.to_entity()))
            for start in range(0, len(operations), TRANSACTION_SIZE):
                ledger.submit_transaction(operations[start : start + TRANSACTION_SIZE])
    total_webinars = args.orgs * args.webinars
    step(f"seeded {args.orgs} orgs x {args.webinars} webinars x {args.org_attendees} attendees; credentials stored")
    stand_ins.set_latency(args.on24_latency_ms / 1000, args.dataverse_latency_ms / 1000)
    ports = {"table_port": azurite.ports["table"], "on24_port": port_of(on24_url),
             "dataverse_port": port_of(dataverse_url)}
    stack.enter_context(counting_calls(**ports))

    rows: list[tuple[str, float, float, int, int, dict[str, int], int]] = []
    problems: list[str] = []
    for label in ("first sync", "nothing changed"):
        for run_index in range(1, MAX_TIMER_RUNS + 1):
            stand_ins.reset_logs()
            CALLS.reset()
            started, cpu_started = time.perf_counter(), time.process_time()
            pull_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            with CALLS.paused():
                states = [get_app().sync_state.get(org["org_id"], str(w)) for org in seeded
                          for w, _, _ in org["webinars"]]
            done = sum(1 for s in states if s is not None and s.status == "ok" and s.pending_end is None)
            logs = stand_ins.log_counts()
            tables = sum(v for k, v in CALLS.counts.items() if k.startswith("table"))
            rows.append((f"{label}, run {run_index}", wall, cpu, done, logs["on24"], logs, tables))
            step(f"{label}: timer run {run_index} in {wall:.1f} s, {done}/{total_webinars} webinars synced")
            if done == total_webinars:
                break
        else:
            problems.append(f"{label}: not every webinar synced within {MAX_TIMER_RUNS} timer runs")
    checkins = stand_ins.checkin_count()
    expected = total_webinars * args.org_attendees
    if checkins != expected:
        problems.append(f"{checkins} check-ins in Dataverse, expected {expected}")

    print()
    print(f"PullMetrics benchmark, many orgs: {args.orgs} orgs x {args.webinars} webinars x {args.org_attendees} "
          f"attendees ({total_webinars} webinars, {expected} check-ins); every org its own ON24 account")
    print(f"production settings: PULL_METRICS_BUDGET_SECONDS={PRODUCTION_BUDGET_SECONDS:g}, "
          f"ON24_ATTENDEE_CALLS_PER_MINUTE={PRODUCTION_CALLS_PER_MINUTE}; stand-in latency per request: ON24 "
          f"{args.on24_latency_ms:g} ms, Dataverse {args.dataverse_latency_ms:g} ms; functionTimeout 600 s")
    print(f"{'run':<26}{'wall s':>8}{'cpu s':>7}{'synced':>8}{'ON24':>6}{'DV $batch':>10}{'Table':>7}")
    for label, wall, cpu, done, on24_calls, logs, tables in rows:
        print(f"{label:<26}{wall:8.1f}{cpu:7.1f}{done:>8}{on24_calls:6d}{logs['dataverse_batch']:10d}{tables:7d}")
    print(f"check-ins stored: {checkins}")
    print("correctness: " + ("FAILED\n  - " + "\n  - ".join(problems) if problems else "OK"))
    return 1 if problems else 0


# ---- report ------------------------------------------------------------------------------------------------------
def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MIB:.0f}"


def report(args: argparse.Namespace, timed: Sequence[Phase], traced: Sequence[Phase], problems: Sequence[str],
           stand_in_rss: int, changed: int) -> None:
    n = args.attendees
    pages = math.ceil(n / 100)
    print()
    print(f"PullMetrics benchmark: one webinar, {n} attendees ({pages} ON24 pages of 100), {changed} changed in (c)")
    heap_note = {
        "pass": "heap peaks from a second, traced pass on fresh state (tracemalloc slows this code ~4x)",
        "inline": "heap traced in the timed pass (wall times inflated ~4x by tracemalloc)",
        "off": "heap not traced",
    }[args.tracemalloc]
    print(f"Python {platform.python_version()} on {os.cpu_count()} CPU(s); stand-ins in a separate process; Azurite "
          f"tables; log level {args.log_level} (records formatted, then dropped); {heap_note}"
          f"{'; cProfile on in the timed pass (wall times inflated)' if args.profile else ''}")
    print(f"ON24_ATTENDEE_CALLS_PER_MINUTE={args.calls_per_minute}, PULL_METRICS_BUDGET_SECONDS={args.budget:g}")
    print()
    header = (f"{'run':<20}{'wall s':>7}{'cpu s':>7}{'timer':>6} | {'heap pk':>7}{'RSS pk':>7}{'RSS 0':>6} MiB"
              f" | {'DV $batch':>9}{'other':>6}{'writes':>7} | {'ON24':>5}{'pages':>6}"
              f" | {'Table qry':>9}{'txn':>5}{'single':>7}")
    print(header)
    print("-" * len(header))
    for index, p in enumerate(timed):
        heap = traced[index].heap_peak if traced else p.heap_peak
        other = p.logs["dataverse"] - p.logs["dataverse_batch"]
        print(f"{p.name:<20}{p.wall_s:7.1f}{p.cpu_s:7.1f}{p.timer_runs:6d} | {_mib(heap):>7}"
              f"{_mib(p.rss_peak):>7}{_mib(p.rss_before):>6}     | {p.logs['dataverse_batch']:9d}{other:6d}"
              f"{p.writes:7d} | {p.logs['on24']:5d}{p.logs['on24_attendee']:6d}"
              f" | {p.table['table query']:9d}{p.table['table transaction']:5d}{p.table['table single']:7d}")
    print("columns: timer = timer runs (PullMetrics.main calls) to finish the webinar; heap pk = tracemalloc peak of "
          "the Python heap during the run; RSS pk = peak RSS of this process during the run (the pull: before the "
        "reconciliation step, whose peak is on its own line)"
          f"{'' if all(p.rss_peak_is_phase for p in timed) else ' (process high-water: could not reset)'}; "
          "RSS 0 = its RSS before the run; DV = Dataverse requests and row writes; ON24 = all requests, of which "
          "attendee pages; Table = Table Storage queries (one per page of up to 1,000 rows), entity-group "
          "transactions, single-entity calls")
    if traced:
        walls = ", ".join(f"{p.name.split(' ')[0]} {p.wall_s:.1f} s (RSS pk {_mib(p.rss_peak)} MiB)" for p in traced)
        print(f"traced pass (tracemalloc on; same requests and writes): {walls}")
    print()
    for p in timed:
        counts = ", ".join(f"{k} {v}" for k, v in p.counts.items())
        waits = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(p.seconds.items()))
        served = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(p.server_seconds.items()))
        print(f"{p.name}: status {p.status}; {counts}")
        print(f"    time in calls (client side, summed over threads): {waits}; stand-ins' handlers: {served}; "
              f"{p.log_records} log records; max $batch in flight {p.logs['max_in_flight']}")
        for warning in p.warnings[:2]:
            print(f"    warning logged: {warning}")
    print(f"stand-ins' process RSS at the end: {_mib(stand_in_rss)} MiB (not part of the figures above)")

    estimates = []
    for p in timed:
        page_seconds = p.wall_s / pages
        runs, busy = production_timer_runs(pages, page_seconds, PRODUCTION_CALLS_PER_MINUTE,
                                           PRODUCTION_BUDGET_SECONDS)
        estimates.append(f"{p.name.split(' ')[0]} {runs} timer run(s), ~{busy / 60:.1f} min of run time "
                         f"({page_seconds * 1000:.0f} ms of work per page)")
    runs_a = production_timer_runs(pages, timed[0].wall_s / pages, PRODUCTION_CALLS_PER_MINUTE,
                                   PRODUCTION_BUDGET_SECONDS)[0]
    print()
    print(f"ON24 pacing in production: ON24_ATTENDEE_CALLS_PER_MINUTE={PRODUCTION_CALLS_PER_MINUTE} (ON24's limit), "
          f"so {pages} attendee pages take ~{pages / PRODUCTION_CALLS_PER_MINUTE:.0f} min of calls; this benchmark "
          f"lifted the limit to {args.calls_per_minute} to measure the code, not the pacing.")
    print(f"  With the default budget of {PRODUCTION_BUDGET_SECONDS:g} s per timer run, each run stops after the page "
          "that crosses the budget and records the next page; the following runs resume there. Simulated with the "
          "real RateLimiter on a virtual clock and this benchmark's work per page (real ON24 latency not modelled):")
    print(f"    {'; '.join(estimates)}.")
    print(f"  With the {PRODUCTION_SCHEDULE_MINUTES}-min schedule (0 */15 * * * *) the first full sync completes in "
          f"the timer run {runs_a} (~{(runs_a - 1) * PRODUCTION_SCHEDULE_MINUTES} min after the first one starts). "
          "Runs like (b) and (c) re-read every page while the attendees' last activity is inside the look-back "
          "window (48 h), so they are paced the same way.")
    slow = sum(p.wall_s for p in timed) > SLOW_SECONDS
    large = max(p.rss_peak for p in timed) > LARGE_RSS_BYTES
    if (slow or large) and not args.profile:
        print(f"  {'slow' if slow else ''}{' and ' if slow and large else ''}{'large' if large else ''}: rerun with "
              "--attendees 20000 --profile for the hot spots")

    for p in timed:
        if p.profile:
            print()
            print(f"profile of {p.name} (cProfile, this process' main thread):")
            for line in p.profile:
                print(line)
            print(f"profile of {p.name} (the stand-ins' request handlers):")
            for line in p.server_profile:
                print(line)

    print()
    if problems:
        print("correctness: FAILED")
        for problem in problems:
            print(f"  - {problem}")
    else:
        passes = "both passes" if traced else "the timed pass"
        print(f"correctness: OK in {passes} ({n} check-ins stored once each; sampled rows carry the expected minutes,"
              f" interactions and lookups; (b) wrote nothing; (c) wrote exactly the {changed} changed rows)")


if __name__ == "__main__":
    sys.exit(main())
