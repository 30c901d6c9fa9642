"""The admin page in a real browser, against the real admin routes over HTTP (the sandbox's function host, Azurite,
the Key Vault, ON24 and Dataverse stand-ins). Controls are found by their accessible names, which are part of the
page's contract (docs/admin-api.md, "The admin page")."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from PullMetrics import main as pull_metrics
from RegisterAttendee import main as register_attendee
from sandbox.triggers import canonical_body, service_bus_message
from tests.browser.conftest import FUNCTION_KEY, AdminPage
from tests.builders import CrmOrg
from tests.conftest import ON24_CLIENT_ID, ON24_KEY, ON24_SECRET

pytestmark = pytest.mark.slow
expect: Any = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

WEBINAR = 6610042
PEOPLE = (("Jörg", "Müller", "joerg.mueller@beispiel.de"), ("Åsa", "Ødegård", "asa.odegard@eksempel.no"),
          ("Иван", "Петров", "ivan.petrov@primer.ru"))  # fmt: skip


def connect_form(page: Any, org: str, dataverse_url: str, *, secret: str = ON24_SECRET) -> None:
    page.get_by_label("Function key").fill(FUNCTION_KEY)
    page.get_by_label("Org ID").fill(org)
    page.get_by_label("ON24 client ID").fill(ON24_CLIENT_ID)
    page.get_by_label("Access token key").fill(ON24_KEY)
    page.get_by_label("Access token secret").fill(secret)
    page.get_by_label("Region").select_option("na")
    page.get_by_label("Webinar IDs").fill(str(WEBINAR))
    page.get_by_label("Dataverse URL").fill(dataverse_url)


def register(org: str, crm: CrmOrg, first: str, last: str, email: str) -> str:
    """A CRM registration reaching RegisterAttendee as its queue message."""
    registration = crm.registration(crm.contact(first, last, email))
    body = canonical_body(
        org_id=org,
        registration_id=registration,
        event_id=crm.event_id,
        webinar_id=str(WEBINAR),
        attendee={"email": email, "firstName": first, "lastName": last},
    )
    register_attendee(service_bus_message(body))
    return registration


def cell(page: Any, row_name: str, column: str) -> str:
    """The text of a status table cell, by its row header and column header."""
    headers = [h.strip() for h in page.locator("table").first.locator("thead th").all_inner_texts()]
    row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=row_name, exact=True))
    return str(row.locator("td").nth(headers.index(column) - 1).inner_text()).strip()


def test_an_admin_connects_watches_pulls_forgets_and_switches_off(admin: AdminPage, on24: Any, dataverse: Any) -> None:
    org = str(uuid.uuid4())
    dataverse.organization_id = org  # the org the Dataverse URL belongs to (the save asks WhoAmI)
    live = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    on24.add_event(ON24_CLIENT_ID, WEBINAR, livestart=live, liveend=live + timedelta(hours=1))
    crm = CrmOrg(dataverse, webinar_id=str(WEBINAR))
    page = admin.open()
    admin.screenshot("1-empty")

    # connect
    connect_form(page, org, dataverse.url_for(org))
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_role("status")).to_contain_text("Connected")
    expect(page.get_by_label("Access token secret")).to_have_value("")  # never kept, never shown back
    assert ON24_SECRET not in page.content()
    expect(page.locator("#credentials")).to_contain_text("active")
    expect(page.get_by_role("rowheader", name=str(WEBINAR), exact=True)).to_be_visible()

    # registrations arrive (the queue messages through RegisterAttendee); the status shows them
    for first, last, email in PEOPLE:
        register(org, crm, first, last, email)
    pull_metrics(TimerRequest(past_due=False, schedule_status={}, schedule={}))  # the timer (it also counts)
    page.get_by_role("button", name="Refresh").click()
    registrations = page.locator("#registrations")
    expect(registrations.get_by_role("row").filter(has_text="registered").first).to_contain_text("3")
    expect(page.locator("#registrations-note")).to_contain_text("3 registrants in ON24")
    admin.screenshot("2-connected-with-registrations")

    # the webinar runs; pull now: the check-ins appear
    for index, (_first, _last, email) in enumerate(PEOPLE):
        start = live + timedelta(minutes=3)
        on24.set_attendee(WEBINAR, email, liveminutes=20 + index, firstliveactivity=start,
                          lastliveactivity=start + timedelta(minutes=20 + index), askedquestions=index)  # fmt: skip
    page.get_by_role("button", name="Pull now").click()
    expect(page.get_by_role("status")).to_contain_text("3 check-ins written")
    assert len(dataverse.rows("msevtmgt_checkins")) == 3
    assert cell(page, str(WEBINAR), "Check-ins written") == "3"
    assert cell(page, str(WEBINAR), "Last pull") != "never"
    admin.screenshot("3-pulled")

    # forget one person, with a confirmation step (cancel first: nothing happens)
    page.get_by_label("Email to forget").fill(PEOPLE[2][2])
    page.get_by_role("button", name="Forget").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    expect(page.locator("#forget-result")).to_be_hidden()
    page.get_by_role("button", name="Forget").click()
    admin.screenshot("4-confirm-forget")
    page.get_by_role("dialog").get_by_role("button", name="Yes, forget").click()
    expect(page.locator("#forget-result")).to_contain_text("Forgotten: 1 registration erased")
    remaining = [r["email"] for r in on24.registrants(WEBINAR) if not r.get("isdeleted")]
    assert PEOPLE[2][2] not in remaining and PEOPLE[0][2] in remaining

    # switch off, confirmed with the keyboard
    page.get_by_role("button", name="Switch off").click()
    expect(page.get_by_role("dialog")).to_contain_text("Switch off the integration?")
    page.keyboard.press("Tab")  # from Cancel to the confirming button
    page.keyboard.press("Enter")
    expect(page.locator("#off-result")).to_contain_text("Switched off")
    expect(page.locator("#credentials")).to_contain_text("disabled")
    expect(page.locator("#warnings")).to_contain_text("integration is disabled")
    admin.screenshot("5-switched-off")

    # leave: every row of the org deleted
    page.get_by_role("button", name="Leave and delete all data").click()
    page.get_by_role("dialog").get_by_role("button", name="Yes, delete all data").click()
    expect(page.locator("#off-result")).to_contain_text(re.compile("every row of this org deleted|being deleted"))
    admin.watch.assert_clean()


def test_errors_are_shown_next_to_the_field_they_name(admin: AdminPage, on24: Any, dataverse: Any) -> None:
    org = str(uuid.uuid4())
    page = admin.open()

    # a wrong secret: ON24 refuses; the message sits under the secret, nothing is stored
    connect_form(page, org, dataverse.url_for(org), secret="Wrong-Secret-0001")
    page.get_by_role("button", name="Connect").click()
    secret = page.get_by_label("Access token secret")
    expect(secret).to_have_attribute("aria-invalid", "true")
    expect(secret).to_have_accessible_description(re.compile("ON24 did not accept these credentials"))
    expect(page.get_by_role("alert")).to_be_hidden()
    admin.screenshot("6-error-wrong-secret")

    # an invalid Dataverse URL: refused before any call, under its field
    connect_form(page, org, "https://contoso.example.com")
    page.get_by_label("Dataverse URL").press("Enter")  # the keyboard submits the form
    url = page.get_by_label("Dataverse URL")
    expect(url).to_have_attribute("aria-invalid", "true")
    expect(url).to_have_accessible_description(re.compile("^Must be the https origin of a Dataverse org"))
    expect(secret).not_to_have_attribute("aria-invalid", "true")  # the previous error is gone
    admin.screenshot("7-error-dataverse-url")

    # an expired (renewed) function key: the host answers 401; the message sits under the key
    page.get_by_label("Function key").fill("an-old-key-that-was-renewed")
    page.get_by_role("button", name="Refresh").click()
    key = page.get_by_label("Function key")
    expect(key).to_have_attribute("aria-invalid", "true")
    expect(key).to_have_accessible_description(re.compile("function key was not accepted"))
    admin.screenshot("8-error-function-key")

    page.get_by_label("Function key").fill(FUNCTION_KEY)
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#credentials")).to_contain_text("disabled")
    expect(key).not_to_have_attribute("aria-invalid", "true")
    assert on24.count("POST", "/registrant") == 0
    admin.watch.assert_clean(expected_statuses=(400, 401, 422))


def test_with_app_service_authentication_the_session_is_the_identity(
    browser: Any, app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Signed in (the front end adds the principal): no key field, no key typed, and the routes answer, although
    the app also has an admin key for callers without a session. A principal without the app role is told so."""
    from sandbox.host import FunctionHost
    from shared.app import reset_app
    from tests.browser.conftest import ROOT

    for name, value in {
        "WEBSITE_AUTH_ENABLED": "true",
        "ADMIN_API_KEY": FUNCTION_KEY,
        "WEBSITE_INSTANCE_ID": "i-1",
    }.items():
        monkeypatch.setenv(name, value)
    reset_app()
    org = "7d1f4c2a-9b3e-4f5a-8c6d-2e1f0a9b8c7d"
    admin_role = [{"typ": "roles", "val": "Webinar.Admin"}]
    principal = {"name": "åsa.ødegård@fabrikam.example", "id": "b3f1", "claims": admin_role}
    with FunctionHost(ROOT, function_key="never-typed", principal=principal) as host:
        admin = AdminPage(browser.new_page(), host, Path(os.environ.get("ADMIN_PAGE_SCREENSHOTS") or tmp_path))
        page = admin.open()
        expect(page.get_by_label("Function key")).to_be_hidden()
        expect(page.get_by_text("Signed in with your organisation account")).to_be_visible()
        page.get_by_label("Org ID").fill(org)
        page.get_by_role("button", name="Refresh").click()
        expect(page.locator("#credentials")).to_contain_text("disabled")
        expect(page.get_by_label("Function key")).to_be_hidden()
        admin.screenshot("9-signed-in")
        host.principal = None  # the session ended (App Service authentication sends no principal any more)
        page.get_by_role("button", name="Refresh").click()
        expect(page.get_by_role("alert")).to_contain_text("Your sign-in has ended: reload the page")
        admin.screenshot("10-sign-in-ended")
        expect(page.get_by_label("Function key")).to_be_hidden()
        admin.watch.assert_clean(expected_statuses=(401,))
        page.close()
    reader = {"name": "Jörg Müller", "id": "c4a2", "claims": [{"typ": "roles", "val": "Webinar.Reader"}]}
    with FunctionHost(ROOT, function_key="never-typed", principal=reader) as host:
        admin = AdminPage(browser.new_page(), host, Path(os.environ.get("ADMIN_PAGE_SCREENSHOTS") or tmp_path))
        page = admin.open()
        page.get_by_label("Org ID").fill(org)
        page.get_by_role("button", name="Refresh").click()
        expect(page.get_by_role("alert")).to_contain_text("the app role 'Webinar.Admin' is required")
        expect(page.get_by_label("Function key")).to_be_hidden()
        admin.watch.assert_clean(expected_statuses=(403,))
        page.close()


