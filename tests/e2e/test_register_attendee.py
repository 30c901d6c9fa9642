"""RegisterAttendee.main fed Service Bus messages built by the azure.functions converter.

Real parts: Azurite (ledger, org table), the HTTPS Key Vault stand-in, and the ON24 and Dataverse stand-ins
reached over sockets by the production clients.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from RegisterAttendee import main
from RemoveCredentials import main as remove_main
from RetryParked import main as retry_main
from shared.app import get_app, reset_app
from shared.errors import TransientError
from StoreCredentials import main as store_main
from tests.builders import CrmOrg, canonical_body, dataverse_body
from tests.conftest import ON24_CLIENT_ID, ON24_SECRET, credentials_body
from tests.e2e.test_registration_adversity import redrive_parked_when_due
from tests.functions import dataverse_properties, http_request, service_bus_message
from tests.unit.test_messages import HOSTILE_BODIES

ORG = "7d1f4c2a-9b3e-4f5a-8c6d-2e1f0a9b8c7d"
WEBINAR = 880001
REGISTRATIONS = "msevtmgt_eventregistrations"


@pytest.fixture
def env(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, on24: Any) -> dict[str, str]:
    for name, value in {
        "RETRY_BUDGET_SECONDS": "0.5",
        "ON24_TIMEOUT_SECONDS": "1",
        "REGISTRATION_LEASE_MARGIN_SECONDS": "0.5",
        "REGISTRATION_LEASE_SECONDS": "7",
        "REGISTRATION_LEASE_WAIT_SECONDS": "0.5",
    }.items():
        monkeypatch.setenv(name, value)
    reset_app()
    on24.add_event(ON24_CLIENT_ID, WEBINAR, title="Quarterly product webinar")
    assert store_main(http_request("PUT", ORG, credentials_body())).status_code == 200
    on24.reset_log()
    return app_env


@pytest.fixture
def crm(env: dict[str, str], dataverse: Any) -> CrmOrg:
    return CrmOrg(dataverse, webinar_id=str(WEBINAR))


def attendee(email: str, **extra: Any) -> dict[str, Any]:
    return {
        "email": email,
        "firstName": "Zoë",
        "lastName": "Ångström",
        "company": "Fabrikam",
        "jobTitle": "CTO",
        "country": "Sweden",
        **extra,
    }


def deliver(body: Any, **kwargs: Any) -> None:
    main(service_bus_message(body, **kwargs))


def ledger_row(registration_id: str, org: str = ORG) -> Any:
    return get_app().ledger.get(org, registration_id)


def registrants(on24: Any, event: int = WEBINAR) -> list[dict[str, Any]]:
    return on24.registrants(event)


def test_canonical_message_registers_with_the_right_fields_and_updates_crm(
    crm: CrmOrg, on24: Any, dataverse: Any
) -> None:
    contact = crm.contact("Zoë", "Ångström", "zoe@fabrikam.example")
    reg = crm.registration(contact)
    deliver(
        canonical_body(
            org_id=ORG,
            registration_id=reg,
            event_id=crm.event_id,
            webinar_id=str(WEBINAR),
            attendee=attendee("zoe@fabrikam.example"),
        )
    )
    [person] = registrants(on24)
    assert person["email"] == "zoe@fabrikam.example"
    assert person["firstname"] == "Zoë" and person["lastname"] == "Ångström"
    assert person["company"] == "Fabrikam" and person["jobtitle"] == "CTO" and person["country"] == "Sweden"
    assert person["exteventusercd"] == reg, "metrics match on the CRM registration id"
    row = dataverse.row(REGISTRATIONS, reg)
    assert row["msevtmgt_webinarregistrationid"] == str(person["eventuserid"])
    assert row["msevtmgt_syncedwithprovider"] == 100000002
    assert row["msevtmgt_publishingstate"] == 100000001
    entry = ledger_row(reg)
    assert entry.state == "registered" and entry.registrant_id == str(person["eventuserid"]) and entry.crm_settled
    assert on24.count("POST") == 1


def test_dataverse_create_message_looks_up_contact_and_event(crm: CrmOrg, on24: Any, dataverse: Any) -> None:
    contact = crm.contact("Jürgen", "Weiß", "juergen@fabrikam.example", jobtitle="Head of IT")
    reg = crm.registration(contact)
    deliver(
        dataverse_body(org_id=ORG, registration_id=reg, event_id=crm.event_id, contact_id=contact),
        application_properties=dataverse_properties("Create"),
    )
    [person] = registrants(on24)
    assert person["email"] == "juergen@fabrikam.example"
    assert person["firstname"] == "Jürgen" and person["lastname"] == "Weiß"
    assert person["company"] == "Fabrikam Ltd", "company name from the parent account, not contact.company (phone)"
    assert person["jobtitle"] == "Head of IT"
    assert person["exteventusercd"] == reg
    assert dataverse.row(REGISTRATIONS, reg)["msevtmgt_webinarregistrationid"] == str(person["eventuserid"])


def test_same_message_delivered_five_times_makes_one_registrant(crm: CrmOrg, on24: Any) -> None:
    reg = crm.registration(crm.contact("Ada", "Lovelace", "ada@example.com"))
    message_id = uuid.uuid4().hex
    body = dataverse_body(org_id=ORG, registration_id=reg, event_id=crm.event_id)
    for delivery in range(1, 6):
        deliver(
            body, message_id=message_id, delivery_count=delivery, application_properties=dataverse_properties("Create")
        )
    assert len(registrants(on24)) == 1
    assert on24.count("POST") == 1, "a duplicate makes no ON24 call"


def test_fifty_concurrent_duplicates_make_exactly_one_registrant(crm: CrmOrg, on24: Any) -> None:
    reg = crm.registration(crm.contact("Grace", "Hopper", "grace@example.com"))
    body = canonical_body(
        org_id=ORG,
        registration_id=reg,
        event_id=crm.event_id,
        webinar_id=str(WEBINAR),
        attendee=attendee("grace@example.com"),
    )
    on24.latency = 0.05  # widen the race window

    def deliver_until_completed(_: int) -> int:
        for attempt in range(1, 30):
            try:
                deliver(body, delivery_count=attempt)
                return attempt
            except TransientError:
                continue  # Service Bus would redeliver
        raise AssertionError("never completed")

    with ThreadPoolExecutor(max_workers=16) as pool:
        attempts = list(pool.map(deliver_until_completed, range(50)))
    assert len(attempts) == 50
    assert len(registrants(on24)) == 1
    assert on24.count("POST", "/registrant") == 1
    assert ledger_row(reg).state == "registered"


def test_cancel_soft_deletes_and_an_older_register_does_not_revive(crm: CrmOrg, on24: Any, dataverse: Any) -> None:
    contact = crm.contact("Alan", "Turing", "alan@example.com")
    reg = crm.registration(contact)
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    register = dataverse_body(org_id=ORG, registration_id=reg, event_id=crm.event_id, contact_id=contact, at=t0)
    deliver(register, application_properties=dataverse_properties("Create"))
    assert registrants(on24)[0]["isdeleted"] is False

    dataverse.add_row(REGISTRATIONS, {"msevtmgt_eventregistrationid": reg, "msevtmgt_iscanceled": True})
    cancel = dataverse_body(
        org_id=ORG, registration_id=reg, message="Update", canceled=True, at=t0 + timedelta(minutes=5)
    )
    deliver(cancel, application_properties=dataverse_properties("Update"))
    assert registrants(on24)[0]["isdeleted"] is True
    assert ledger_row(reg).state == "cancelled"

    on24.reset_log()
    old_register = canonical_body(
        org_id=ORG,
        registration_id=reg,
        event_id=crm.event_id,
        webinar_id=str(WEBINAR),
        attendee=attendee("alan@example.com"),
        occurred_at=t0 + timedelta(minutes=1),
    )
    deliver(old_register)
    assert on24.count() == 0, "a replayed older register makes no ON24 call"
    assert registrants(on24)[0]["isdeleted"] is True
    assert ledger_row(reg).state == "cancelled"


def test_update_propagates_changed_contact_details(crm: CrmOrg, on24: Any, dataverse: Any) -> None:
    contact = crm.contact("Katherine", "Johnson", "kj@example.com")
    reg = crm.registration(contact)
    t0 = datetime.now(UTC) - timedelta(minutes=3)
    deliver(
        dataverse_body(org_id=ORG, registration_id=reg, at=t0), application_properties=dataverse_properties("Create")
    )
    dataverse.add_row("contacts", {"contactid": contact, "lastname": "Goble Johnson", "jobtitle": "Mathematician"})
    deliver(
        dataverse_body(org_id=ORG, registration_id=reg, message="Update", at=t0 + timedelta(minutes=1)),
        application_properties=dataverse_properties("Update"),
    )
    [person] = registrants(on24)
    assert person["lastname"] == "Goble Johnson" and person["jobtitle"] == "Mathematician"
    assert on24.count("PATCH") == 1 and ledger_row(reg).last_outcome == "updated"

    dataverse.add_row("contacts", {"contactid": contact, "emailaddress1": "katherine@nasa.example"})
    deliver(
        dataverse_body(org_id=ORG, registration_id=reg, message="Update", at=t0 + timedelta(minutes=2)),
        application_properties=dataverse_properties("Update"),
    )
    by_email = {p["email"]: p for p in registrants(on24)}
    assert by_email["kj@example.com"]["isdeleted"] is True, "a changed email moves the registration"
    assert by_email["katherine@nasa.example"]["isdeleted"] is False
    assert dataverse.row(REGISTRATIONS, reg)["msevtmgt_webinarregistrationid"] == str(
        by_email["katherine@nasa.example"]["eventuserid"]
    )


def test_removed_integration_skips_with_zero_on24_calls(crm: CrmOrg, on24: Any) -> None:
    assert remove_main(http_request("DELETE", ORG)).status_code == 200
    reg = crm.registration(crm.contact("Mary", "Jackson", "mary@example.com"))
    on24.reset_log()
    deliver(dataverse_body(org_id=ORG, registration_id=reg), application_properties=dataverse_properties("Create"))
    assert on24.count() == 0
    entry = ledger_row(reg)
    assert entry.last_outcome.startswith("skipped: integration disabled")
    assert registrants(on24) == []


def test_event_that_is_not_an_on24_webinar_is_skipped(env: dict[str, str], dataverse: Any, on24: Any) -> None:
    onsite = CrmOrg(dataverse, webinar_id=None)
    reg = onsite.registration(onsite.contact("Dorothy", "Vaughan", "dorothy@example.com"))
    deliver(dataverse_body(org_id=ORG, registration_id=reg), application_properties=dataverse_properties("Create"))
    assert on24.count() == 0
    assert ledger_row(reg).last_outcome.startswith("skipped: not an ON24 webinar")


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503},
        {"status": 500},
        {"status": 429, "headers": {"Retry-After": "0"}},
        {"status": 403, "payload": {"message": "You have reached the maximum number of calls for this api."}},
        {"status": 0, "drop": True},
        {"status": 0, "delay": 1.5},  # longer than the client's read timeout (ON24_TIMEOUT_SECONDS=1)
    ],
    ids=["503", "500", "429", "403-throttle", "dropped-connection", "timeout"],
)
def test_on24_outage_raises_for_redelivery_then_succeeds(
    crm: CrmOrg, on24: Any, dataverse: Any, fault: dict[str, Any]
) -> None:
    reg = crm.registration(crm.contact("Hedy", "Lamarr", "hedy@example.com"))
    body = dataverse_body(org_id=ORG, registration_id=reg)
    on24.fail_next(10 if "delay" not in fault else 1, method="POST", **fault)
    message_id, enqueued = uuid.uuid4().hex, datetime.now(UTC)
    properties = dataverse_properties("Create")
    with pytest.raises(TransientError):
        deliver(body, message_id=message_id, enqueued_time=enqueued, application_properties=properties)
    assert registrants(on24) == [] or fault.get("delay"), "nothing registered yet"
    on24.clear_faults()
    for delivery in range(2, 40):  # Service Bus redelivers; the row stays quiet while an unanswered call may land
        try:
            deliver(body, message_id=message_id, enqueued_time=enqueued, delivery_count=delivery,
                    application_properties=properties)  # fmt: skip
            break
        except TransientError:
            continue
    redrive_parked_when_due()  # a redelivery within the quiet time is parked until it ends, then re-driven
    assert len([p for p in registrants(on24) if not p["isdeleted"]]) == 1
    assert ledger_row(reg).state == "registered"
    assert dataverse.row(REGISTRATIONS, reg)["msevtmgt_publishingstate"] == 100000001


def test_dataverse_throttling_slows_down_and_completes(
    crm: CrmOrg, on24: Any, dataverse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_BUDGET_SECONDS", "5")
    monkeypatch.setenv("REGISTRATION_LEASE_SECONDS", "11")
    reset_app()
    reg = crm.registration(crm.contact("Radia", "Perlman", "radia@example.com"))
    dataverse.fail_next(
        2,
        status=429,
        headers={"Retry-After": "1"},
        payload={"error": {"code": "0x80072322", "message": "Number of requests exceeded the limit"}},
    )
    deliver(dataverse_body(org_id=ORG, registration_id=reg), application_properties=dataverse_properties("Create"))
    assert ledger_row(reg).state == "registered"
    assert dataverse.row(REGISTRATIONS, reg)["msevtmgt_webinarregistrationid"]


def test_crm_write_back_failure_is_retried_without_a_second_on24_call(crm: CrmOrg, on24: Any, dataverse: Any) -> None:
    reg = crm.registration(crm.contact("Frances", "Allen", "frances@example.com"))
    body = canonical_body(
        org_id=ORG,
        registration_id=reg,
        event_id=crm.event_id,
        webinar_id=str(WEBINAR),
        attendee=attendee("frances@example.com"),
    )
    dataverse.fail_next(5, status=503, method="PATCH")
    with pytest.raises(TransientError):
        deliver(body)
    assert ledger_row(reg).state == "registered" and not ledger_row(reg).crm_settled
    dataverse.clear_faults()
    deliver(body)
    assert on24.count("POST") == 1
    assert dataverse.row(REGISTRATIONS, reg)["msevtmgt_webinarregistrationid"]
    assert ledger_row(reg).crm_settled


def test_contact_without_email_fails_permanently_and_flags_crm(crm: CrmOrg, on24: Any, dataverse: Any) -> None:
    reg = crm.registration(crm.contact("No", "Email", None))
    deliver(dataverse_body(org_id=ORG, registration_id=reg), application_properties=dataverse_properties("Create"))
    assert on24.count() == 0
    entry = ledger_row(reg)
    assert entry.state == "failed" and "no email" in (entry.reason or "")
    assert dataverse.row(REGISTRATIONS, reg)["msevtmgt_publishingstate"] == 100000004


def test_on24_refusal_is_recorded_as_a_permanent_failure(crm: CrmOrg, on24: Any, dataverse: Any) -> None:
    reg = crm.registration(crm.contact("Barbara", "Liskov", "barbara@example.com"))
    on24.fail_next(1, status=400, payload={"message": "Invalid value for country"}, method="POST")
    deliver(dataverse_body(org_id=ORG, registration_id=reg), application_properties=dataverse_properties("Create"))
    entry = ledger_row(reg)
    assert entry.state == "failed" and "Invalid value for country" in (entry.reason or "")
    assert dataverse.row(REGISTRATIONS, reg)["msevtmgt_publishingstate"] == 100000004


def test_revoked_on24_token_parks_the_registration_until_the_credentials_are_saved_again(
    crm: CrmOrg, on24: Any, dataverse: Any
) -> None:
    on24.deactivate(ON24_CLIENT_ID)
    reg = crm.registration(crm.contact("Adele", "Goldberg", "adele@example.com"))
    deliver(dataverse_body(org_id=ORG, registration_id=reg), application_properties=dataverse_properties("Create"))
    entry = ledger_row(reg)
    assert entry is None or entry.state != "failed", "not the registration's fault: parked, not failed"
    assert dataverse.row(REGISTRATIONS, reg)["msevtmgt_publishingstate"] != 100000004
    assert [m.key for m in get_app().parked.for_org(ORG)] == [reg]
    org = get_app().credentials.get(ORG)
    assert org.status == "rejected" and "deactivated" in (org.status_reason or ""), "the org shows why"
    on24.reactivate(ON24_CLIENT_ID)
    calls = on24.count()
    later = crm.registration(crm.contact("Ada", "Later", "ada.later@example.com"))
    deliver(dataverse_body(org_id=ORG, registration_id=later), application_properties=dataverse_properties("Create"))
    assert on24.count() == calls, "while the org is rejected, new registrations park without calling ON24"
    assert store_main(http_request("PUT", ORG, credentials_body())).status_code == 200
    assert get_app().credentials.get(ORG).status == "active", "ON24 accepted the saved credentials"
    retry_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))  # the save made them due at once
    assert ledger_row(reg).state == "registered" and ledger_row(later).state == "registered"
    assert get_app().parked.for_org(ORG) == []


def test_malformed_and_hostile_bodies_get_a_permanent_outcome_and_no_on24_call(
    env: dict[str, str], on24: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="shared.entrypoints.queue"):
        for body, content_type, _expected in [getattr(p, "values", p) for p in HOSTILE_BODIES]:
            deliver(body, content_type=content_type)  # returns: the message completes
    assert on24.count() == 0
    kept = list(get_app().rejected.list())
    assert len(kept) == len(HOSTILE_BODIES) >= 30, "every rejected body is kept with its reason"
    assert all(row.reason for row in kept)
    assert len([r for r in caplog.records if getattr(r, "outcome", None) == "rejected"]) == len(HOSTILE_BODIES)


def test_one_structured_log_line_per_message_without_secrets(crm: CrmOrg, caplog: pytest.LogCaptureFixture) -> None:
    reg = crm.registration(crm.contact("Lynn", "Conway", "lynn@example.com"))
    with caplog.at_level(logging.DEBUG):
        deliver(dataverse_body(org_id=ORG, registration_id=reg), application_properties=dataverse_properties("Create"))
    lines = [r for r in caplog.records if r.name == "shared.entrypoints.queue"]
    assert len(lines) == 1
    line = lines[0]
    assert (line.org_id, line.registration_id, line.on24_event_id, line.outcome) == (
        ORG,
        reg,
        str(WEBINAR),
        "registered",
    )
    assert isinstance(line.duration_ms, float)
    assert ON24_SECRET not in caplog.text
