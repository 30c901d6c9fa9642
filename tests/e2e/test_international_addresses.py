# The fixtures env and crm come from the adversity tests (same org, webinars and short timing): their import
# is how pytest finds them (F401) and the parameters that share their names are injections (F811).
# ruff: noqa: F401, F811
"""Addresses of the markets we sell to (Germany, the Nordics, Russia), end to end through the function folders:
registered from both message formats, matched back by PullMetrics however ON24 spells them, forgotten by any
spelling, and an address ON24 refuses recorded as that registration's permanent failure, naming the field.

Real parts: Azurite, the Key Vault, ON24 and Dataverse stand-ins (the ON24 stand-in validates addresses).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest

from ForgetAttendee import main as forget_main
from RegisterAttendee import main as register_main
from sandbox.triggers import dataverse_delete_body
from shared.app import get_app
from tests.builders import CrmOrg, dataverse_body
from tests.e2e.test_pull_metrics import ORG_A, Webinars, run_timer
from tests.e2e.test_registration_adversity import (
    ORG,
    T0,
    WEBINAR,
    active,
    canonical,
    crm,
    deliver_until_done,
    env,
    row,
)
from tests.e2e.test_webinar_status import status
from tests.functions import admin_request, dataverse_properties, json_body, service_bus_message

FORGET_ROUTE = "orgs/{orgId}/webinar/forget"
# (as the CRM holds it, as it is sent to ON24 and kept: the local part as given, the domain in ASCII form)
MARKETS = [
    pytest.param("Jörg.Müller@firma.de", "Jörg.Müller@firma.de", id="german-local-part"),
    pytest.param("user@bücher.de", "user@xn--bcher-kva.de", id="german-idn-domain"),
    pytest.param("åsa.ødegård@företag.se", "åsa.ødegård@xn--fretag-wxa.se", id="nordic"),
    pytest.param("иван@пример.рф", "иван@xn--e1afmkfd.xn--p1ai", id="cyrillic"),
]


def register_from_dataverse(crm: CrmOrg, first: str, last: str, email: str) -> str:
    reg = crm.registration(crm.contact(first, last, email))
    body = dataverse_body(org_id=ORG, registration_id=reg)
    deliver_until_done(body, application_properties=dataverse_properties("Create"))
    return reg


def forget(body: Any) -> tuple[int, Any]:
    response = forget_main(admin_request("POST", FORGET_ROUTE, {"orgId": ORG}, body))
    return response.status_code, json_body(response)


@pytest.mark.parametrize(("address", "sent"), MARKETS)
@pytest.mark.parametrize("source", ["canonical", "dataverse"])
def test_an_address_of_our_markets_is_registered_in_on24_with_its_domain_in_ascii(
    crm: CrmOrg, on24: Any, address: str, sent: str, source: str
) -> None:
    if source == "canonical":
        reg = str(uuid.uuid4())
        deliver_until_done(canonical(reg, crm, "register", T0, address))
    else:
        reg = register_from_dataverse(crm, "Jörg", "Müller", address)

    entry = row(reg)
    assert (entry.state, entry.reason) == ("registered", None), entry.reason
    assert entry.email == sent, "the ledger keeps the form ON24 holds"
    assert active(on24, reg) == [(WEBINAR, sent)]


def test_an_address_on24_refuses_is_a_permanent_failure_naming_the_field_not_the_value(
    crm: CrmOrg, on24: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(on24, "ascii_emails_only", True)  # an account whose ON24 takes ASCII addresses only
    refused, accepted = str(uuid.uuid4()), str(uuid.uuid4())
    with caplog.at_level(logging.DEBUG):
        attempts = deliver_until_done(canonical(refused, crm, "register", T0, "Jörg.Müller@firma.de"))
        deliver_until_done(canonical(accepted, crm, "register", T0, "user@bücher.de"))

    assert attempts == 1, "a refusal is permanent: no redelivery"
    entry = row(refused)
    assert entry.state == "failed" and entry.reason and "Email is not valid" in entry.reason
    assert active(on24, refused) == []
    assert active(on24, accepted) == [(WEBINAR, "user@xn--bcher-kva.de")], "the IDN domain went in ASCII form"
    run_timer()  # the health summary behind the status route is counted by PullMetrics
    code, answer = status(ORG)
    assert code == 200
    [failure] = [f for f in answer["registrations"]["recentFailures"] if f["registrationId"] == refused]
    assert "Email is not valid" in failure["reason"]
    for text in (entry.reason, json.dumps(answer, ensure_ascii=False), caplog.text):
        assert "jörg" not in text.lower() and "firma.de" not in text


@pytest.mark.dataverse_org(ORG_A)
def test_pull_metrics_matches_attendees_by_email_whatever_spelling_on24_shows(webinars: Webinars, on24: Any) -> None:
    w = webinars
    w.register(ORG_A, 7001, "Jörg.Müller@firma.de", via_dataverse=True)
    w.register(ORG_A, 7001, "user@bücher.de")
    w.register(ORG_A, 7001, "åsa.ødegård@företag.se", via_dataverse=True)
    w.register(ORG_A, 7001, "иван@пример.рф")
    # Neither the registration id nor the registrant id comes back: only the address can match, in another
    # spelling than was sent (upper case; the IDN domain in Unicode, or in ASCII but upper case).
    shown = {  # address: (as ON24 holds it, as its attendee list shows it)
        "Jörg.Müller@firma.de": ("Jörg.Müller@firma.de", "JÖRG.MÜLLER@FIRMA.DE"),
        "user@bücher.de": ("user@xn--bcher-kva.de", "User@BÜCHER.de"),
        "åsa.ødegård@företag.se": ("åsa.ødegård@xn--fretag-wxa.se", "Åsa.Ødegård@XN--FRETAG-WXA.SE"),
        "иван@пример.рф": ("иван@xn--e1afmkfd.xn--p1ai", "Иван@Пример.РФ"),
    }
    for n, (held, spelling) in enumerate(shown.values()):
        first = w.live + timedelta(minutes=2)
        on24.set_attendee(
            7001, held, liveminutes=10 + n, firstliveactivity=first, lastliveactivity=first + timedelta(minutes=10),
            exteventusercd="", eventuserid=str(990_000_001 + n), email=spelling,
        )  # fmt: skip

    run_timer()

    for n, address in enumerate(shown):
        checkin = w.checkin(ORG_A, address)
        assert checkin is not None, f"{address} was not matched"
        assert checkin["msevtmgt_viewingdurationinmins"] == 10 + n
    state = get_app().sync_state.get(ORG_A, "7001")
    assert state is not None and state.counts["matched"] == 4 and state.counts["unmatched"] == 0


@pytest.mark.parametrize(
    ("registered", "asked"),
    [
        pytest.param("åsa.ødegård@företag.se", "Åsa.Ødegård@FÖRETAG.SE", id="unicode-domain-other-case"),
        pytest.param("иван@пример.рф", "иван@XN--E1AFMKFD.XN--P1AI", id="ascii-domain"),
        pytest.param("Jörg.Müller@firma.de", "jörg.müller@firma.de", id="local-part-other-case"),
    ],
)
def test_forget_by_an_address_of_our_markets_finds_every_trace_under_any_spelling(
    crm: CrmOrg, on24: Any, registered: str, asked: str
) -> None:
    reg = str(uuid.uuid4())
    deliver_until_done(canonical(reg, crm, "register", T0, registered))
    bad = {"schema": "webinar-registration/1", "orgId": ORG, "action": "dance", "attendee": {"email": registered}}
    register_main(service_bus_message(json.dumps(bad, ensure_ascii=False)))  # kept whole, Unicode domain in it
    bystander = str(uuid.uuid4())
    deliver_until_done(canonical(bystander, crm, "register", T0, "anna.schmidt@firma.de"))

    code, answer = forget({"email": asked})

    assert code == 200, answer
    assert answer["registrations"] == [{"registrationId": reg, "outcome": "forgotten"}]
    assert answer["rejectedMessagesDeleted"] == 1
    assert active(on24, reg) == [] and row(reg).email is None
    assert active(on24, bystander) == [(WEBINAR, "anna.schmidt@firma.de")]


def test_a_deleted_crm_contact_forgets_a_registration_known_only_by_its_address_in_another_spelling(
    crm: CrmOrg, on24: Any
) -> None:
    contact = crm.contact("Иван", "Петров", "Иван@Пример.РФ")  # the pre-image's spelling
    by_email = str(uuid.uuid4())  # canonical: known by email only, kept as иван@xn--e1afmkfd.xn--p1ai
    deliver_until_done(canonical(by_email, crm, "register", T0, "иван@пример.рф"))
    bystander = str(uuid.uuid4())
    deliver_until_done(canonical(bystander, crm, "register", T0, "иван@пример.бг"))  # noqa: RUF001 - Bulgaria: another domain

    deliver_until_done(
        dataverse_delete_body(org_id=ORG, entity="contact", row_id=contact, at=T0 + timedelta(minutes=1),
                              email="Иван@Пример.РФ")
    )  # fmt: skip

    assert row(by_email).state == "forgotten" and active(on24, by_email) == []
    assert row(bystander).state == "registered" and active(on24, bystander) == [(WEBINAR, "иван@xn--e1afmkfd.xn--90ae")]
