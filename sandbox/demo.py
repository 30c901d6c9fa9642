"""``python -m sandbox demo``: the product's main job end to end on one machine, with checks.

What it runs (all on 127.0.0.1, nothing to configure):

* Azurite (Table Storage: org credentials, the registration ledger, sync state; Blob Storage: the match
  indexes PullMetrics keeps), the HTTPS Key Vault stand-in
  (throwaway CA; holds the credentials encryption key), the ON24 stand-in (one account, one webinar that went
  live two hours ago) and the Dataverse stand-in (a CRM org with accounts, ~50 contacts and their registrations);
* the real function entry points, fed objects built with the ``azure.functions`` library's own types and
  converters, exactly as the worker builds them: ``StoreCredentials`` / ``CredentialsStatus`` /
  ``RemoveCredentials`` (``func.HttpRequest``), ``RegisterAttendee`` (Service Bus messages: canonical and
  Dataverse RemoteExecutionContext bodies, duplicates, a cancellation, a contact without email) and
  ``PullMetrics`` (``TimerRequest``);
* then prints what a CRM user would see: each registration's publishing state, ON24 registrant id and the
  viewing minutes / interactions of its check-in, and a summary.

Every step checks its result; the first unexpected one ends the run with exit status 1 and a message. Azurite
(a child process in its own process group) and the stand-ins are always stopped, on Ctrl-C (exit 130) and
SIGTERM (exit 143) too.

The helpers here (``start_sandbox``, ``seed_crm``, ``SignalGuard``) are also used by ``python -m sandbox serve``.
The small trigger-object builders are deliberately copied from ``tests/`` rather than imported: the demo does not
depend on the test suite.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from azure.functions.timer import TimerRequest

from sandbox.azurite import Azurite
from sandbox.dataverse import DataverseStandIn
from sandbox.host import page_url
from sandbox.keyvault import KeyVaultStandIn, TestCertificateAuthority
from sandbox.on24 import On24StandIn
from sandbox.triggers import (
    canonical_body,
    dataverse_body,
    dataverse_properties,
    http_request,
    service_bus_message,
)

# ---- the demo's fixed world --------------------------------------------------------------------------------------
ORG_ID = "3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b"  # the CRM organization (Dataverse OrganizationId)
ON24_CLIENT_ID = "22001"
ON24_EVENT_ID = 5551234
WEBINAR_TITLE = "Fabrikam Product Summit (webinar)"
KEY_SECRET_NAME = "on24-credentials-key"
TABLE_PREFIX = "demo"
IDS = uuid.UUID("6b3c1f0e-8d2a-4c5b-9e7f-0a1b2c3d4e5f")  # namespace of the seeded rows' deterministic ids

REGISTRATIONS = "msevtmgt_eventregistrations"
CHECKINS = "msevtmgt_checkins"
PUBLISHING_STATES = {
    100000000: "Pending",
    100000001: "Published",
    100000002: "Parent webinar failed",
    100000003: "Failed to publish",
    100000004: "Webinar provider error",
}
MAX_DELIVERIES = 5  # Service Bus maxDeliveryCount in this demo: a message still failing after that is dead-lettered

ACCOUNTS = (
    ("Fabrikam Ltd", "fabrikam.example"),
    ("Contoso Pharmaceuticals", "contoso.example"),
    ("Northwind Traders", "northwind.example"),
    ("Tailspin Toys", "tailspin.example"),
)
JOB_TITLES = (
    "Marketing Manager",
    "IT Director",
    "Data Analyst",
    "Head of Operations",
    "Software Engineer",
    "Sales Lead",
    "Finance Director",
    "Product Owner",
)
# (first name, last name, country): invented people, deterministic, several non-ASCII names.
PEOPLE = (
    ("Zoë", "Ångström", "Sweden"),
    ("Jürgen", "Weißmann", "Germany"),
    ("Søren", "Lindqvist", "Denmark"),
    ("Amélie", "Durand", "France"),
    ("José", "Álvarez", "Spain"),
    ("Małgorzata", "Nowak", "Poland"),
    ("Çağla", "Yılmaz", "Turkey"),  # noqa: RUF001 - Turkish dotless i
    ("Björn", "Ekström", "Sweden"),
    ("Chloé", "Lefèvre", "France"),
    ("Ngozi", "Okafor", "Nigeria"),
    ("Hiroshi", "Tanaka", "Japan"),
    ("Priya", "Raman", "India"),
    ("Liam", "O'Connor", "Ireland"),
    ("Sofía", "Castaño", "Colombia"),
    ("Mateus", "Gonçalves", "Brazil"),
    ("Ana", "Kovačević", "Croatia"),
    ("Dmitri", "Volkov", "Estonia"),
    ("Aoife", "Ní Bhriain", "Ireland"),
    ("Oskar", "Nyström", "Finland"),
    ("Fatima", "Al-Sayed", "United Arab Emirates"),
    ("Mei", "Chen", "Singapore"),
    ("Tomás", "Ó Briain", "Ireland"),
    ("Ingrid", "Solberg", "Norway"),
    ("Emma", "Johansson", "Sweden"),
    ("Noah", "Fischer", "Germany"),
    ("Léa", "Moreau", "Belgium"),
    ("Lukáš", "Novák", "Czechia"),
    ("Eva", "Horváth", "Hungary"),
    ("Mikael", "Häkkinen", "Finland"),
    ("Aino", "Virtanen", "Finland"),
    ("Rafael", "Peña", "Mexico"),
    ("Lucía", "Fernández", "Argentina"),
    ("Kwame", "Mensah", "Ghana"),
    ("Thandiwe", "Dlamini", "South Africa"),
    ("Olivia", "Smith", "United Kingdom"),
    ("James", "Whitfield", "United States"),
    ("Grace", "Adeyemi", "Nigeria"),
    ("Hannah", "Müller", "Austria"),
    ("Felix", "Schröder", "Germany"),
    ("Julia", "Kowalczyk", "Poland"),
    ("Marek", "Dvořák", "Czechia"),
    ("Nora", "Haugen", "Norway"),
    ("Elif", "Demir", "Turkey"),
    ("Yusuf", "Öztürk", "Turkey"),
    ("Isabella", "Rossi", "Italy"),
    ("Matteo", "Bianchi", "Italy"),
    ("Camille", "Rousseau", "Switzerland"),
    ("Daniel", "Cohen", "Israel"),
    ("Sara", "Lindberg", "Sweden"),
    ("Pedro", "Araújo", "Portugal"),
)
# Addresses of the markets we sell to, as the CRM holds them: a German umlaut and ß, a Nordic ø and ö, Cyrillic.
# They are registered in ON24 with the domain in its ASCII form (xn--...), and matched back whatever its spelling.
MARKET_EMAILS = {
    "Jürgen Weißmann": "jürgen.weißmann@bücher.example",
    "Søren Lindqvist": "søren.lindqvist@företag.example",
    "Dmitri Volkov": "дмитрий.волков@пример.example",
}
NO_EMAIL_PERSON = ("Élodie", "Marchand", "France")
LATE_PERSON = ("Wiktor", "Zieliński", "Poland")  # registers after the integration was switched off
WALK_IN_EMAIL = "walk.in@partner.example"  # registered directly in ON24: no CRM registration matches
_TRANSLIT = str.maketrans({"ß": "ss", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ł": "l", "Ł": "L", "\u0131": "i"})


class DemoFailure(Exception):
    """A step did not produce the expected result."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived (a BaseException, so no ``except Exception`` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalGuard:
    """Turns SIGINT/SIGTERM into ``Interrupted`` in the main thread, once; ``held()`` defers it.

    Deferring matters while a child process is being started: an interrupt between ``fork`` and the moment its
    pid is remembered would leave it running. During cleanup, further signals are ignored.
    """

    def __init__(self) -> None:
        self._hold = 0
        self._pending: int | None = None
        self._fired = False
        self._cleaning = False
        self._previous: dict[int, Any] = {}

    def install(self) -> SignalGuard:
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signum == signal.SIGINT and signal.getsignal(signum) == signal.SIG_IGN:
                continue  # started in the background with Ctrl-C ignored: keep it so (as Python itself does)
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def cleaning_up(self) -> None:
        """From now on a signal changes nothing: cleanup finishes (it takes a second or two)."""
        self._cleaning = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._cleaning or self._fired:
            return
        if self._hold:
            self._pending = signum
            return
        self._fired = True
        raise Interrupted(signum)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._hold += 1
        try:
            yield
        finally:
            self._hold -= 1
            if not self._hold and self._pending is not None and not self._cleaning and not self._fired:
                signum, self._pending = self._pending, None
                self._fired = True
                raise Interrupted(signum)


