# The fixtures env and crm come from the adversity tests (same org, webinars and short timing): their import
# is how pytest finds them (F401) and the parameters that share their names are injections (F811).
# ruff: noqa: F401, F811
"""No silent success (issue 18, item 7), end to end: once retention has cleared a closed webinar's emails, the
forget route still finds the person's registration (by the keyed hash retention left) and forgets the ON24
registrant with the address it was given; a CRM cancel that can no longer address the registrant says so in its
outcome and on the status route, never "cancelled". Real parts: Azurite, the ON24 and Dataverse stand-ins, the
function folders (PullMetrics runs retention)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.functions.timer import TimerRequest

from ForgetAttendee import main as forget_main
from PullMetrics import main as pull_main
from sandbox.triggers import dataverse_delete_body
from shared.app import get_app
from shared.messages import ContactErasure
from shared.registration import handle_contact_erasure
from tests.builders import CrmOrg, dataverse_body
from tests.conftest import ON24_CLIENT_ID
from tests.e2e.test_registration_adversity import ORG, T0, canonical, crm, deliver_until_done, env, row
from tests.functions import admin_request, dataverse_properties, json_body
from WebinarStatus import main as status_main

CLOSED = 880160  # ran 100 days ago, on demand until 40 days ago: with 30 days' grace, closed 10 days ago


def run_timer() -> None:
    pull_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))


def registered_in_a_closed_webinar(on24: Any, crm: CrmOrg, email: str) -> str:
    """A registration of a webinar whose window closed, after retention cleared its email."""
    now = datetime.now(UTC)
    on24.add_event(ON24_CLIENT_ID, CLOSED, livestart=now - timedelta(days=100), archiveend=now - timedelta(days=40))
    reg = str(uuid.uuid4())
    deliver_until_done(canonical(reg, crm, "register", T0, email, webinar=CLOSED))
    run_timer()  # PullMetrics learns the schedule
    run_timer()  # its housekeeping clears the closed webinar's emails
    entry = row(reg)
    assert entry.state == "registered" and entry.email is None and entry.registrant_id, "retention cleared it"
    assert entry.email_hash and "@" not in entry.email_hash, "a keyed hash stands in for the address"
    return reg


def live(on24: Any, email: str) -> list[dict[str, Any]]:
    return [r for r in on24.registrants(CLOSED) if r["email"].lower() == email.lower()]


def test_a_forget_after_retention_finds_the_row_and_forgets_the_on24_registrant_with_the_address_given(
    env: dict[str, str], crm: CrmOrg, on24: Any
) -> None:
    reg = registered_in_a_closed_webinar(on24, crm, "soren.kierkegaard@firma.example")
    assert live(on24, "soren.kierkegaard@firma.example"), "ON24 still holds the person"
    response = forget_main(admin_request("POST", "orgs/{orgId}/webinar/forget", {"orgId": ORG},
                                         {"email": "Soren.Kierkegaard@firma.example"}))  # fmt: skip
    answer = json_body(response)
    assert response.status_code == 200 and answer["registrations"] == [{"registrationId": reg, "outcome": "forgotten"}]
    assert live(on24, "soren.kierkegaard@firma.example") == [], "ON24's forget was called with the given address"
    entry = row(reg)
    assert entry.state == "forgotten" and entry.email is None


def test_a_cancel_that_can_no_longer_address_the_registrant_says_so_and_the_status_route_shows_it(
    env: dict[str, str], crm: CrmOrg, on24: Any
) -> None:
    reg = registered_in_a_closed_webinar(on24, crm, "karin.larsson@firma.example")
    on24.reset_log()
    deliver_until_done(canonical(reg, crm, "cancel", T0 + timedelta(minutes=10), webinar=CLOSED))
    assert on24.count() == 0
    entry = row(reg)
    assert entry.state == "registered" and entry.last_outcome == "failed", "never reported as cancelled"
    assert entry.reason and "cannot be removed" in entry.reason and "karin" not in entry.reason.lower()
    assert live(on24, "karin.larsson@firma.example"), "the registrant is still there, and the row says so"

    run_timer()  # the health summary the status route shows
    status = json_body(status_main(admin_request("GET", "orgs/{orgId}/webinar/status", {"orgId": ORG})))
    failures = status["registrations"]["recentFailures"]
    assert [f["registrationId"] for f in failures] == [reg] and "cannot be removed" in failures[0]["reason"]
    assert "karin" not in json.dumps(status).lower()


def test_a_contact_deletion_after_retention_forgets_with_the_pre_images_address_or_says_it_could_not(
    env: dict[str, str], crm: CrmOrg, on24: Any, dataverse: Any
) -> None:
    now = datetime.now(UTC)
    on24.add_event(ON24_CLIENT_ID, CLOSED, livestart=now - timedelta(days=100), archiveend=now - timedelta(days=40))
    closed_crm = CrmOrg(dataverse, webinar_id=str(CLOSED))
    with_image, without_image = (closed_crm.contact("Mikko", name, f"mikko.{name.lower()}@yritys.example")
                                 for name in ("Virtanen", "Nieminen"))  # fmt: skip
    regs = {contact: closed_crm.registration(contact) for contact in (with_image, without_image)}
    for reg in regs.values():
        deliver_until_done(dataverse_body(org_id=ORG, registration_id=reg, at=T0),
                           application_properties=dataverse_properties("Create"))  # fmt: skip
    run_timer()
    run_timer()
    assert all(row(reg).email is None and row(reg).state == "registered" for reg in regs.values())

    pre_image = "mikko.virtanen@yritys.example"
    deliver_until_done(dataverse_delete_body(org_id=ORG, entity="contact", row_id=with_image,
                                             at=T0 + timedelta(minutes=1), email=pre_image))  # fmt: skip
    assert row(regs[with_image]).state == "forgotten" and live(on24, "mikko.virtanen@yritys.example") == []

    outcome = handle_contact_erasure(
        ContactErasure(org_id=ORG, contact_id=without_image, occurred_at=T0 + timedelta(minutes=1)),
        get_app().registration_ports(),
        received_at=datetime.now(UTC),
    )
    assert outcome.status == "failed" and "1 failed" in (outcome.reason or ""), "never 'forgotten' when it was not"
    assert row(regs[without_image]).last_outcome == "failed" and live(on24, "mikko.nieminen@yritys.example")
