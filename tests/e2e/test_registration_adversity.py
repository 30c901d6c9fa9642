"""RegisterAttendee attacked: live leases, slow Key Vault, a worker killed after the ON24 call, hostile times and
CRM data, lost bodies, and an off switch thrown between two ON24 calls.

Each test interleaves deliveries at a chosen point with gates in the stand-ins (``hold_next``), never with
sleeps, and checks what a CRM team would see: who is registered in ON24, the ledger row, the CRM row.
Real parts: Azurite, the HTTPS Key Vault stand-in, the ON24 and Dataverse stand-ins over sockets.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from RegisterAttendee import main
from RemoveCredentials import main as remove_main
from shared.app import get_app, reset_app
from shared.errors import TransientError
from StoreCredentials import main as store_main
from tests.builders import CrmOrg, canonical_body, dataverse_body
from tests.conftest import ON24_CLIENT_ID, credentials_body
from tests.functions import dataverse_properties, http_request, service_bus_message

ORG = "5b0c2d1e-3f4a-4b5c-9d6e-7f8091a2b3c4"
WEBINAR = 880101
OTHER_WEBINAR = 880102
REGISTRATIONS = "msevtmgt_eventregistrations"
ROOT = Path(__file__).resolve().parents[2]
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

# Short timing, so that leases expire within a test: one ON24 call is bounded by 0.2 + 4 x 0.5 s.
FAST = {
    "RETRY_BUDGET_SECONDS": "0.2",
    "ON24_TIMEOUT_SECONDS": "0.5",
    "REGISTRATION_LEASE_MARGIN_SECONDS": "0.2",
    "REGISTRATION_LEASE_SECONDS": "3",
    "REGISTRATION_LEASE_WAIT_SECONDS": "0.2",
}


@pytest.fixture
def env(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, on24: Any) -> dict[str, str]:
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    reset_app()
    on24.add_event(ON24_CLIENT_ID, WEBINAR, title="Adversity webinar")
    on24.add_event(ON24_CLIENT_ID, OTHER_WEBINAR, title="Another webinar")
    assert store_main(http_request("PUT", ORG, credentials_body())).status_code == 200
    on24.reset_log()
    return {**app_env, **FAST}


@pytest.fixture
def crm(env: dict[str, str], dataverse: Any) -> CrmOrg:
    return CrmOrg(dataverse, webinar_id=str(WEBINAR))


def person(email: str) -> dict[str, Any]:
    return {"email": email, "firstName": "Ada", "lastName": "Lovelace"}


def canonical(reg: str, crm: CrmOrg, action: str, at: datetime, email: str | None = None, **extra: Any) -> Any:
    return canonical_body(
        org_id=ORG,
        registration_id=reg,
        event_id=crm.event_id,
        action=action,
        webinar_id=str(extra.pop("webinar", WEBINAR)),
        attendee=person(email) if email else None,
        occurred_at=at,
    )


def deliver(body: Any, **kwargs: Any) -> None:
    main(service_bus_message(body, **kwargs))


class InBackground:
    """A delivery on a thread of its own (a second worker), started at once; ``join`` returns what it raised."""

    def __init__(self, work: Callable[[], object]) -> None:
        self._raised: list[BaseException] = []

        def run() -> None:
            try:
                work()
            except BaseException as exc:  # reported to the test thread
                self._raised.append(exc)

        self._thread = threading.Thread(target=run)
        self._thread.start()

    def join(self, timeout: float = 10) -> list[BaseException]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the background delivery did not finish"
        return self._raised


def deliver_until_done(body: Any, *, attempts: int = 200, **kwargs: Any) -> int:
    """Redeliver on a transient fault, as Service Bus does (same message id and enqueue time); a message parked
    because its registration was busy is then re-driven when it is due, as the RetryParked timer does."""
    kwargs.setdefault("message_id", uuid.uuid4().hex)
    kwargs.setdefault("enqueued_time", datetime.now(UTC))
    for attempt in range(1, attempts + 1):
        try:
            deliver(body, delivery_count=attempt, **kwargs)
        except TransientError:
            continue
        redrive_parked_when_due()
        return attempt
    raise AssertionError("the message would have been dead-lettered")


def parked_keys() -> list[str]:
    """The registrations with a parked message."""
    return [message.key for message in get_app().parked.iter_all()]


def redrive_parked_when_due(limit: float = 30.0, *, wait: bool = True) -> None:
    """Run RetryParked once each parked message is due (the lease or quiet time it met has ended), until none
    is left. The timer runs every minute; here it runs the moment the message is due: after waiting for it in
    real time, or (``wait=False``, when no unanswered request may still land) on a clock moved to that moment."""
    from dataclasses import replace

    from shared.parking import retry_parked
    from shared.store.parked import PARKED_PARTITION

    app = get_app()
    deadline = time.monotonic() + limit
    query = "PartitionKey eq @p and NextAttemptAt gt @epoch"  # parked messages (other tests plant other rows)
    parameters = {"p": PARKED_PARTITION, "epoch": datetime(1970, 1, 2, tzinfo=UTC)}
    while times := [r["NextAttemptAt"] for r in app.parked._table.query_entities(query, parameters=parameters)]:
        assert time.monotonic() < deadline, f"still parked, due at {times}"
        due = min(times)
        ports = app.registration_ports()
        if wait:
            time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))  # real time: the leases here are real
        else:
            ports = replace(ports, clock=lambda due=due: max(datetime.now(UTC), due))
        retry_parked(ports, app.credentials, app.parked, rejected=app.rejected, budget_seconds=limit)


def active(on24: Any, reg: str) -> list[tuple[int, str]]:
    """(event, email) of every ON24 registrant of this registration that is not deleted."""
    found = []
    for event in (WEBINAR, OTHER_WEBINAR):
        for record in on24.registrants(event):
            if record.get("exteventusercd") == reg and not record["isdeleted"]:
                found.append((event, record["email"]))
    return found


def row(reg: str) -> Any:
    return get_app().ledger.get(ORG, reg)


# ---- nobody writes over a live lease --------------------------------------------------------------------------
def test_a_permanent_failure_waits_for_the_live_lease_instead_of_overwriting_it(
    crm: CrmOrg, on24: Any, dataverse: Any
) -> None:
    reg = crm.registration(crm.contact("No", "Email", None))  # CRM's contact has no email: updates fail
    create = on24.hold_next("POST", "/registrant")
    holder = InBackground(lambda: deliver(canonical(reg, crm, "register", T0, "ada@example.com")))
    create.wait_arrived()  # the register holds the lease and is inside its ON24 create
    update = dataverse_body(org_id=ORG, registration_id=reg, message="Update", at=T0 + timedelta(minutes=1))
    update_id, update_enqueued = uuid.uuid4().hex, datetime.now(UTC)
    deliver(update, message_id=update_id, enqueued_time=update_enqueued,
            application_properties=dataverse_properties("Update"))  # fmt: skip
    assert parked_keys() == [reg], "the update completed: parked until the lease ends, not raised"
    held = row(reg)
    assert held.lease_id and held.intent is not None and held.intent.action == "register", "the lease is untouched"
    create.release()
    failures = holder.join()
    assert not failures and row(reg).state == "registered" and row(reg).lease_id is None

    redrive_parked_when_due()
    failed = row(reg)
    assert failed.last_outcome == "failed" and "no email" in (failed.reason or "") and failed.lease_id is None
    assert dataverse.row(REGISTRATIONS, reg)["msevtmgt_publishingstate"] == 100000004

    deliver_until_done(canonical(reg, crm, "cancel", T0 + timedelta(minutes=2)))
    assert active(on24, reg) == [], "the later cancel removed the registrant"
    assert row(reg).state == "cancelled" and row(reg).lease_id is None


# ---- slow work happens before the lease -----------------------------------------------------------------------
def test_a_slow_key_vault_read_happens_before_any_lease_is_taken(
    crm: CrmOrg, on24: Any, keyvault: Any
) -> None:
    reset_app()  # a new worker: the key version of the stored credentials is not cached yet
    reg = crm.registration(crm.contact("Ada", "Lovelace", "ada@example.com"))
    key_read = keyvault.hold_next("GET", "/secrets/")
    done = threading.Event()
    thread = threading.Thread(target=lambda: (deliver(canonical(reg, crm, "register", T0, "ada@example.com")),
                                              done.set()))  # fmt: skip
    thread.start()
    try:
        key_read.wait_arrived()
        assert row(reg) is None, "no ledger lease is held while Key Vault is slow"
    finally:
        key_read.release()
    thread.join(10)
    assert done.is_set() and active(on24, reg) == [(WEBINAR, "ada@example.com")]


# ---- a worker killed between the ON24 call and the ledger write -----------------------------------------------
def _deliver_in_child(tmp_path: Path, body: Any) -> subprocess.Popen[bytes]:
    spec = tmp_path / f"{uuid.uuid4().hex}.json"
    spec.write_text(json.dumps({"body": body, "message_id": uuid.uuid4().hex,
                                "enqueued_at": datetime.now(UTC).isoformat()}))  # fmt: skip
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "tests.e2e._delivery_child", str(spec)],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_worker_killed_after_the_on24_create_leaves_no_orphan(
    crm: CrmOrg, on24: Any, tmp_path: Path
) -> None:
    reg = str(uuid.uuid4())
    deliver_until_done(canonical(reg, crm, "register", T0, "a@example.com"))
    created_b = on24.hold_next("POST", "/registrant", after=True, body_contains=b"email=b%40example.com")
    child = _deliver_in_child(tmp_path, canonical(reg, crm, "update", T0 + timedelta(minutes=1), "b@example.com"))
    try:
        created_b.wait_arrived()  # ON24 registered b (and removed a); the answer is held back
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        created_b.release(drop_reply=True)
    assert active(on24, reg) == [(WEBINAR, "b@example.com")]
    crashed = row(reg)

    deliver_until_done(canonical(reg, crm, "update", T0 + timedelta(minutes=2), "c@example.com"))
    assert active(on24, reg) == [(WEBINAR, "c@example.com")], "b was removed when c was registered"
    deliver_until_done(canonical(reg, crm, "cancel", T0 + timedelta(minutes=3)))
    assert active(on24, reg) == [], "a cancel removes everything the registration ever had"
    assert row(reg).pending == () and row(reg).state == "cancelled"
    assert crashed.intent is not None and any(p.email == "b@example.com" for p in crashed.pending), (
        "after the crash the ledger knew that b may exist"
    )


def test_a_worker_killed_after_deleting_the_registrant_does_not_leave_it_deleted_when_it_is_wanted_again(
    crm: CrmOrg, on24: Any, tmp_path: Path
) -> None:
    reg = str(uuid.uuid4())
    deliver_until_done(canonical(reg, crm, "register", T0, "a@example.com"))
    deleted_a = on24.hold_next("POST", "/registrant", after=True, body_contains=b"isDeleted=Y")
    child = _deliver_in_child(tmp_path, canonical(reg, crm, "update", T0 + timedelta(minutes=1), "b@example.com"))
    try:
        deleted_a.wait_arrived()  # ON24 soft-deleted a; the worker dies before it can say so
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        deleted_a.release(drop_reply=True)
    assert active(on24, reg) == []
    deliver_until_done(canonical(reg, crm, "update", T0 + timedelta(minutes=2), "a@example.com"))  # a after all
    assert active(on24, reg) == [(WEBINAR, "a@example.com")], "a is registered again, not updated while deleted"


def test_a_lost_reply_after_a_move_to_another_webinar_leaves_no_orphan(crm: CrmOrg, on24: Any) -> None:
    reg = str(uuid.uuid4())
    deliver_until_done(canonical(reg, crm, "register", T0, "a@example.com"))
    on24.fail_next(1, status=0, drop=True, method="POST", path_contains=str(OTHER_WEBINAR))
    moved = canonical(reg, crm, "update", T0 + timedelta(minutes=1), "a@example.com", webinar=OTHER_WEBINAR)
    deliver_until_done(moved)
    assert active(on24, reg) == [(OTHER_WEBINAR, "a@example.com")], "moving leaves the old webinar"
    deliver_until_done(canonical(reg, crm, "cancel", T0 + timedelta(minutes=2)))
    assert active(on24, reg) == []


def test_a_create_that_on24_applies_after_the_client_gave_up_is_still_removed_by_a_cancel(
    crm: CrmOrg, on24: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 2 s timeout: the row then stays quiet for 2 s after the client gives up, ample for the cancel below.
    monkeypatch.setenv("ON24_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("REGISTRATION_LEASE_SECONDS", "11")
    reset_app()
    reg = str(uuid.uuid4())
    late = on24.hold_next("POST", "/registrant")  # held before ON24 handles it: the client times out first
    with pytest.raises(TransientError, match="timed out"):
        deliver(canonical(reg, crm, "register", T0, "late@example.com"))
    after_timeout = row(reg)
    cancel = canonical(reg, crm, "cancel", T0 + timedelta(minutes=1))
    try:
        deliver(cancel)  # had it run now, its delete would come before the create lands: an orphan
        assert parked_keys() == [reg], "the cancel waits (parked) until the quiet time ends"
    finally:
        late.release()  # ON24 applies the create now, after the client stopped waiting
    redrive_parked_when_due()
    assert active(on24, reg) == [], "the late create was removed"
    assert after_timeout.quiet_until is not None and after_timeout.lease_id is None, "quiet, not leased"


def test_a_delete_that_on24_applies_after_the_client_gave_up_does_not_leave_the_wanted_registrant_deleted(
    crm: CrmOrg, on24: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ON24_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("REGISTRATION_LEASE_SECONDS", "11")
    reset_app()
    reg = str(uuid.uuid4())
    deliver_until_done(canonical(reg, crm, "register", T0, "a@example.com"))
    late_delete = on24.hold_next("POST", "/registrant", body_contains=b"isDeleted=Y")
    with pytest.raises(TransientError, match="timed out"):  # a -> b: the delete of a goes unanswered
        deliver(canonical(reg, crm, "update", T0 + timedelta(minutes=1), "b@example.com"))
    late_delete.release()  # ... and ON24 applies it afterwards
    deliver_until_done(canonical(reg, crm, "update", T0 + timedelta(minutes=2), "a@example.com"))  # back to a
    assert active(on24, reg) == [(WEBINAR, "a@example.com")], "a is registered again, not updated while deleted"


# ---- order ----------------------------------------------------------------------------------------------------
def test_a_far_future_message_time_is_clamped_to_the_enqueue_time(
    crm: CrmOrg, on24: Any, caplog: pytest.LogCaptureFixture
) -> None:
    reg = str(uuid.uuid4())
    hostile = canonical(reg, crm, "register", T0, "future@example.com")
    hostile["occurredAt"] = "9999-12-31T23:59:59Z"
    with caplog.at_level(logging.WARNING, logger="shared.registration"):
        deliver_until_done(hostile)
    assert any(getattr(r, "clamped_time", False) for r in caplog.records)
    deliver_until_done(canonical(reg, crm, "cancel", datetime.now(UTC) + timedelta(seconds=1)))
    assert row(reg).state == "cancelled" and active(on24, reg) == [], "later messages are not stale for good"


@pytest.mark.parametrize("order", [("cancel", "register"), ("register", "cancel")])
def test_equal_message_times_end_cancelled_whatever_the_delivery_order(
    crm: CrmOrg, on24: Any, order: tuple[str, str]
) -> None:
    reg = str(uuid.uuid4())
    for action in order:
        deliver_until_done(canonical(reg, crm, action, T0, "tie@example.com" if action == "register" else None))
    assert row(reg).state == "cancelled" and active(on24, reg) == []


# ---- hostile CRM data -----------------------------------------------------------------------------------------
HOSTILE_CONTACTS = {
    "control characters only": ({"emailaddress1": "\x01\x02\x03"}, "emailaddress1"),
    "CR/LF inside the email": ({"emailaddress1": "eve@example.com\r\nBcc: all@example.com"}, "emailaddress1"),
    "whitespace only": ({"emailaddress1": " \r\n\t "}, "no email"),
    "formula email": ({"emailaddress1": "=HYPERLINK(1)@example.com"}, "emailaddress1"),
    "bidi override in the first name": (
        {"emailaddress1": "bidi@example.com", "firstname": "Eve\u202egnp.exe"},
        "firstname",
    ),
    "newline in the last name": ({"emailaddress1": "nl@example.com", "lastname": "Evil\nName"}, "lastname"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CONTACTS))
def test_hostile_crm_contact_data_is_a_recorded_permanent_failure(
    crm: CrmOrg, on24: Any, dataverse: Any, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    columns, named = HOSTILE_CONTACTS[case]
    contact = crm.contact("Eve", "Hostile", None)
    dataverse.add_row("contacts", {"contactid": contact, **columns})
    reg = crm.registration(contact)
    with caplog.at_level(logging.INFO):
        deliver(dataverse_body(org_id=ORG, registration_id=reg), application_properties=dataverse_properties("Create"))
    assert on24.count() == 0, "nothing is sent to ON24"
    entry = row(reg)
    assert entry.state == "failed" and entry.lease_id is None and named in (entry.reason or "")
    assert dataverse.row(REGISTRATIONS, reg)["msevtmgt_publishingstate"] == 100000004
    email = columns["emailaddress1"].strip()
    if email:
        assert email not in caplog.text and email not in (entry.reason or ""), "no email in logs or reasons"


def test_a_webinar_id_of_zero_is_a_recorded_permanent_failure(
    env: dict[str, str], on24: Any, dataverse: Any
) -> None:
    zero = CrmOrg(dataverse, webinar_id="0")
    reg = zero.registration(zero.contact("Zed", "Zero", "zed@example.com"))
    deliver(dataverse_body(org_id=ORG, registration_id=reg), application_properties=dataverse_properties("Create"))
    assert on24.count() == 0
    entry = row(reg)
    assert entry.state == "failed" and entry.lease_id is None and "msevtmgt_webinarid" in (entry.reason or "")
    assert dataverse.row(REGISTRATIONS, reg)["msevtmgt_publishingstate"] == 100000004


def test_a_registration_moved_to_an_event_that_is_no_webinar_leaves_on24(
    crm: CrmOrg, on24: Any, dataverse: Any
) -> None:
    contact = crm.contact("Mo", "Ved", "moved@example.com")
    reg = crm.registration(contact)
    deliver_until_done(dataverse_body(org_id=ORG, registration_id=reg, at=T0),
                       application_properties=dataverse_properties("Create"))  # fmt: skip
    assert active(on24, reg) == [(WEBINAR, "moved@example.com")]
    onsite = CrmOrg(dataverse, webinar_id=None)
    dataverse.add_row(REGISTRATIONS, {"msevtmgt_eventregistrationid": reg, "msevtmgt_eventid": onsite.event_id})
    deliver_until_done(dataverse_body(org_id=ORG, registration_id=reg, message="Update", at=T0 + timedelta(minutes=1)),
                       application_properties=dataverse_properties("Update"))  # fmt: skip
    assert active(on24, reg) == [], "the registrant left the webinar"
    assert row(reg).state == "skipped" and "not an ON24 webinar" in (row(reg).reason or "")
    assert not dataverse.row(REGISTRATIONS, reg).get("msevtmgt_webinarregistrationid")


def test_a_registration_deleted_in_crm_leaves_on24(crm: CrmOrg, on24: Any, dataverse: Any) -> None:
    contact = crm.contact("Del", "Eted", "deleted@example.com")
    reg = crm.registration(contact)
    deliver_until_done(dataverse_body(org_id=ORG, registration_id=reg, at=T0),
                       application_properties=dataverse_properties("Create"))  # fmt: skip
    dataverse.delete_row(REGISTRATIONS, reg)
    deliver_until_done(dataverse_body(org_id=ORG, registration_id=reg, message="Update", at=T0 + timedelta(minutes=1)),
                       application_properties=dataverse_properties("Update"))  # fmt: skip
    assert active(on24, reg) == [] and row(reg).state == "cancelled"


def test_an_org_row_edited_in_the_table_is_a_recorded_failure_before_anything_uses_it(
    crm: CrmOrg, on24: Any, dataverse: Any, env: dict[str, str]
) -> None:
    from azure.data.tables import TableServiceClient, UpdateMode

    service = TableServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    service.get_table_client(env["STATE_TABLE_PREFIX"] + "orgs").update_entity(
        {"PartitionKey": ORG, "RowKey": "credentials", "DataverseUrl": "https://evil.crm.dynamics.com"},
        mode=UpdateMode.MERGE,
    )
    reset_app()
    reg = crm.registration(crm.contact("Ada", "Lovelace", "ada@example.com"))
    dataverse.reset_log()
    deliver(dataverse_body(org_id=ORG, registration_id=reg), application_properties=dataverse_properties("Create"))
    entry = row(reg)
    assert entry.state == "failed" and entry.lease_id is None and "authentication" in (entry.reason or "")
    assert on24.count() == 0 and dataverse.count() == 0, "the edited URL was never used"


# ---- nothing lost ---------------------------------------------------------------------------------------------
def test_rejected_bodies_are_kept_whole_and_never_overwrite_each_other(env: dict[str, str], on24: Any) -> None:
    big = b'{"schema": "webinar-registration/1", "padding": "' + b"x" * 300_000 + b'"}'
    sent = [
        ("", b"not json 1"),
        ("", b"not json 2"),
        ("a/b", b"not json 3"),
        ("a_b", b"not json 3"),
        ("big", big),
    ]
    for message_id, body in sent:
        deliver(body, message_id=message_id)
    deliver(b"not json 1", message_id="", delivery_count=2)  # a redelivery lands on its own row again
    kept = sorted((m.message_id, m.body) for m in get_app().rejected.list())
    assert kept == sorted(sent), "every body is kept whole, once, under its own key"
    filed = {m.message_id: m.org_id for m in get_app().rejected.list()}
    deliver(b'{"schema": "webinar-registration/1", "orgId": "' + ORG.upper().encode() + b'"}', message_id="org")
    assert filed["big"] is None and {m.message_id: m.org_id for m in get_app().rejected.list()}["org"] == ORG
    assert on24.count() == 0


# ---- the off switch -------------------------------------------------------------------------------------------
def test_the_off_switch_stops_a_change_between_two_on24_calls(crm: CrmOrg, on24: Any) -> None:
    reg = str(uuid.uuid4())
    deliver_until_done(canonical(reg, crm, "register", T0, "a@example.com"))
    first = on24.hold_next("POST", "/registrant")  # the move's first call: removing a
    move = InBackground(lambda: deliver(canonical(reg, crm, "update", T0 + timedelta(minutes=1), "b@example.com")))
    first.wait_arrived()
    assert remove_main(http_request("DELETE", ORG)).status_code == 200
    calls_at_removal = on24.count()
    first.release()
    assert move.join() == []
    assert on24.count() == calls_at_removal, "no ON24 call starts after RemoveCredentials returned"
    assert active(on24, reg) == [], "a was removed by the call in flight; b was never created"
    entry = row(reg)
    assert entry.last_outcome and entry.last_outcome.startswith("skipped: integration disabled")
    assert any(p.email == "b@example.com" for p in entry.pending), "the ledger still knows b may be wanted"


# ---- cost -----------------------------------------------------------------------------------------------------
@pytest.fixture
def table_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    from shared.store.transport import HttpClientTransport

    calls: list[str] = []
    original = HttpClientTransport.send

    def counting(self: Any, request: Any, **kwargs: Any) -> Any:
        if "/devstoreaccount1/" in request.url and ":" in request.url.split("//", 1)[1].split("/", 1)[0]:
            calls.append(f"{request.method} {request.url.split('?')[0].rsplit('/', 1)[-1]}")
        return original(self, request, **kwargs)

    monkeypatch.setattr(HttpClientTransport, "send", counting)
    yield calls


def test_a_new_registration_costs_five_table_storage_calls(
    crm: CrmOrg, on24: Any, table_calls: list[str]
) -> None:
    deliver(canonical(str(uuid.uuid4()), crm, "register", T0, "first@example.com"))  # warms the table cache
    table_calls.clear()
    deliver(canonical(str(uuid.uuid4()), crm, "register", T0, "cheap@example.com"))
    # The ledger row (read first: a duplicate ends there, issue 22), the org row, the forget tombstones of the
    # registration and the address (one query), the claim, the release.
    assert len(table_calls) == 5, table_calls