def say(text: str = "") -> None:
    print(text, flush=True)


# ---- the running sandbox -----------------------------------------------------------------------------------------
@dataclass
class Sandbox:
    """Azurite and the three stand-ins, running; ``on24_key``/``on24_secret`` are the ON24 account's tokens."""

    azurite: Azurite
    vault: KeyVaultStandIn
    on24: On24StandIn
    dataverse: DataverseStandIn
    on24_key: str
    on24_secret: str
    webinar_live: datetime

    def app_settings(self) -> dict[str, str]:
        """The app settings a worker needs to use this sandbox (see tests/conftest.py)."""
        return {
            "AzureWebJobsStorage": self.azurite.connection_string,
            "STATE_TABLE_PREFIX": TABLE_PREFIX,
            "KEY_VAULT_URL": self.vault.url,
            "CREDENTIALS_KEY_SECRET_NAME": KEY_SECRET_NAME,
            "KEY_VAULT_AUTH": "none",
            "REQUESTS_CA_BUNDLE": str(self.vault.ca.ca_path),
            "ON24_BASE_URL": self.on24.url,
            "DATAVERSE_URL": self.dataverse.url,
            "DATAVERSE_AUTH": "none",
        }


def start_sandbox(stack: ExitStack, guard: SignalGuard, services: tuple[str, ...] = ("blob", "table")) -> Sandbox:
    """Start Azurite and the stand-ins; everything started is stopped when ``stack`` closes."""
    workdir = Path(tempfile.mkdtemp(prefix="sandbox-demo-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)

    azurite = Azurite(services)
    stack.callback(azurite.stop)
    with guard.held():  # no interrupt between starting the child and remembering it
        try:
            azurite.start()
        except (RuntimeError, FileNotFoundError) as exc:
            raise DemoFailure(f"Azurite: {exc}") from None
    ports = ", ".join(f"{name} 127.0.0.1:{port}" for name, port in azurite.ports.items())
    say(f"      Azurite (in memory): {ports}")

    vault = KeyVaultStandIn(TestCertificateAuthority(workdir))
    stack.callback(vault.close)
    vault.start()
    vault.set_secret(KEY_SECRET_NAME, base64.b64encode(os.urandom(32)).decode("ascii"))
    say(f"      Key Vault stand-in:  {vault.url} (HTTPS, throwaway CA {vault.ca.ca_path})")

    on24 = On24StandIn()
    stack.callback(on24.close)
    on24.start()
    key, secret = f"sandbox-key-{secrets.token_hex(8)}", f"Sandbox-Secret-{secrets.token_urlsafe(24)}"
    on24.add_client(ON24_CLIENT_ID, key, secret)
    live = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    on24.add_event(
        ON24_CLIENT_ID, ON24_EVENT_ID, title=WEBINAR_TITLE, livestart=live, liveend=live + timedelta(hours=1)
    )
    say(f"      ON24 stand-in:       {on24.url} (client {ON24_CLIENT_ID}, event {ON24_EVENT_ID}, live 2 hours ago)")

    dataverse = DataverseStandIn(organization_id=ORG_ID)
    stack.callback(dataverse.close)
    dataverse.start()
    say(f"      Dataverse stand-in:  {dataverse.url}")
    return Sandbox(azurite, vault, on24, dataverse, key, secret, live)


# ---- the CRM org -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Person:
    """A seeded contact and its event registration."""

    first: str
    last: str
    email: str | None
    company: str
    job_title: str
    country: str
    contact_id: str
    registration_id: str

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


@dataclass
class CrmSeed:
    org_id: str
    event_id: str
    account_ids: dict[str, str]
    people: list[Person]  # with email, in registration order
    no_email: Person


def _row_id(kind: str, key: str) -> str:
    return str(uuid.uuid5(IDS, f"{kind}:{key}"))


def ascii_slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text.translate(_TRANSLIT)).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in plain.lower() if ch.isalnum())


