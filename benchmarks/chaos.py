"""Chaos soak of RegisterAttendee: faulty services, duplicated and shuffled deliveries, and workers killed mid-flight.

What it does
    Generates ``--registrations`` CRM registrations, each with a history: a register, then (``--email-changes``)
    new email addresses, (``--moves``) moves to another ON24 webinar, and (``--cancels``) a final cancellation.
    Every change becomes one queue message, canonical (``webinar-registration/1``, carrying the change) or
    Dataverse (a RemoteExecutionContext; the handler reads CRM, which holds the final state). A share
    (``--duplicates``) is posted twice, as Dataverse does. Everything is shuffled and handed out by a simulated
    Service Bus queue to ``--workers`` separate worker processes (``--threads`` deliveries each, ``--concurrency``
    in flight in all): a delivery whose handler raises is abandoned and redelivered at once (ahead of later
    messages, as Service Bus does) with its delivery count increased; after ``--max-deliveries`` it is
    dead-lettered; the messages a killed worker held come back when their lock expires (``--lock-seconds``).

    Timing keeps production's ratios: every deployed duration (lease, lease wait, ON24 timeout, retry budget,
    the queue's lock, the park backoff, RetryParked's period and budget) is read where it is defined and divided
    by one factor, ``--time-scale``; the values and their ratios are printed at the start and in the report.

    The ON24 and Dataverse stand-ins (another process) inject faults into ``--on24-faults`` and
    ``--dataverse-faults`` of their requests: 5xx, 429 with Retry-After, ON24's 403 "maximum number of calls",
    dropped connections, replies lost after the effect happened, slow answers, and answers applied only after
    the client gave up. Workers are killed with SIGKILL: at random times by this process (``--kill-every``
    seconds on average), and right after ON24 answered a registrant write, before the worker could record it
    in the ledger (``--kill-after-write``, a share of those answers).

    At the end it checks every registration: ON24 must hold exactly the registrant its newest change asks for
    (none after a cancel), nothing else may carry its ``exteventusercd`` (orphans), its ledger row must hold no
    lease and no pending registrant, and its CRM row must carry the ON24 registrant id.

How to run (from the repository root, after ``bash scripts/bootstrap.sh``):

    .venv/bin/python -m benchmarks.chaos [--registrations 10000] [--workers 4] [--seed 1]

Exit status: 0 when every final state is right, nothing is orphaned or dead-lettered and at least
``--min-kills`` kills happened; 1 otherwise; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import logging
import multiprocessing
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection, wait
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any

from benchmarks.common import KEY_SECRET_NAME, StandInServers, port_of, run_with_cleanup, stepper, worker_environment

ORG = "c4a5f6e7-0b1c-4d2e-8f3a-9b0c1d2e3f40"
FIRST_WEBINAR = 990001
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TIME_SCALE = 20.0  # every deployed duration divided by this; the ratios between them stay as deployed


@dataclass(frozen=True)
class Timing:
    """The durations that decide whether a busy registration dead-letters, as deployed or divided by a scale.

    What decides the outcome is how they compare: ``lease_wait x max_deliveries`` against the lease (a message
    that raised after every wait was dead-lettered before the lease of a killed delivery ran out), the lock
    against the lease (a killed worker's message comes back after the lock), ON24's timeout against the retry
    budget. Dividing every one by the same factor keeps all of them.
    """

    lease: float
    lease_wait: float
    lease_margin: float
    on24_timeout: float
    retry_budget: float
    lock: float
    park_backoff_base: float
    park_backoff_max: float
    retry_parked_budget: float
    retry_parked_every: float
    function_timeout: float
    max_deliveries: int
    park_after_deliveries: int

    def scaled(self, factor: float) -> Timing:
        """Every duration divided by ``factor`` (counts unchanged)."""
        durations = {name: getattr(self, name) / factor for name in self._durations()}
        return replace(self, **durations)

    def settings(self) -> dict[str, str]:
        """The app settings of this timing (the lock and delivery count are the simulated queue's)."""
        return {
            "REGISTRATION_LEASE_SECONDS": f"{self.lease:g}",
            "REGISTRATION_LEASE_WAIT_SECONDS": f"{self.lease_wait:g}",
            "REGISTRATION_LEASE_MARGIN_SECONDS": f"{self.lease_margin:g}",
            "ON24_TIMEOUT_SECONDS": f"{self.on24_timeout:g}",
            "RETRY_BUDGET_SECONDS": f"{self.retry_budget:g}",
            "PARK_AFTER_DELIVERIES": str(self.park_after_deliveries),
            # The settings' floors are 1 s: a finer scale keeps these two at 1 s (slower backoff, never faster).
            "PARK_BACKOFF_BASE_SECONDS": f"{max(1.0, self.park_backoff_base):g}",
            "PARK_BACKOFF_MAX_SECONDS": f"{max(1.0, self.park_backoff_max):g}",
            "RETRY_PARKED_BUDGET_SECONDS": f"{max(1.0, self.retry_parked_budget):g}",
        }

    def ratios(self) -> dict[str, float]:
        return {
            "lease wait x deliveries / lease": self.lease_wait * self.max_deliveries / self.lease,
            "lease / lease wait": self.lease / self.lease_wait,
            "lock / lease": self.lock / self.lease,
            "lease / ON24 timeout": self.lease / self.on24_timeout,
            "retry budget / ON24 timeout": self.retry_budget / self.on24_timeout,
            "park backoff base / lease": self.park_backoff_base / self.lease,
            "RetryParked period / lease": self.retry_parked_every / self.lease,
        }

    @classmethod
    def _durations(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.type in ("float", float)]


def deployed_timing() -> Timing:
    """The deployed values, read where they are defined: the settings' defaults (no infra template overrides
    them), the queue's lock and delivery count in ``infra/resources.bicep``, the timeout in ``host.json``."""
    from shared.settings import Settings

    def setting(name: str) -> Any:
        return Settings.model_fields[name].default

    bicep = (ROOT / "infra" / "resources.bicep").read_text(encoding="utf-8")

    def param(name: str) -> int:
        found = re.search(rf"^param {name} int = (\d+)", bicep, re.MULTILINE)
        if found is None:
            raise RuntimeError(f"infra/resources.bicep has no default for {name}")
        return int(found.group(1))

    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    hours, minutes, seconds = (float(part) for part in host["functionTimeout"].split(":"))
    schedule = str(setting("retry_parked_schedule")).split()
    if schedule[1:] != ["*"] * 5 or not schedule[0].isdigit():
        raise RuntimeError(f"RETRY_PARKED_SCHEDULE {' '.join(schedule)!r}: only once a minute is understood here")
    return Timing(
        lease=setting("registration_lease_seconds"),
        lease_wait=setting("registration_lease_wait_seconds"),
        lease_margin=setting("registration_lease_margin_seconds"),
        on24_timeout=setting("on24_timeout_seconds"),
        retry_budget=setting("retry_budget_seconds"),
        lock=float(param("queueLockDurationSeconds")),
        park_backoff_base=setting("park_backoff_base_seconds"),
        park_backoff_max=setting("park_backoff_max_seconds"),
        retry_parked_budget=setting("retry_parked_budget_seconds"),
        retry_parked_every=60.0,
        function_timeout=hours * 3600 + minutes * 60 + seconds,
        max_deliveries=param("maxDeliveryCount"),
        park_after_deliveries=setting("park_after_deliveries"),
    )


def describe_timing(deployed: Timing, soak: Timing, factor: float) -> list[str]:
    """The lines printed at the start (and kept for the report): deployed, scaled, and the ratios of both."""
    lines = [f"timing: every deployed duration / {factor:g} (deployed -> soak)"]
    for name in Timing._durations():
        lines.append(f"  {name:22} {getattr(deployed, name):8g} s -> {getattr(soak, name):.4g} s")
    lines.append(f"  max deliveries {deployed.max_deliveries}, park after {deployed.park_after_deliveries} deliveries")
    for (label, was), now in zip(deployed.ratios().items(), soak.ratios().values(), strict=True):
        lines.append(f"  ratio {label:34} deployed {was:.3g}, soak {now:.3g}")
    return lines


ON24_FAULTS = {"5xx": 3, "429": 2, "throttle403": 2, "drop": 2, "lost_reply": 3, "slow": 3, "late": 1}
DATAVERSE_FAULTS = {"5xx": 3, "429": 3, "drop": 2, "lost_reply": 2, "slow": 3}


# ---- the registrations and their messages -----------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    action: str  # register | update | cancel
    webinar: int
    email: str
    at: datetime


@dataclass
class Registration:
    registration_id: str
    changes: list[Change]
    crm_event_ids: dict[int, str] = field(default_factory=dict)

    @property
    def final(self) -> Change:
        return self.changes[-1]

    @property
    def expected(self) -> tuple[int, str] | None:
        """What ON24 must hold in the end: (webinar, email), or nothing after a cancel."""
        last = self.final
        return None if last.action == "cancel" else (last.webinar, last.email)


@dataclass
class Message:
    key: int
    message_id: str
    registration_id: str
    body: Any
    properties: dict[str, Any] | None
    enqueued_at: datetime
    sequence: int
    deliveries: int = 0


def plan_registrations(args: argparse.Namespace, rng: random.Random, start: datetime) -> list[Registration]:
    webinars = [FIRST_WEBINAR + n for n in range(args.webinars)]
    registrations = []
    for index in range(args.registrations):
        reg = str(uuid.uuid4())
        at = start + timedelta(seconds=index)
        webinar = rng.choice(webinars)
        email = f"p{index}.v0@soak.example"
        changes = [Change("register", webinar, email, at)]
        if rng.random() < args.email_changes:
            for version in range(1, rng.choice((1, 1, 2)) + 1):
                at += timedelta(minutes=1)
                email = f"p{index}.v{version}@soak.example"
                changes.append(Change("update", webinar, email, at))
        if rng.random() < args.moves:
            at += timedelta(minutes=1)
            webinar = rng.choice([w for w in webinars if w != webinar])
            changes.append(Change("update", webinar, email, at))
        if rng.random() < args.cancels:
            at += timedelta(minutes=1)
            changes.append(Change("cancel", webinar, email, at))
        registrations.append(Registration(reg, changes))
    return registrations


def build_messages(
    registrations: list[Registration], org_id: str, args: argparse.Namespace, rng: random.Random
) -> list[Message]:
    from sandbox.triggers import canonical_body, dataverse_body, dataverse_properties

    messages: list[Message] = []
    for registration in registrations:
        for number, change in enumerate(registration.changes):
            if rng.random() < args.dataverse_share:
                body: Any = dataverse_body(
                    org_id=org_id,
                    registration_id=registration.registration_id,
                    message="Create" if number == 0 else "Update",
                    at=change.at,
                ).decode()
                properties: dict[str, Any] | None = dataverse_properties("Create" if number == 0 else "Update")
            else:
                body = canonical_body(
                    org_id=org_id,
                    registration_id=registration.registration_id,
                    event_id=registration.crm_event_ids[change.webinar],
                    action=change.action,
                    webinar_id=str(change.webinar) if change.action != "cancel" else None,
                    attendee={"email": change.email, "firstName": "Soak", "lastName": f"Person {number}"}
                    if change.action != "cancel"
                    else None,
                    occurred_at=change.at,
                )
                properties = None
            copies = 2 if rng.random() < args.duplicates else 1
            for _ in range(copies):  # a duplicate is a second post: new message id, later enqueue time
                messages.append(
                    Message(
                        key=len(messages),
                        message_id=uuid.uuid4().hex,
                        registration_id=registration.registration_id,
                        body=body,
                        properties=properties,
                        enqueued_at=change.at + timedelta(seconds=rng.uniform(0.1, 30)),
                        sequence=len(messages) + 1,
                    )
                )
    rng.shuffle(messages)
    return messages


# ---- the stand-ins' process ---------------------------------------------------------------------------------------
class SoakStandIns(StandInServers):
    """ON24, Dataverse and Key Vault stand-ins in their own process, with faults and inspection."""

    def __init__(self) -> None:
        from sandbox.keyvault import KeyVaultStandIn, TestCertificateAuthority

        super().__init__()
        self._ca_dir = tempfile.mkdtemp(prefix="soak-ca-")
        self.ca = TestCertificateAuthority(Path(self._ca_dir))
        self.vault = KeyVaultStandIn(self.ca)
        self.vault.start()

    def vault_info(self) -> tuple[str, str]:
        from tests.conftest import random_key

        self.vault.set_secret(KEY_SECRET_NAME, random_key())
        return self.vault.url, str(self.ca.ca_path)

    def seed(
        self, client: tuple[str, str, str], webinars: list[int], registrations: list[dict[str, Any]]
    ) -> dict[int, str]:
        """The ON24 account and events, and CRM holding every registration's final state. Returns CRM event ids."""
        self.on24.add_client(*client)
        events = {}
        for webinar in webinars:
            self.on24.add_event(client[0], webinar, title=f"Soak webinar {webinar}")
            events[webinar] = self.dataverse.add_row(
                "msevtmgt_events",
                {
                    "msevtmgt_name": f"Soak {webinar}",
                    "msevtmgt_webinarid": str(webinar),
                    "msevtmgt_eventformat": 100000002,
                },
            )
        for item in registrations:
            contact = self.dataverse.add_row(
                "contacts", {"firstname": "Soak", "lastname": "Person", "emailaddress1": item["email"]}
            )
            self.dataverse.add_row(
                "msevtmgt_eventregistrations",
                {
                    "msevtmgt_eventregistrationid": item["registration_id"],
                    "msevtmgt_name": "SOAK",
                    "msevtmgt_eventid": events[item["webinar"]],
                    "msevtmgt_contactid": contact,
                    "msevtmgt_iscanceled": item["cancelled"],
                    "statecode": 0,
                },
            )
        return events

    def set_chaos(self, on24_rate: float, dataverse_rate: float, seed: int, timeout: float = 0.5) -> None:
        """Faults on; slow answers come within ``timeout`` (ON24_TIMEOUT_SECONDS), late ones after it but within
        the time an unanswered request may still land (the quiet time, one more timeout)."""
        from sandbox.on24 import MSG_THROTTLED
        from sandbox.server import Chaos

        slow, late = (0.1 * timeout, 0.6 * timeout), (1.1 * timeout, 1.5 * timeout)
        self.on24.chaos = Chaos(on24_rate, dict(ON24_FAULTS), seed, slow=slow, late=late,
                                throttle_body={"message": MSG_THROTTLED}) if on24_rate else None  # fmt: skip
        self.dataverse.chaos = (
            Chaos(dataverse_rate, dict(DATAVERSE_FAULTS), seed + 1, slow=slow) if dataverse_rate else None
        )

    def set_on24_down(self, status: int | None) -> None:
        self.on24.down = status

    def fault_counts(self) -> dict[str, dict[str, int]]:
        return {
            "on24": dict(self.on24.chaos.counts) if self.on24.chaos else {},
            "dataverse": dict(self.dataverse.chaos.counts) if self.dataverse.chaos else {},
        }

    def request_counts(self) -> dict[str, int]:
        return {"on24": self.on24.count() - self.on24.down_answered, "dataverse": self.dataverse.count(),
                "on24_outage": self.on24.down_answered}  # fmt: skip

    def registrants(self, webinars: list[int]) -> list[dict[str, Any]]:
        return [
            {"webinar": webinar, "email": r["email"], "reg": r.get("exteventusercd"), "deleted": r["isdeleted"],
             "eventuserid": str(r["eventuserid"])}
            for webinar in webinars
            for r in self.on24.registrants(webinar)
        ]  # fmt: skip

    def crm_registration_ids(self) -> dict[str, str | None]:
        return {
            row["msevtmgt_eventregistrationid"]: row.get("msevtmgt_webinarregistrationid")
            for row in self.dataverse.rows("msevtmgt_eventregistrations")
        }

    def close(self) -> None:
        super().close()
        self.vault.close()


class _Manager(BaseManager):
    pass


_Manager.register("SoakStandIns", SoakStandIns)


def _stand_ins_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# ---- worker processes ---------------------------------------------------------------------------------------------
def worker_main(
    conn: Connection, env: dict[str, str], threads: int, on24_port: int, kill_share: float, seed: int
) -> None:
    """One Functions worker: runs RegisterAttendee.main for the messages it is handed, ``threads`` at a time."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(env)
    logging.basicConfig(level=logging.CRITICAL)  # the parent counts outcomes; the records themselves are not needed
    import httpx

    from RegisterAttendee import main
    from sandbox.triggers import service_bus_message
    from shared.errors import ConfigError, TransientError

    rng = random.Random(seed)
    original_send = httpx.Client.send

    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        response = original_send(self, request, **kwargs)
        wrote = request.method in ("POST", "PATCH") and request.url.path.endswith("/registrant")
        if request.url.port == on24_port and wrote and response.status_code == 200 and rng.random() < kill_share:
            os.kill(os.getpid(), signal.SIGKILL)  # ON24 holds the effect; the ledger will never hear of it from us
        return response

    httpx.Client.send = send  # type: ignore[method-assign]
    send_lock = threading.Lock()

    def deliver(item: dict[str, Any]) -> None:
        message = service_bus_message(
            item["body"],
            message_id=item["message_id"],
            delivery_count=item["delivery"],
            enqueued_time=datetime.fromisoformat(item["enqueued_at"]),
            application_properties=item["properties"],
            sequence_number=item["sequence"],
        )
        try:
            main(message)
            result: tuple[Any, ...] = ("done", item["key"], "")
        except (TransientError, ConfigError) as exc:
            result = ("retry", item["key"], type(exc).__name__)
        except Exception as exc:  # the host abandons on any exception
            result = ("retry", item["key"], f"unexpected {type(exc).__name__}: {exc}")
        with send_lock:
            conn.send(result)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        conn.send(("ready", -1, ""))
        while True:
            try:
                item = conn.recv()
            except (EOFError, OSError):
                return
            if item is None:
                return
            pool.submit(deliver, item)


@dataclass
class Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    held: set[int] = field(default_factory=set)
    killed_by_us: bool = False
    ready: bool = False


@dataclass
class Stats:
    deliveries: int = 0
    abandoned: int = 0
    lock_expired: int = 0
    kills_external: int = 0
    kills_after_write: int = 0
    dead_lettered: list[int] = field(default_factory=list)
    unexpected: Counter[str] = field(default_factory=Counter)


class ServiceBusSimulation:
    """A queue with delivery counts, lock expiry, redelivery on raise or crash, and dead-lettering."""

    def __init__(self, messages: list[Message], args: argparse.Namespace, spawn: Any, rng: random.Random) -> None:
        self.messages = {m.key: m for m in messages}
        self.available: deque[int] = deque(m.key for m in messages)
        self.returning: list[tuple[float, int]] = []  # (when the lock expires, key)
        self.done: set[int] = set()
        self.args, self.spawn, self.rng = args, spawn, rng
        self.workers: list[Worker] = []
        self.stats = Stats()
        self.next_kill = time.monotonic() + self._kill_gap()

    def _kill_gap(self) -> float:
        return self.rng.expovariate(1 / self.args.kill_every) if self.args.kill_every > 0 else float("inf")

    def start_workers(self) -> None:
        for _ in range(self.args.workers):
            self.workers.append(self.spawn())
        for worker in self.workers:
            self._await_ready(worker)

    def _await_ready(self, worker: Worker) -> None:
        if worker.conn.poll(120):
            worker.ready = worker.conn.recv()[0] == "ready"
        if not worker.ready:
            raise RuntimeError("a worker process did not start")

    def run(self, report: Any, tick: Any = None) -> None:
        total = len(self.messages)
        last_report = time.monotonic()
        while len(self.done) + len(self.stats.dead_lettered) < total:
            now = time.monotonic()
            if tick is not None:
                tick(len(self.done) / total)
            while self.returning and self.returning[0][0] <= now:  # Service Bus delivers in sequence order
                self.available.appendleft(heapq.heappop(self.returning)[1])
            self._dispatch()
            conns = [w.conn for w in self.workers]
            for conn in wait(conns, timeout=0.02):
                worker = next(w for w in self.workers if w.conn is conn)
                try:
                    status, key, detail = conn.recv()
                except (EOFError, OSError):
                    self._bury(worker)
                    continue
                self._settle(worker, status, key, detail)
            for worker in list(self.workers):
                if not worker.process.is_alive():
                    self._bury(worker)
            if now >= self.next_kill and self._kills() < self.args.max_kills:
                self._kill_one()
                self.next_kill = now + self._kill_gap()
            if now - last_report >= 5:
                last_report = now
                report(f"{len(self.done)}/{total} messages completed, {self.stats.deliveries} deliveries, "
                       f"{self._kills()} kills, {len(self.stats.dead_lettered)} dead-lettered")  # fmt: skip

    def _kills(self) -> int:
        return self.stats.kills_external + self.stats.kills_after_write

    def _dispatch(self) -> None:
        in_flight = sum(len(w.held) for w in self.workers)
        while self.available and in_flight < self.args.concurrency:
            worker = min((w for w in self.workers if w.ready), key=lambda w: len(w.held), default=None)
            if worker is None or len(worker.held) >= self.args.threads:
                return
            key = self.available.popleft()
            message = self.messages[key]
            message.deliveries += 1
            self.stats.deliveries += 1
            item = {"key": key, "body": message.body, "message_id": message.message_id, "delivery": message.deliveries,
                    "enqueued_at": message.enqueued_at.isoformat(), "properties": message.properties,
                    "sequence": message.sequence}  # fmt: skip
            try:
                worker.conn.send(item)
            except (BrokenPipeError, OSError):
                message.deliveries -= 1
                self.stats.deliveries -= 1
                self.available.appendleft(key)
                self._bury(worker)
                return
            worker.held.add(key)
            in_flight += 1

    def _settle(self, worker: Worker, status: str, key: int, detail: str) -> None:
        if status == "ready":
            return
        worker.held.discard(key)
        if status == "done":
            self.done.add(key)
            return
        self.stats.abandoned += 1
        if detail.startswith("unexpected"):
            self.stats.unexpected[detail] += 1
        self._redeliver_or_dead_letter(key, delay=0.0)

    def _redeliver_or_dead_letter(self, key: int, *, delay: float) -> None:
        if self.messages[key].deliveries >= self.args.max_deliveries:
            self.stats.dead_lettered.append(key)
        elif delay:
            heapq.heappush(self.returning, (time.monotonic() + delay, key))
        else:  # an abandoned message is available again at once, ahead of the later ones
            self.available.appendleft(key)

    def _bury(self, worker: Worker) -> None:
        """A dead worker: its messages come back when their locks expire; a new worker takes its place."""
        if worker not in self.workers:
            return
        self.workers.remove(worker)
        worker.process.join(5)
        if not worker.killed_by_us:
            self.stats.kills_after_write += 1
        for key in worker.held:
            self.stats.lock_expired += 1
            self._redeliver_or_dead_letter(key, delay=self.args.lock_seconds)
        with contextlib.suppress(OSError):
            worker.conn.close()
        replacement = self.spawn()
        self._await_ready(replacement)
        self.workers.append(replacement)

    def _kill_one(self) -> None:
        busy = [w for w in self.workers if w.held and w.process.is_alive()]
        if not busy:
            return
        victim = self.rng.choice(busy)
        victim.killed_by_us = True
        self.stats.kills_external += 1
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim.process.pid or 0, signal.SIGKILL)

    def stop(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(OSError, BrokenPipeError):
                worker.conn.send(None)
        for worker in self.workers:
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()


class Outage:
    """ON24 answers every request with 503 for ``seconds``, starting when a third of the messages are done."""

    def __init__(self, stand_ins: Any, seconds: float, report: Any) -> None:
        self._stand_ins, self._seconds, self._report = stand_ins, seconds, report
        self._ends: float | None = None
        self.happened = False

    def tick(self, done: float) -> None:
        now = time.monotonic()
        if self._seconds > 0 and not self.happened and done >= 1 / 3:
            self.happened, self._ends = True, now + self._seconds
            self._stand_ins.set_on24_down(503)
            self._report(f"ON24 outage: every request answered 503 for {self._seconds:g} s")
        elif self._ends is not None and now >= self._ends:
            self.end()

    def finish(self) -> None:
        """Let an outage still on when the deliveries settled run its course: it ends on time, not with the drain."""
        if self._ends is not None:
            time.sleep(max(0.0, self._ends - time.monotonic()))
            self.end()

    def end(self) -> None:
        if self._ends is not None:
            self._ends = None
            self._stand_ins.set_on24_down(None)
            self._report("ON24 is back")


class ParkedRetries:
    """RetryParked, run by the soak's own process every ``every`` seconds (the timer's minute, time-scaled)."""

    def __init__(self, every: float) -> None:
        self._every = every
        self.redriven: Counter[str] = Counter()
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="retry-parked", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        from shared.app import get_app
        from shared.entrypoints.timers import run_retry_parked

        while not self._stop.wait(self._every):
            with contextlib.suppress(Exception):  # storage hiccups: the next run tries again, as the timer would
                self.redriven.update(run_retry_parked(get_app()).outcomes)
                self.runs += 1

    def drain(self, report: Any, timeout: float = 300.0) -> None:
        from shared.app import get_app

        deadline = time.monotonic() + timeout
        while get_app().parked.org_ids() and time.monotonic() < deadline:
            time.sleep(1.0)
        report(f"parking drained: {sum(self.redriven.values())} parked messages re-driven in {self.runs} runs")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


# ---- checking the end state ---------------------------------------------------------------------------------------
@dataclass
class Verdict:
    wrong: list[str] = field(default_factory=list)
    orphans: int = 0
    ledger_unsettled: list[str] = field(default_factory=list)
    crm_out_of_step: list[str] = field(default_factory=list)


def verify(registrations: list[Registration], registrants: list[dict[str, Any]], crm_ids: dict[str, str | None],
           ledger: Any, org_id: str) -> Verdict:  # fmt: skip
    verdict = Verdict()
    active: dict[str, list[dict[str, Any]]] = {}
    for record in registrants:
        if not record["deleted"] and record["reg"]:
            active.setdefault(record["reg"], []).append(record)
    ours = {r.registration_id for r in registrations}
    verdict.orphans += sum(len(records) for reg, records in active.items() if reg not in ours)
    for registration in registrations:
        reg = registration.registration_id
        held = [(r["webinar"], r["email"].lower()) for r in active.get(reg, [])]
        expected = registration.expected
        want = [] if expected is None else [(expected[0], expected[1].lower())]
        if held != want:
            verdict.wrong.append(f"{reg}: ON24 holds {held}, its newest change asks for {want}")
            verdict.orphans += len([h for h in held if h not in want])
        entry = ledger.get(org_id, reg)
        unsettled = entry is None or entry.lease_id or getattr(entry, "intent", None) or getattr(entry, "pending", ())
        if unsettled:
            verdict.ledger_unsettled.append(f"{reg}: ledger row {entry!r}")
        elif (entry.state == "registered") != (expected is not None):
            wanted = "registered" if expected else "cancelled"
            verdict.wrong.append(f"{reg}: ledger state {entry.state}, expected {wanted}")
        if expected is not None and held == want:
            registrant_id = active[reg][0]["eventuserid"]
            if crm_ids.get(reg) != registrant_id:
                verdict.crm_out_of_step.append(f"{reg}: CRM carries {crm_ids.get(reg)}, ON24 id is {registrant_id}")
    return verdict


# ---- main -------------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--registrations", type=int, default=10_000, help="CRM registrations (10000)")
    add("--webinars", type=int, default=4, help="ON24 webinars they are spread over (4)")
    add("--email-changes", type=float, default=0.4, help="share with one or two email changes (0.4)")
    add("--moves", type=float, default=0.15, help="share moved to another webinar (0.15)")
    add("--cancels", type=float, default=0.25, help="share cancelled in the end (0.25)")
    add("--duplicates", type=float, default=0.3, help="share of messages posted twice (0.3)")
    add("--dataverse-share", type=float, default=0.4, help="share of Dataverse-format messages (0.4)")
    add("--workers", type=int, default=4, help="worker processes (4)")
    add("--threads", type=int, default=4, help="concurrent deliveries per worker (4)")
    add("--concurrency", type=int, default=16, help="deliveries in flight in all (16)")
    add(
        "--time-scale",
        type=float,
        default=DEFAULT_TIME_SCALE,
        help=f"divide every deployed duration (lease, waits, timeouts, lock, backoff) by this ({DEFAULT_TIME_SCALE:g})",
    )
    add("--max-deliveries", type=int, default=None, help="deliveries before dead-lettering (the deployed count)")
    add(
        "--lock-seconds",
        type=float,
        default=None,
        help="lock duration: when a dead worker's messages return (the deployed one, time-scaled)",
    )
    add("--on24-faults", type=float, default=0.2, help="share of ON24 requests that fail (0.2)")
    add("--dataverse-faults", type=float, default=0.1, help="share of Dataverse requests that fail (0.1)")
    add("--kill-every", type=float, default=4.0, help="mean seconds between external SIGKILLs, 0 for none (4)")
    add(
        "--kill-after-write",
        type=float,
        default=0.002,
        help="share of ON24 registrant writes after which the worker is killed before recording it (0.002)",
    )
    add(
        "--outage-seconds",
        type=float,
        default=20.0,
        help="ON24 down (503) this long, a third of the way through: deliveries park, RetryParked re-drives (20)",
    )
    add("--max-kills", type=int, default=1_000_000, help="stop killing at random times after this many kills")
    add(
        "--drain-seconds",
        type=float,
        default=None,
        help="how long RetryParked may take to re-drive what is parked once every message settled "
        "(default: 100 RetryParked periods + the longest backoff, time-scaled)",
    )
    add("--min-kills", type=int, default=50, help="fail unless at least this many kills happened (50)")
    add("--seed", type=int, default=1, help="random seed (1)")
    args = parser.parse_args(argv)
    if args.registrations < 1 or args.workers < 1 or args.threads < 1 or args.concurrency < 1:
        parser.error("--registrations, --workers, --threads and --concurrency must be positive")
    if args.time_scale <= 0:
        parser.error("--time-scale must be positive")
    args.deployed = deployed_timing()
    args.timing = args.deployed.scaled(args.time_scale)
    if args.max_deliveries is None:
        args.max_deliveries = args.deployed.max_deliveries
    if args.lock_seconds is None:
        args.lock_seconds = args.timing.lock
    if args.drain_seconds is None:
        args.drain_seconds = max(300.0, 100 * args.timing.retry_parked_every + args.timing.park_backoff_max)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run_with_cleanup(run, parse_args(argv))


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    step = stepper()
    started = time.monotonic()
    timing_lines = describe_timing(args.deployed, args.timing, args.time_scale)
    for line in timing_lines:
        step(line)
    rng = random.Random(args.seed)
    manager = _Manager(ctx=multiprocessing.get_context("fork"))
    manager.start(_stand_ins_signals)
    stack.callback(manager.shutdown)
    stand_ins: Any = manager.SoakStandIns()  # type: ignore[attr-defined]
    stack.callback(stand_ins.close)

    from sandbox.azurite import Azurite
    from sandbox.triggers import http_request
    from shared.app import get_app, reset_app
    from StoreCredentials import main as store_main
    from tests.conftest import ON24_CLIENT_ID, ON24_KEY, ON24_SECRET, credentials_body

    azurite = Azurite(("blob", "table"))
    stack.callback(azurite.stop)
    azurite.start()
    vault_url, ca_path = stand_ins.vault_info()
    on24_url, dataverse_url = stand_ins.urls()
    env = worker_environment(
        azurite.connection_string, vault_url, ca_path, on24_url, dataverse_url, **args.timing.settings()
    )
    for name in list(os.environ):
        if name.startswith(("ON24_", "DATAVERSE_", "KEY_VAULT", "CREDENTIALS_KEY", "WEBSITE_", "STATE_")):
            del os.environ[name]
    os.environ.update(env)
    reset_app()
    stack.callback(reset_app)
    logging.basicConfig(level=logging.CRITICAL)

    webinars = [FIRST_WEBINAR + n for n in range(args.webinars)]
    registrations = plan_registrations(args, rng, datetime.now(UTC) - timedelta(days=2))
    seed_rows = [{"registration_id": r.registration_id, "email": r.final.email, "webinar": r.final.webinar,
                  "cancelled": r.final.action == "cancel"} for r in registrations]  # fmt: skip
    seeded = stand_ins.seed((ON24_CLIENT_ID, ON24_KEY, ON24_SECRET), webinars, seed_rows)
    events = {int(k): v for k, v in seeded.items()}
    for registration in registrations:
        registration.crm_event_ids = events
    stand_ins.own_dataverse(ORG)  # a credentials save checks the org behind DATAVERSE_URL (WhoAmI)
    response = store_main(http_request("PUT", ORG, credentials_body()))
    if response.status_code != 200:
        raise RuntimeError(f"StoreCredentials answered {response.status_code}")
    messages = build_messages(registrations, ORG, args, rng)
    step(f"{len(registrations)} registrations, {len(messages)} messages; starting {args.workers} worker processes")

    spawn_context = multiprocessing.get_context("spawn")
    on24_port = port_of(on24_url)
    worker_seeds = iter(range(args.seed * 1000, args.seed * 1000 + 1_000_000))

    def spawn() -> Worker:
        parent, child = spawn_context.Pipe()
        process = spawn_context.Process(
            target=worker_main,
            args=(child, env, args.threads, on24_port, args.kill_after_write, next(worker_seeds)),
            daemon=True,
        )
        process.start()
        child.close()
        return Worker(process, parent)

    bus = ServiceBusSimulation(messages, args, spawn, rng)
    stack.callback(bus.stop)
    bus.start_workers()
    stand_ins.reset_logs()
    stand_ins.set_chaos(args.on24_faults, args.dataverse_faults, args.seed, args.timing.on24_timeout)
    step("faults on; delivering")
    delivering = time.monotonic()
    retrying = ParkedRetries(args.timing.retry_parked_every)
    retrying.start()
    outage = Outage(stand_ins, args.outage_seconds, step)
    try:
        bus.run(step, outage.tick)
        step("all messages settled; re-driving what is still parked")
        outage.finish()
        retrying.drain(step, timeout=args.drain_seconds)
    finally:
        retrying.stop()
        outage.end()
    delivered_in = time.monotonic() - delivering
    faults = stand_ins.fault_counts()
    requests = stand_ins.request_counts()
    stand_ins.set_chaos(0.0, 0.0, args.seed)
    bus.stop()
    step("all messages settled; checking the final states")

    verdict = verify(registrations, stand_ins.registrants(webinars), stand_ins.crm_registration_ids(),
                     get_app().ledger, ORG)  # fmt: skip
    still_parked = len(get_app().parked.for_org(ORG))
    stats = bus.stats
    kills = stats.kills_external + stats.kills_after_write
    on24_faults, dataverse_faults = sum(faults["on24"].values()), sum(faults["dataverse"].values())
    print()
    print("RegisterAttendee chaos soak")
    for line in timing_lines:
        print(f"  {line}")
    print(
        f"  queue ....................... lock {args.lock_seconds:g} s (a killed worker's messages come back "
        f"then), {args.max_deliveries} deliveries before dead-lettering, a raise redelivered at once"
    )
    print(
        f"  registrations ............... {len(registrations)} over {args.webinars} webinars "
        f"({sum(len(r.changes) > 1 for r in registrations)} changed, "
        f"{sum(r.final.action == 'cancel' for r in registrations)} cancelled)"
    )
    print(
        f"  messages .................... {len(messages)} ({sum(1 for m in messages if m.properties)} Dataverse, "
        f"duplicates included), shuffled"
    )
    print(
        f"  deliveries .................. {stats.deliveries} in {delivered_in:.0f} s "
        f"({stats.deliveries / max(delivered_in, 0.001):.0f}/s), {args.workers} processes x {args.threads}, "
        f"{args.concurrency} in flight"
    )
    print(f"  redeliveries ................ {stats.abandoned} after a raise, {stats.lock_expired} after a lock expired")
    print(
        f"  faults: ON24 ................ {on24_faults} of {requests['on24']} requests outside the outage "
        f"({on24_faults / max(requests['on24'], 1):.0%}): {_counts(faults['on24'])}"
    )
    print(
        f"  faults: Dataverse ........... {dataverse_faults} of {requests['dataverse']} requests "
        f"({dataverse_faults / max(requests['dataverse'], 1):.0%}): {_counts(faults['dataverse'])}"
    )
    print(
        f"  kills (SIGKILL) ............. {kills}: {stats.kills_external} at random times, "
        f"{stats.kills_after_write} between an ON24 write and its ledger record"
    )
    print(f"  ON24 outage ................. {args.outage_seconds:g} s, {requests['on24_outage']} requests answered 503")
    print(f"  dead-lettered ............... {len(stats.dead_lettered)}")
    print(
        f"  parked, then re-driven ...... {sum(retrying.redriven.values())} ({_counts(dict(retrying.redriven))}); "
        f"{still_parked} still parked"
    )
    print(f"  unexpected exceptions ....... {sum(stats.unexpected.values())} {dict(stats.unexpected) or ''}")
    print(f"  wrong final states .......... {len(verdict.wrong)}")
    print(f"  orphan registrants .......... {verdict.orphans}")
    print(f"  ledger rows not settled ..... {len(verdict.ledger_unsettled)}")
    print(f"  CRM rows out of step ........ {len(verdict.crm_out_of_step)}")
    print(f"  wall time ................... {time.monotonic() - started:.0f} s")
    for line in (verdict.wrong + verdict.ledger_unsettled + verdict.crm_out_of_step)[:20]:
        print(f"    {line}")
    failed = (verdict.wrong or verdict.orphans or verdict.ledger_unsettled or verdict.crm_out_of_step
              or stats.dead_lettered or stats.unexpected or still_parked)  # fmt: skip
    if failed:
        print("FAIL: the soak found a broken promise")
        return 1
    if kills < args.min_kills:
        print(f"FAIL: only {kills} kills, fewer than --min-kills {args.min_kills}")
        return 1
    print("PASS")
    return 0


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"


if __name__ == "__main__":
    sys.exit(main())