def test_a_pull_longer_than_the_request_follows_the_202_until_done(
    admin: AdminPage, on24: Any, dataverse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pull now on a webinar with 150 attendees, ON24 slow and the request's budget 1 s: ``202`` with a
    ``Location``. The page follows that ``Location`` honouring ``Retry-After`` (2 s when absent); the next
    PullMetrics run finishes the pull, and the status shows every attendee, without a console error."""
    from shared.app import reset_app

    monkeypatch.setenv("ON_DEMAND_PULL_BUDGET_SECONDS", "1")
    for module in ("shared.entrypoints.operations", "shared.entrypoints.operations_http"):
        monkeypatch.setattr(f"{module}.POLL_SECONDS", 2)  # the operation's Retry-After (30 s deployed), scaled down
    reset_app()
    org, webinar = str(uuid.uuid4()), WEBINAR + 1
    dataverse.organization_id = org  # the org the Dataverse URL belongs to (the save asks WhoAmI)
    live = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    on24.add_event(ON24_CLIENT_ID, webinar, livestart=live, liveend=live + timedelta(hours=1))
    crm = CrmOrg(dataverse, webinar_id=str(webinar))
    page = admin.open()
    connect_form(page, org, dataverse.url_for(org))
    page.get_by_label("Webinar IDs").fill(str(webinar))
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_role("status")).to_contain_text("Connected")
    registration = crm.registration(crm.contact("Jörg", "Müller", PEOPLE[0][2]))
    register_attendee(service_bus_message(canonical_body(
        org_id=org, registration_id=registration, event_id=crm.event_id, webinar_id=str(webinar),
        attendee={"email": PEOPLE[0][2], "firstName": "Jörg", "lastName": "Müller"})))  # fmt: skip
    for index, email in enumerate([PEOPLE[0][2]] + [f"gast.{i:03}@messe.example" for i in range(149)]):
        on24.set_attendee(webinar, email, liveminutes=10 + index % 30, firstliveactivity=live,
                          lastliveactivity=live + timedelta(minutes=10 + index % 30))  # fmt: skip

    on24.latency = 0.6  # every ON24 call takes more than half the request's budget
    with page.expect_response(lambda r: r.request.method == "POST" and "/pull" in r.url) as posted:
        page.get_by_role("button", name="Pull now").click()
    on24.latency = 0.0
    accepted = posted.value
    assert accepted.status == 202, accepted.text()
    location = accepted.headers["location"]
    wait = float(accepted.headers.get("retry-after") or 2)
    expect(page.get_by_role("status")).to_contain_text("still running")
    follow = lambda r: r.request.method == "GET" and r.url.endswith(location)  # noqa: E731
    with page.expect_response(follow, timeout=(wait + 10) * 1000) as followed:
        pass
    answered_at = accepted.request.timing["startTime"] + accepted.request.timing["responseEnd"]
    gap_ms = followed.value.request.timing["startTime"] - answered_at
    assert gap_ms >= wait * 900, f"the page followed Location after {gap_ms} ms, not Retry-After ({wait} s)"

    pull_metrics(TimerRequest(past_due=False, schedule_status={}, schedule={}))  # the next run finishes it
    expect(page.get_by_role("status")).to_contain_text(re.compile(f"Webinar {webinar}(: the pull continues| pulled)"))
    page.get_by_role("button", name="Refresh").click()
    expect(page.get_by_role("status")).to_contain_text("Status refreshed")
    assert cell(page, str(webinar), "Attendees pulled") == "150"
    assert cell(page, str(webinar), "Check-ins written") == "1"
    assert len(dataverse.rows("msevtmgt_checkins")) == 1
    admin.watch.assert_clean()


def test_the_page_shows_each_webinars_drift_counts_and_never_an_email(
    admin: AdminPage, on24: Any, dataverse: Any
) -> None:
    from Reconcile import main as reconcile_main
    from tests.functions import admin_request

    org = str(uuid.uuid4())
    dataverse.organization_id = org  # the org the Dataverse URL belongs to (the save asks WhoAmI)
    on24.add_event(ON24_CLIENT_ID, WEBINAR)
    crm = CrmOrg(dataverse, webinar_id=str(WEBINAR))
    page = admin.open()
    connect_form(page, org, dataverse.url)
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_role("status")).to_contain_text("Connected")
    assert cell(page, str(WEBINAR), "Drift (CRM vs ON24)") == "not checked yet"

    register(org, crm, *PEOPLE[0])
    crm.registration(crm.contact(*PEOPLE[1]))  # its message was dead-lettered: ON24 never heard of Åsa
    on24.add_registrant(WEBINAR, "walk.in@eksempel.dk", firstname="Mette")  # ON24's own registration page
    answer = reconcile_main(admin_request("POST", "orgs/{orgId}/webinars/{webinarId}/reconcile",
                                          {"orgId": org, "webinarId": str(WEBINAR)},
                                          headers={"x-functions-key": FUNCTION_KEY}))  # fmt: skip
    assert answer.status_code == 200
    page.get_by_role("button", name="Refresh").click()
    expect(page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=str(WEBINAR)))).to_contain_text(
        "1 missing in ON24"
    )
    drift = cell(page, str(WEBINAR), "Drift (CRM vs ON24)")
    assert drift.startswith("1 missing in ON24; 1 registered on ON24's own page (1 agree; checked "), drift
    assert "@" not in page.locator("#webinars").inner_text(), "no email on the page"
    admin.screenshot("drift")
    admin.watch.assert_clean()