def add_person(
    dataverse: DataverseStandIn,
    seed_event_id: str,
    accounts: dict[str, str],
    index: int,
    person: tuple[str, str, str],
    *,
    with_email: bool = True,
) -> Person:
    """Seed a contact (parent account, job title, country) and its registration for the webinar event."""
    first, last, country = person
    company, domain = ACCOUNTS[index % len(ACCOUNTS)]
    key = f"{first} {last}"
    email = MARKET_EMAILS.get(key, f"{ascii_slug(first)}.{ascii_slug(last)}@{domain}") if with_email else None
    job = JOB_TITLES[index % len(JOB_TITLES)]
    contact_id = dataverse.add_row(
        "contacts",
        {
            "contactid": _row_id("contact", key),
            "firstname": first,
            "lastname": last,
            "fullname": key,
            "emailaddress1": email,
            "jobtitle": job,
            "address1_country": country,
            "company": f"+1 425 555 {index:04d}",  # contact.company is a phone number column
            "parentcustomerid": accounts[company],
        },
    )
    registration_id = dataverse.add_row(
        REGISTRATIONS,
        {
            "msevtmgt_eventregistrationid": _row_id("registration", key),
            "msevtmgt_name": f"REG-{index + 1:04d}",
            "msevtmgt_eventid": seed_event_id,
            "msevtmgt_contactid": contact_id,
            "msevtmgt_iscanceled": False,
            "statecode": 0,
        },
    )
    return Person(first, last, email, company, job, country, contact_id, registration_id)


