"""Where parking meets the other features: a credentials save, one org failing while another waits, a refused token.

Run on a virtual clock through RegisterAttendee.main, StoreCredentials.main and RetryParked.main, with Azurite and
the ON24/Dataverse stand-ins (faults staged in the stand-ins, per registration id). Service Bus is simulated as in
``test_parking``: a message whose handler raised is redelivered, dead-lettered after 10 deliveries.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient, UpdateMode

from shared.app import App, get_app, reset_app, set_app
from shared.settings import Settings
from shared.store.parked import ParkedMessage
from StoreCredentials import main as store_main
from tests.builders import CrmOrg, canonical_body, dataverse_body
from tests.conftest import ON24_CLIENT_ID, ON24_KEY, ON24_SECRET, credentials_body
from tests.e2e.test_parking import deliver, run_retry_parked
from tests.functions import dataverse_properties, http_request

ORG_A = "1a2b3c4d-0000-4000-8000-00000000000a"  # sorts first: the org table lists it first
ORG_B = "9f8e7d6c-0000-4000-8000-00000000000b"
WEBINAR = 880411
START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
SYNCED, PROVIDER_ERROR = 100000002, 100000004
REGISTRATIONS = "msevtmgt_eventregistrations"
PEOPLE = [("Jörg", "Müller"), ("Åsa", "Ødegård"), ("Иван", "Петров"), ("Søren", "Kierkegaard")]


class VirtualClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, on24: Any, dataverse: Any) -> Iterator[Any]:
    for name, value in {"RETRY_BUDGET_SECONDS": "0", "PARK_AFTER_DELIVERIES": "3", "PARK_BACKOFF_BASE_SECONDS": "60",
                        "PARK_BACKOFF_MAX_SECONDS": "1800"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    on24.add_event(ON24_CLIENT_ID, WEBINAR, title="Seams webinar")
    virtual = VirtualClock()
    set_app(App(Settings.from_environ(), clock=virtual))
    assert store_main(http_request("PUT", ORG_A, credentials_body())).status_code == 200
    other = credentials_body(dataverseUrl=dataverse.url_for(ORG_B))  # the stand-in's WhoAmI answers ORG_A
    assert store_main(http_request("PUT", ORG_B, other)).status_code == 200
    on24.reset_log()
    yield virtual
    on24.add_client(ON24_CLIENT_ID, ON24_KEY, ON24_SECRET)  # the session's account, as other tests expect it
    reset_app()


@pytest.fixture
def crm(clock: Any, dataverse: Any) -> CrmOrg:
    return CrmOrg(dataverse, webinar_id=str(WEBINAR))




def canonical(org: str, at: datetime, n: int) -> tuple[str, dict[str, Any]]:
    reg = str(uuid.uuid4())
    first, last = PEOPLE[n % len(PEOPLE)]
    body = canonical_body(org_id=org, registration_id=reg, event_id=str(uuid.uuid4()), webinar_id=str(WEBINAR),
                          attendee={"email": f"person{n}.{org[:4]}@seams.example", "firstName": first,
                                    "lastName": last}, occurred_at=at)  # fmt: skip
    return reg, body


def crm_registration(crm: CrmOrg, n: int) -> str:
    first, last = PEOPLE[n % len(PEOPLE)]
    return crm.registration(crm.contact(first, last, f"crm{n}@seams.example"))


def deliver_from_crm(org: str, reg: str, at: datetime) -> str:
    body = dataverse_body(org_id=org, registration_id=reg, at=at)
    return deliver(body, at, application_properties=dataverse_properties("Create"))


def active_emails(on24: Any) -> set[str]:
    return {r["email"] for r in on24.registrants(WEBINAR) if not r["isdeleted"]}


# ---- item 4: a credentials save keeps (and re-drives) the org's parked work ------------------------------------------
def test_saving_the_same_credentials_again_keeps_the_parked_work_and_re_drives_it(clock: Any, on24: Any) -> None:
    on24.down = 503
    parked_regs = {}
    for n in range(5):
        clock.now = START + timedelta(seconds=n)
        reg, body = canonical(ORG_A, clock.now, n)
        assert deliver(body, clock.now) == "completed"
        parked_regs[reg] = body["attendee"]["email"]
    assert len(get_app().parked.for_org(ORG_A)) == 5
    before = get_app().credentials.get(ORG_A)
    assert before.parking and before.park_until is not None and before.park_until > START + timedelta(seconds=10)

    on24.down = None  # ON24 is back; the admin keeps the token alive as docs/operations.md advises
    on24.reset_log()
    clock.now = START + timedelta(seconds=10)
    assert store_main(http_request("PUT", ORG_A, credentials_body())).status_code == 200
    after = get_app().credentials.get(ORG_A)
    assert after.parking and after.park_failures == before.park_failures, "the save keeps the org's parking"
    assert after.park_until == clock.now, "its parked work is due at once"
    reg, body = canonical(ORG_A, clock.now, 9)  # arrives before the probe: joins the parked work, no ON24 call
    assert deliver(body, clock.now) == "completed" and on24.count("POST") == 0
    parked_regs[reg] = body["attendee"]["email"]

    run_retry_parked()
    assert get_app().parked.for_org(ORG_A) == [], "nothing is stranded"
    assert set(parked_regs.values()) <= active_emails(on24)
    assert all(get_app().ledger.get(ORG_A, r).state == "registered" for r in parked_regs)
    assert not get_app().credentials.get(ORG_A).parking


# ---- item 5: RetryParked isolates orgs -------------------------------------------------------------------------------
def park_both_orgs(clock: Any, on24: Any, crm: CrmOrg) -> tuple[list[str], list[str]]:
    """ORG_A parks two CRM registrations first, ORG_B three canonical ones two minutes later (ON24 down)."""
    on24.down = 503
    a_regs = [crm_registration(crm, n) for n in range(2)]
    for reg in a_regs:
        assert deliver_from_crm(ORG_A, reg, clock.now) == "completed"
    clock.now = START + timedelta(minutes=2)
    b_regs = []
    for n in range(3):
        reg, body = canonical(ORG_B, clock.now, n)
        assert deliver(body, clock.now) == "completed"
        b_regs.append(reg)
    assert len(get_app().parked.for_org(ORG_A)) == 2 and len(get_app().parked.for_org(ORG_B)) == 3
    on24.down = None
    on24.reset_log()
    return a_regs, b_regs


def test_an_org_whose_dataverse_refuses_the_app_backs_off_while_the_others_are_re_driven(
    clock: Any, on24: Any, dataverse: Any, crm: CrmOrg
) -> None:
    a_regs, b_regs = park_both_orgs(clock, on24, crm)
    missing = "Principal user is missing prvReadmsevtmgt_eventregistration"
    refused = {"error": {"code": "0x80040220", "message": missing}}
    # Dataverse refuses the app's identity (ConfigError) for the next read of a CRM registration: ORG_A's probe
    dataverse.fail_next(1, status=403, payload=refused, path_contains=f"{REGISTRATIONS}(")
    clock.now = START + timedelta(minutes=10)
    run_retry_parked()  # used to raise ConfigError out of the run: ORG_B waited behind ORG_A every minute

    assert get_app().parked.for_org(ORG_B) == [], "the other org's parked work was re-driven in the same run"
    assert all(get_app().ledger.get(ORG_B, r).state == "registered" for r in b_regs)
    org_a = get_app().credentials.get(ORG_A)
    assert org_a.park_until is not None and org_a.park_until >= clock.now + timedelta(minutes=1), "ORG_A backs off"
    assert any("HTTP 403" in (m.last_error or "") for m in get_app().parked.for_org(ORG_A)), "recorded on it"

    calls = dataverse.count()
    clock.now += timedelta(minutes=1)
    run_retry_parked()
    assert dataverse.count() == calls, "ORG_A is not first in line again the next minute"

    clock.now = org_a.park_until + timedelta(seconds=1)
    run_retry_parked()  # Dataverse answers again (the faults were used up): ORG_A's work follows
    assert get_app().parked.for_org(ORG_A) == []
    assert all(dataverse.row(REGISTRATIONS, r)["msevtmgt_syncedwithprovider"] == SYNCED for r in a_regs)


def test_a_parked_message_that_no_longer_parses_is_set_aside_and_the_run_goes_on(
    clock: Any, on24: Any, crm: CrmOrg
) -> None:
    a_regs, b_regs = park_both_orgs(clock, on24, crm)
    broken = ParkedMessage(org_id=ORG_A, key="00000000-0000-4000-8000-0000000000ff",
                           command='{"orgId": "' + ORG_A + '", "action": "teleport"}', received_at=START,
                           message_at=START, priority=1, next_attempt_at=START)  # fmt: skip
    get_app().parked.park(broken)  # written by another version of the app: its command no longer parses
    clock.now = START + timedelta(minutes=10)
    run_retry_parked()

    assert get_app().parked.for_org(ORG_A) == [] and get_app().parked.for_org(ORG_B) == []
    assert all(get_app().ledger.get(ORG_A, r).state == "registered" for r in a_regs), "the org's other work went on"
    assert all(get_app().ledger.get(ORG_B, r).state == "registered" for r in b_regs)
    [kept] = [m for m in get_app().rejected.list() if m.org_id == ORG_A]
    assert "no longer parses" in kept.reason and "teleport" not in kept.reason, "the reason names no value"
    assert kept.body == broken.command.encode(), "kept whole for an operator"
    clock.now += timedelta(hours=1)
    run_retry_parked()
    assert len([m for m in get_app().rejected.list() if m.org_id == ORG_A]) == 1, "never retried"


# ---- item 11: a refused token parks registrations until the credentials are saved again ----------------------------
def test_registrations_refused_for_the_orgs_token_are_parked_and_registered_after_a_save(
    clock: Any, on24: Any, dataverse: Any, crm: CrmOrg
) -> None:
    on24.add_client(ON24_CLIENT_ID, "rotated-token-key", "Rotated-Token-Secret-DoNotLog")  # the admin rotated in ON24
    regs = [crm_registration(crm, n) for n in range(4)]
    for n, reg in enumerate(regs):
        clock.now = START + timedelta(seconds=n)
        assert deliver_from_crm(ORG_A, reg, clock.now) == "completed", "nothing is redelivered or dead-lettered"
    assert on24.count() == 1, "after the first refusal, the org's registrations park without calling ON24"
    org = get_app().credentials.get(ORG_A)
    assert org.status == "rejected" and org.parking
    assert len(get_app().parked.for_org(ORG_A)) == 4
    for reg in regs:
        assert get_app().ledger.get(ORG_A, reg) is None or get_app().ledger.get(ORG_A, reg).state != "failed"
        assert dataverse.row(REGISTRATIONS, reg)["msevtmgt_publishingstate"] != PROVIDER_ERROR, "none failed in CRM"

    clock.now = START + timedelta(minutes=30)
    run_retry_parked()
    assert on24.count() == 1, "RetryParked does not probe a refused token before the hour"
    clock.now = START + timedelta(hours=1, minutes=1)
    run_retry_parked()
    assert on24.count() == 2 and len(get_app().parked.for_org(ORG_A)) == 4, "one probe an hour, still refused"

    clock.now = START + timedelta(hours=1, minutes=5)
    fixed = credentials_body(accessTokenKey="rotated-token-key", accessTokenSecret="Rotated-Token-Secret-DoNotLog")
    assert store_main(http_request("PUT", ORG_A, fixed)).status_code == 200
    assert get_app().credentials.get(ORG_A).status == "active"
    run_retry_parked()  # the save made the parked work due at once
    assert get_app().parked.for_org(ORG_A) == []
    assert all(get_app().ledger.get(ORG_A, r).state == "registered" for r in regs)
    assert all(dataverse.row(REGISTRATIONS, r)["msevtmgt_syncedwithprovider"] == SYNCED for r in regs)
    assert not get_app().credentials.get(ORG_A).parking


def test_the_hourly_sweep_makes_due_parked_work_that_an_older_save_left_without_a_due_time(
    clock: Any, on24: Any
) -> None:
    on24.down = 503
    reg, body = canonical(ORG_A, START, 0)
    assert deliver(body, START) == "completed"
    on24.down = None
    # What a save of an older version left: the org still parking (failures kept) but no ParkUntil. (An org that is
    # not parking has its busy-parked messages found by their own due time; a parking org waits for its own.)
    get_app().credentials.set_parking(ORG_A, 2, None)
    clock.now = START + timedelta(minutes=30)
    run_retry_parked()
    assert len(get_app().parked.for_org(ORG_A)) == 1, "not due: RetryParked reads only orgs with a due time"
    clock.now = START + timedelta(hours=1)  # the first run of the hour sweeps
    run_retry_parked()
    clock.now += timedelta(minutes=1)
    run_retry_parked()
    assert get_app().parked.for_org(ORG_A) == [] and get_app().ledger.get(ORG_A, reg).state == "registered"


def test_a_parked_message_that_raises_something_unexpected_backs_off_alone(
    clock: Any, on24: Any, app_env: dict[str, str]
) -> None:
    on24.down = 503
    regs = {}
    for org in (ORG_A, ORG_B):
        reg, body = canonical(org, START, 1)
        assert deliver(body, START) == "completed"
        regs[org] = reg
    odd_reg, odd = canonical(ORG_A, START + timedelta(seconds=1), 2)
    assert deliver(odd, START) == "completed"
    ledger = TableServiceClient.from_connection_string(app_env["AzureWebJobsStorage"]).get_table_client(
        app_env["STATE_TABLE_PREFIX"] + "ledger"
    )  # an older version stored the enqueue time as text: ordering it raises TypeError
    ledger.update_entity({"PartitionKey": "~parked", "RowKey": f"{ORG_A}|{odd_reg}",
                          "ReceivedAt": "2026-11-02T08:00:00Z"}, mode=UpdateMode.MERGE)  # fmt: skip
    on24.down = None
    clock.now = START + timedelta(minutes=10)
    run_retry_parked()  # used to raise out of the run

    assert all(get_app().ledger.get(org, reg).state == "registered" for org, reg in regs.items())
    [left] = get_app().parked.for_org(ORG_A)
    assert left.key == odd_reg and "TypeError" in (left.last_error or "")
    assert left.next_attempt_at > clock.now, "it backs off by its own attempts"
    assert get_app().parked.for_org(ORG_B) == []