def seed_crm(sandbox: Sandbox) -> CrmSeed:
    """The demo org: accounts, a webinar event linked to the ON24 event, contacts, one registration each."""
    dataverse = sandbox.dataverse
    accounts = {
        name: dataverse.add_row("accounts", {"accountid": _row_id("account", name), "name": name})
        for name, _ in ACCOUNTS
    }
    event_id = dataverse.add_row(
        "msevtmgt_events",
        {
            "msevtmgt_eventid": _row_id("event", str(ON24_EVENT_ID)),
            "msevtmgt_name": WEBINAR_TITLE,
            "msevtmgt_webinarid": str(ON24_EVENT_ID),
            "msevtmgt_eventformat": 100000002,  # webinar
            "msevtmgt_eventstartdate": sandbox.webinar_live.isoformat(),
            "msevtmgt_eventenddate": (sandbox.webinar_live + timedelta(hours=1)).isoformat(),
        },
    )
    people = [add_person(dataverse, event_id, accounts, i, p) for i, p in enumerate(PEOPLE)]
    no_email = add_person(dataverse, event_id, accounts, len(PEOPLE), NO_EMAIL_PERSON, with_email=False)
    return CrmSeed(ORG_ID, event_id, accounts, people, no_email)


# ---- trigger objects (as the Functions worker builds them, by sandbox.triggers, which the tests use too) ----------
def person_body(person: Person, *, org_id: str, event_id: str) -> dict[str, Any]:
    """The integration's own message format (``webinar-registration/1``), carrying the attendee."""
    return canonical_body(
        org_id=org_id,
        registration_id=person.registration_id,
        event_id=event_id,
        webinar_id=str(ON24_EVENT_ID),
        attendee={
            "email": person.email,
            "firstName": person.first,
            "lastName": person.last,
            "company": person.company,
            "jobTitle": person.job_title,
            "country": person.country,
        },
    )


# ---- what the functions logged -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Delivery:
    """One RegisterAttendee invocation's outcome, from the structured log line of ``shared.entrypoints.queue``."""

    outcome: str
    reason: str | None
    registration_id: str | None


class FunctionLog(logging.Handler):
    """Collects the structured log lines of RegisterAttendee (``shared.entrypoints.queue``) and PullMetrics
    (``shared.entrypoints.timers``); keeps WARNING+ lines of the app to show them if something goes wrong."""

    METRIC_COUNTERS = ("pulled", "matched", "written", "unchanged", "unmatched", "failed")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.deliveries: list[Delivery] = []
        self.metric_runs: list[dict[str, int]] = []
        self.problems: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:  # called under the handler's own lock
        if record.name == "shared.entrypoints.queue" and hasattr(record, "outcome"):
            reason, registration = getattr(record, "reason", None), getattr(record, "registration_id", None)
            self.deliveries.append(Delivery(str(record.outcome), reason, registration))
        elif record.name == "shared.entrypoints.timers" and hasattr(record, "written"):
            self.metric_runs.append({name: int(getattr(record, name, 0)) for name in self.METRIC_COUNTERS})
        if record.levelno >= logging.WARNING:
            self.problems.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@contextlib.contextmanager
def captured_app_logs(verbose: bool) -> Iterator[FunctionLog]:
    """Route the app's logs (logger ``shared``) to a ``FunctionLog`` (and stderr with ``--verbose``)."""
    logger = logging.getLogger("shared")
    recorder = FunctionLog()
    saved = (logger.level, logger.propagate)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(recorder)
    stream: logging.Handler | None = None
    if verbose:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("  log %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(stream)
    try:
        yield recorder
    finally:
        logger.removeHandler(recorder)
        if stream is not None:
            logger.removeHandler(stream)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


@contextlib.contextmanager
def app_environment(settings: dict[str, str]) -> Iterator[None]:
    """Set the worker's app settings in this process (like tests/conftest.py), restoring them afterwards."""
    from shared.app import reset_app

    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("ON24_", "DATAVERSE_", "KEY_VAULT", "CREDENTIALS_KEY", "WEBSITE_", "STATE_")):
            del os.environ[name]
    os.environ.update(settings)
    reset_app()
    try:
        yield
    finally:
        reset_app()
        os.environ.clear()
        os.environ.update(saved)


# ---- the demo ----------------------------------------------------------------------------------------------------
STEPS = 10


def step(number: int, title: str) -> None:
    say()
    say(f"[{number}/{STEPS}] {title}")


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailure(message)


@dataclass
class Demo:
    """The demo's run state: the sandbox, the seeded org and what the functions did."""

    sandbox: Sandbox
    crm: CrmSeed
    log: FunctionLog
    outcomes: Counter[str] = field(default_factory=Counter)
    redeliveries: int = 0
    enqueued: dict[str, datetime] = field(default_factory=dict)  # message id -> when Service Bus accepted it

    def deliver(
        self,
        body: bytes | dict[str, Any],
        *,
        message_id: str | None = None,
        first_delivery: int = 1,
        dataverse_request: str | None = None,
    ) -> Delivery:
        """Hand one message to RegisterAttendee.main; redeliver on a transient fault, as Service Bus would."""
        from RegisterAttendee import main as register_attendee
        from shared.errors import ConfigError, TransientError

        message_id = message_id or uuid.uuid4().hex
        properties = (
            dataverse_properties(dataverse_request, organization="fabrikam.crm.dynamics.com")
            if dataverse_request
            else None
        )
        last_error = ""
        for delivery_count in range(first_delivery, first_delivery + MAX_DELIVERIES):
            seen = len(self.log.deliveries)
            message = service_bus_message(
                body,
                message_id=message_id,
                delivery_count=delivery_count,
                enqueued_time=self.enqueued.setdefault(message_id, datetime.now(UTC)),  # a redelivery keeps it
                application_properties=properties,
            )
            try:
                register_attendee(message)
            except TransientError as exc:
                self.redeliveries += 1
                last_error = str(exc)
                continue
            except ConfigError as exc:
                raise DemoFailure(f"RegisterAttendee: configuration error: {exc}") from None
            lines = self.log.deliveries[seen:]
            expect(bool(lines), f"RegisterAttendee logged no outcome for message {message_id}")
            self.outcomes[lines[-1].outcome] += 1
            return lines[-1]
        raise DemoFailure(f"message {message_id} failed {MAX_DELIVERIES} times (would be dead-lettered): {last_error}")


def run(args: argparse.Namespace, stack: ExitStack, guard: SignalGuard) -> None:
    from CredentialsStatus import main as credentials_status
    from PullMetrics import main as pull_metrics
    from RemoveCredentials import main as remove_credentials
    from shared.app import get_app
    from StoreCredentials import main as store_credentials

    started = time.monotonic()
    say("Sandbox demo: Dynamics 365 event management <-> ON24, end to end on 127.0.0.1")

    step(1, "Start Azurite and the Key Vault, ON24 and Dataverse stand-ins")
    sandbox = start_sandbox(stack, guard, ("blob", "table"))
    log = stack.enter_context(captured_app_logs(args.verbose))
    stack.enter_context(app_environment({**sandbox.app_settings(), "RETRY_BUDGET_SECONDS": "5"}))
    on24, dataverse = sandbox.on24, sandbox.dataverse

    step(2, f"Seed the CRM org {ORG_ID}")
    crm = seed_crm(sandbox)
    demo = Demo(sandbox, crm, log)
    people = crm.people
    say(
        f"      {len(ACCOUNTS)} accounts, {len(people) + 1} contacts (1 without an email address), "
        f"{len(people) + 1} registrations"
    )
    say(f"      event '{WEBINAR_TITLE}' ({crm.event_id}), msevtmgt_webinarid = {ON24_EVENT_ID}")

    step(3, "Store the org's ON24 credentials (StoreCredentials, PUT) and show the status (CredentialsStatus, GET)")
    body = {
        "clientId": ON24_CLIENT_ID,
        "accessTokenKey": sandbox.on24_key,
        "accessTokenSecret": sandbox.on24_secret,
        "dataverseUrl": dataverse.url,
    }
    response = store_credentials(http_request("PUT", ORG_ID, body))
    text = response.get_body().decode("utf-8")
    expect(response.status_code == 200, f"StoreCredentials answered {response.status_code}: {text}")
    expect(sandbox.on24_secret not in text and sandbox.on24_key not in text, "StoreCredentials echoed a secret")
    say(f"      PUT  -> {response.status_code}")
    response = credentials_status(http_request("GET", ORG_ID))
    status = json.loads(response.get_body())
    expect(response.status_code == 200 and status.get("configured") is True, f"CredentialsStatus: {status}")
    expect(sandbox.on24_secret not in json.dumps(status), "CredentialsStatus echoed a secret")
    say(
        f"      GET  -> {response.status_code} configured={status['configured']} status={status.get('status')} "
        f"clientId={status.get('clientId')} dataverseUrl={status.get('dataverseUrl')} "
        f"keyVersion={status.get('keyVersion')}"
    )
    say("      (the token key and secret are sealed with AES-256-GCM under the Key Vault key; never echoed)")

    step(4, f"Deliver {len(people)} registration messages to RegisterAttendee (half canonical, half Dataverse)")
    on24.reset_log()
    bodies: dict[str, tuple[bytes | dict[str, Any], str | None, str]] = {}  # registration -> body, request, id
    for index, person in enumerate(people):
        message_id = uuid.uuid4().hex
        if index % 2 == 0:
            payload: bytes | dict[str, Any] = person_body(person, org_id=ORG_ID, event_id=crm.event_id)
            request: str | None = None
        else:
            payload = dataverse_body(
                org_id=ORG_ID,
                registration_id=person.registration_id,
                event_id=crm.event_id,
                contact_id=person.contact_id,
            )
            request = "Create"
        bodies[person.registration_id] = (payload, request, message_id)
        delivery = demo.deliver(payload, message_id=message_id, dataverse_request=request)
        expect(
            delivery.outcome == "registered",
            f"{person.name}: expected registered, got {delivery.outcome} ({delivery.reason})",
        )
    creates = on24.count("POST", "/registrant")
    say(
        f"      {len(people)} x registered ({len(people) - len(people) // 2} canonical webinar-registration/1, "
        f"{len(people) // 2} Dataverse RemoteExecutionContext Create); {creates} ON24 registrant POSTs"
    )
    expect(creates == len(people), f"expected {len(people)} ON24 registrant creations, saw {creates}")

    on24.reset_log()
    for person in (people[0], people[1]):
        payload, request, message_id = bodies[person.registration_id]
        delivery = demo.deliver(payload, message_id=message_id, first_delivery=2, dataverse_request=request)
        kind = "Dataverse" if request else "canonical"
        say(f"      redelivered ({kind}) {person.name}: {delivery.outcome}")
        expect(
            delivery.outcome == "duplicate", f"redelivery of {person.name}: expected duplicate, got {delivery.outcome}"
        )
    expect(on24.count() == 0, f"duplicates made {on24.count()} ON24 calls (expected none)")

    cancelled = people[3]
    dataverse.add_row(
        REGISTRATIONS, {"msevtmgt_eventregistrationid": cancelled.registration_id, "msevtmgt_iscanceled": True}
    )
    delivery = demo.deliver(
        dataverse_body(org_id=ORG_ID, registration_id=cancelled.registration_id, message="Update", canceled=True),
        dataverse_request="Update",
    )
    say(f"      cancelled in CRM, Dataverse Update delivered: {cancelled.name}: {delivery.outcome}")
    expect(delivery.outcome == "cancelled", f"cancellation: expected cancelled, got {delivery.outcome}")

    no_email = crm.no_email
    delivery = demo.deliver(
        dataverse_body(
            org_id=ORG_ID,
            registration_id=no_email.registration_id,
            event_id=crm.event_id,
            contact_id=no_email.contact_id,
        ),
        dataverse_request="Create",
    )
    say(f"      contact without email, {no_email.name}: {delivery.outcome}: {delivery.reason}")
    expect(
        delivery.outcome == "failed" and "no email" in (delivery.reason or ""),
        f"contact without email: expected failed (no email), got {delivery.outcome} ({delivery.reason})",
    )
    entry = get_app().ledger.get(ORG_ID, no_email.registration_id)
    expect(entry is not None and entry.state == "failed", "the failure is not recorded in the ledger")
    row = dataverse.row(REGISTRATIONS, no_email.registration_id) or {}
    expect(row.get("msevtmgt_publishingstate") == 100000004, "CRM does not flag the failed registration")

    registrants = on24.registrants(ON24_EVENT_ID)
    active = [r for r in registrants if not r["isdeleted"]]
    say(
        f"      ON24 event {ON24_EVENT_ID}: {len(registrants)} registrants, {len(active)} active "
        f"({len(registrants) - len(active)} soft-deleted by the cancellation)"
    )
    expect(len(registrants) == len(people), f"ON24 has {len(registrants)} registrants, expected {len(people)}")
    expect(len(active) == len(people) - 1, f"ON24 has {len(active)} active registrants, expected {len(people) - 1}")
    registration_ids = {p.registration_id for p in people}
    for record in registrants:
        expect(
            record.get("exteventusercd") in registration_ids,
            f"ON24 registrant {record['email']} does not carry its CRM registration id",
        )
        crm_row = dataverse.row(REGISTRATIONS, str(record["exteventusercd"])) or {}
        expect(
            crm_row.get("msevtmgt_webinarregistrationid") == str(record["eventuserid"]),
            f"CRM registration of {record['email']} lacks its ON24 registrant id",
        )

    step(5, f"Run the webinar in the ON24 stand-in (event {ON24_EVENT_ID}), plus one walk-in registered in ON24")
    result = on24.run_webinar(ON24_EVENT_ID, seed=args.seed)
    walk_in_start = sandbox.webinar_live + timedelta(minutes=4)
    on24.set_attendee(
        ON24_EVENT_ID,
        WALK_IN_EMAIL,
        liveminutes=31,
        firstliveactivity=walk_in_start,
        lastliveactivity=walk_in_start + timedelta(minutes=31),
        askedquestions=1,
    )
    attendees = on24.attendees(ON24_EVENT_ID)
    say(f"      {result['attendees']} registrants attended, {result['noshows']} did not; walk-in {WALK_IN_EMAIL}")
    expect(result["attendees"] > 0, "nobody attended the webinar")
    matched_attendees = [a for a in attendees if a.get("exteventusercd") in registration_ids]

    step(6, "Pull the attendee metrics into CRM check-ins (PullMetrics, timer)")
    on24.reset_log()
    pull_metrics(TimerRequest(past_due=False, schedule_status={}, schedule={}))
    expect(bool(log.metric_runs), "PullMetrics logged no run summary")
    metrics = log.metric_runs[-1]
    say(
        "      "
        + ", ".join(f"{name} {value}" for name, value in metrics.items())
        + f"; {on24.count()} ON24 calls, {dataverse.count('POST', '$batch')} Dataverse $batch"
    )
    checkins = {str(r.get("_msevtmgt_registrationid_value")): r for r in dataverse.rows(CHECKINS)}
    with_minutes = [r for r in checkins.values() if (r.get("msevtmgt_viewingdurationinmins") or 0) > 0]
    expect(metrics["failed"] == 0, f"PullMetrics failed on {metrics['failed']} attendees: {log.problems[-3:]}")
    expect(
        len(checkins) == len(matched_attendees),
        f"{len(checkins)} check-ins in CRM, expected one per matched attendee ({len(matched_attendees)})",
    )
    expect(
        len(with_minutes) == len(matched_attendees),
        f"only {len(with_minutes)} of {len(matched_attendees)} check-ins have viewing minutes > 0",
    )
    expect(metrics["unmatched"] == 1, f"expected the walk-in as the one unmatched attendee, got {metrics['unmatched']}")

    step(7, "What a CRM user sees on the event's registrations")
    show_registrations(crm, dataverse, checkins)

    step(8, "Switch the integration off for the org (RemoveCredentials, DELETE)")
    response = remove_credentials(http_request("DELETE", ORG_ID))
    expect(response.status_code == 200, f"RemoveCredentials answered {response.status_code}: {response.get_body()!r}")
    status = json.loads(credentials_status(http_request("GET", ORG_ID)).get_body())
    say(f"      DELETE -> {response.status_code}; status now: configured={status.get('configured')}")
    expect(status.get("configured") is False, f"the org still looks configured: {status}")

    step(9, "A new CRM registration arrives after the switch-off")
    late = add_person(dataverse, crm.event_id, crm.account_ids, len(PEOPLE) + 1, LATE_PERSON)
    on24.reset_log()
    delivery = demo.deliver(
        dataverse_body(
            org_id=ORG_ID, registration_id=late.registration_id, event_id=crm.event_id, contact_id=late.contact_id
        ),
        dataverse_request="Create",
    )
    calls = on24.count()
    say(f"      RegisterAttendee {late.name}: {delivery.outcome}: {delivery.reason} ({calls} ON24 calls)")
    entry = get_app().ledger.get(ORG_ID, late.registration_id)
    expect(
        delivery.outcome == "skipped" and (delivery.reason or "").startswith("integration disabled"),
        f"expected skipped (integration disabled), got {delivery.outcome} ({delivery.reason})",
    )
    expect(
        entry is not None and (entry.last_outcome or "").startswith("skipped: integration disabled"),
        "the skip is not recorded in the ledger",
    )
    expect(calls == 0, f"{calls} ON24 calls after the integration was switched off")
    pull_metrics(TimerRequest(past_due=False, schedule_status={}, schedule={}))
    calls = on24.count()
    say(f"      PullMetrics after the switch-off: {calls} ON24 calls")
    expect(calls == 0, f"PullMetrics made {calls} ON24 calls after the integration was switched off")

    step(10, "Summary")
    registered = demo.outcomes["registered"]
    say(f"      registered in ON24 ........................ {registered}")
    say(f"      duplicates (redelivered, no ON24 call) .... {demo.outcomes['duplicate']}")
    say(f"      cancelled (soft-deleted in ON24) .......... {demo.outcomes['cancelled']}")
    say(f"      skipped (integration disabled) ............ {demo.outcomes['skipped']}")
    say(f"      failed permanently ........................ {demo.outcomes['failed']} (contact without email)")
    say(f"      transient faults redelivered .............. {demo.redeliveries}")
    say(f"      check-ins written ......................... {metrics['written']} (all with viewing minutes > 0)")
    say(f"      ON24 attendees without a CRM match ........ {metrics['unmatched']} (walk-in)")
    expected = Counter(registered=len(people), duplicate=2, cancelled=1, failed=1, skipped=1)
    expect(demo.outcomes == expected, f"outcomes {dict(demo.outcomes)} != expected {dict(expected)}")
    say()
    say(f"Demo OK: every step produced the expected result ({time.monotonic() - started:.1f} s).")


def show_registrations(crm: CrmSeed, dataverse: DataverseStandIn, checkins: dict[str, dict[str, Any]]) -> None:
    """The registrations of the event as CRM holds them, with their check-ins."""
    header = ("Name", "Email", "Registration", "Publishing state", "ON24 registrant", "Minutes", "Interactions")
    rows: list[tuple[str, ...]] = []
    for person in [*crm.people, crm.no_email]:
        reg = dataverse.row(REGISTRATIONS, person.registration_id) or {}
        checkin = checkins.get(person.registration_id)
        state = reg.get("msevtmgt_publishingstate")
        rows.append(
            (
                person.name,
                person.email or "(no email)",
                "cancelled" if reg.get("msevtmgt_iscanceled") else "active",
                PUBLISHING_STATES.get(state, "-") if isinstance(state, int) else "-",
                str(reg.get("msevtmgt_webinarregistrationid") or "-"),
                str(checkin.get("msevtmgt_viewingdurationinmins") or 0) if checkin else "-",
                str(checkin.get("msevtmgt_numberofquestionsasked") or 0) if checkin else "-",
            )
        )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    numeric = {5, 6}

    def line(cells: tuple[str, ...]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    say(line(header))
    say("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        say(line(row))
    say("(Minutes = live + on-demand viewing; Interactions = questions asked + polls answered; '-' = no check-in)")


def main(args: argparse.Namespace) -> int:
    """Run the demo; 0 when every step produced the expected result."""
    guard = SignalGuard().install()
    stack = ExitStack()
    code = 1
    try:
        run(args, stack, guard)
        code = 0
    except Interrupted as exc:
        say()
        say(f"Interrupted ({exc}): stopping Azurite and the stand-ins.")
        code = 128 + exc.signum
    except KeyboardInterrupt:
        say()
        say("Interrupted: stopping Azurite and the stand-ins.")
        code = 130
    except DemoFailure as exc:
        say()
        say(f"DEMO FAILED: {exc}")
        print(f"DEMO FAILED: {exc}", file=sys.stderr, flush=True)
    except Exception as exc:  # an unexpected error is still a failed demo, with its cause shown
        import traceback

        traceback.print_exc()
        say(f"DEMO FAILED: unexpected {type(exc).__name__}: {exc}")
    finally:
        shut_down(stack, guard)
    if code == 0:
        say()
        say("The admin page, with the real routes behind it: run '.venv/bin/python -m sandbox serve' and")
        say(f"open {page_url()}")
    return code


def shut_down(stack: ExitStack, guard: SignalGuard) -> None:
    """Stop every process and server the stack holds, shielded from a second Ctrl-C, then say so."""
    guard.cleaning_up()
    try:
        stack.close()
    finally:
        guard.restore()
    say("Stopped Azurite and the stand-ins.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated webinar (default 0)")
    parser.add_argument("--verbose", action="store_true", help="also print the app's log lines to stderr")
