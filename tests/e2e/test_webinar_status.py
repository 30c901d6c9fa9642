"""WebinarStatus (GET /api/orgs/{orgId}/webinar/status) end to end: registrations through RegisterAttendee,
metrics and the health summaries through PullMetrics, the answer through the function's ``main``.

Real parts: Azurite, the HTTPS Key Vault stand-in, the ON24 and Dataverse stand-ins.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient, UpdateMode

from PullWebinar import main as pull_main
from RegisterAttendee import main as register_main
from shared.app import get_app, reset_app
from tests.builders import canonical_body
from tests.conftest import ON24_KEY, ON24_SECRET
from tests.e2e.test_admin_security import user_principal
from tests.e2e.test_pull_metrics import CLIENT_B, ORG_A, ORG_B, Webinars, run_timer
from tests.functions import admin_request, json_body, service_bus_message
from WebinarStatus import main as status_main

STATUS = "orgs/{orgId}/webinar/status"


def status(org: str, **kwargs: Any) -> tuple[int, Any]:
    response = status_main(admin_request("GET", STATUS, {"orgId": org}, **kwargs))
    return response.status_code, json_body(response)


@pytest.fixture
def table_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every request to Azurite's Table service, as ``METHOD path?query``."""
    from shared.store.transport import HttpClientTransport

    seen: list[str] = []
    original = HttpClientTransport.send

    def recording(self: Any, request: Any, **kwargs: Any) -> Any:
        if "/devstoreaccount1/" in request.url:
            seen.append(f"{request.method} {request.url.split('/devstoreaccount1/', 1)[1]}")
        return original(self, request, **kwargs)

    monkeypatch.setattr(HttpClientTransport, "send", recording)
    return seen


def reject_a_message_for(org: str) -> None:
    body = {"schema": "webinar-registration/1", "orgId": org, "action": "register", "registrationId": "not-a-guid"}
    register_main(service_bus_message(body))


def test_a_healthy_org_and_a_failing_org_each_show_every_field(webinars: Webinars, on24: Any) -> None:
    w = webinars
    for email in ("ada@a.example", "bob@a.example"):
        w.register(ORG_A, 7001, email)
    w.register(ORG_A, 7002, "cy@a.example")
    w.watch(7001, "ada@a.example", live=30)
    w.watch(7001, "walk-in@a.example", live=5)
    w.register(ORG_B, 7003, "early@b.example")
    on24.deactivate(CLIENT_B)  # e.g. unused for 60 days: ON24 disabled the token
    failing = [w.register(ORG_B, 7003, f"b{i}@b.example") for i in range(7)]
    reject_a_message_for(ORG_B)

    run_timer()

    code, healthy = status(ORG_A)
    assert code == 200
    assert healthy["orgId"] == ORG_A and healthy["configured"] is True
    assert healthy["credentials"]["status"] == "active" and healthy["credentials"]["metrics"]["status"] == "ok"
    token = healthy["token"]
    assert token["state"] == "ok" and token["idleDays"] == 0
    assert token["warnFromDays"] == 45 and token["disabledAfterDays"] == 60
    assert datetime.fromisoformat(token["lastSuccessfulUse"]) > datetime.now(UTC) - timedelta(minutes=5)
    assert [x["webinarId"] for x in healthy["webinars"]] == ["7001", "7002"]
    first = healthy["webinars"][0]
    assert first["status"] == "ok" and first["lastError"] is None and first["pending"] is None
    assert first["counts"] == {"pulled": 2, "matched": 1, "written": 1, "unchanged": 0, "unmatched": 1, "failed": 0}
    assert first["lastPull"] and first["nextDue"], "a webinar live two hours ago is due every run"
    assert healthy["registrations"]["last24h"] == {
        "registered": 3, "updated": 0, "cancelled": 0, "skipped": 0, "failed": 0, "parked": 0,
    }  # fmt: skip
    assert healthy["registrations"]["total"]["registered"] == 3 and healthy["registrations"]["inOn24"] == 3
    assert healthy["registrations"]["recentFailures"] == []
    assert healthy["rejectedMessages"] == {"total": 0, "waiting": 0, "last24h": 0, "latest": None}
    assert healthy["warnings"] == []

    code, broken = status(ORG_B)
    assert code == 200
    assert broken["credentials"]["status"] == "rejected"
    assert "deactivated" in broken["credentials"]["statusReason"]
    assert broken["token"]["state"] == "rejected"
    registrations = broken["registrations"]  # ON24 refused the token: parked until a save, none failed
    assert registrations["last24h"]["failed"] == 0 and registrations["total"]["parked"] == 7
    assert registrations["inOn24"] == 1 and registrations["total"]["registered"] == 1
    assert broken["webinars"][0]["webinarId"] == "7003" and broken["webinars"][0]["lastPull"] is None
    assert registrations["recentFailures"] == []
    assert registrations["parking"]["failedAttempts"] == 1
    assert {m.key for m in get_app().parked.for_org(ORG_B)} == set(failing)
    rejected = broken["rejectedMessages"]
    assert rejected["total"] == 1 and rejected["waiting"] == 1 and rejected["last24h"] == 1
    assert "registrationId" in rejected["latest"]["reason"]
    warnings = " | ".join(w["message"] for w in broken["warnings"])
    assert "ON24 refused the org's credentials" in warnings
    assert "7 registrations are parked until the org's credentials are saved again (PUT)" in warnings
    assert "1 rejected queue messages" in warnings
    codes = {w["code"] for w in broken["warnings"]}
    assert {"credentials_rejected", "registrations_parked", "rejected_messages_waiting"} <= codes

    for answer in (healthy, broken):
        text = json.dumps(answer)
        assert ON24_SECRET not in text and ON24_KEY not in text and "Secret-B-0001" not in text


def test_counts_follow_new_outcomes_at_once_without_a_timer_run(webinars: Webinars) -> None:
    w = webinars
    w.register(ORG_A, 7001, "one@a.example")
    assert status(ORG_A)[1]["registrations"]["total"]["registered"] == 1, "no PullMetrics run yet"
    w.register(ORG_A, 7001, "two@a.example")
    answer = status(ORG_A)[1]
    assert answer["registrations"]["total"]["registered"] == 2
    assert answer["registrations"]["last24h"]["registered"] == 2
    run_timer()
    assert status(ORG_A)[1]["registrations"]["total"]["registered"] == 2, "the timer's count agrees"


def test_right_after_setup_every_registered_webinar_and_every_registration_shows(
    webinars: Webinars, dataverse: Any
) -> None:
    """The issue's scenario: 8 people registered to two webinars, one pulled on demand, no PullMetrics run."""
    w = webinars
    people = [("Jörg", "Müller", "joerg.mueller"), ("Åsa", "Ødegård", "asa.odegard"), ("Иван", "Петров", "ivan.petrov"),
              ("Sæunn", "Þórsdóttir", "saeunn")]  # fmt: skip
    for event in (7001, 7002):
        crm = w.crm[event]
        for first, last, local in people:
            email = f"{local}.{event}@a.example"
            reg = crm.registration(crm.contact(first, last, email))
            body = canonical_body(
                org_id=ORG_A, registration_id=reg, event_id=crm.event_id, webinar_id=str(event),
                attendee={"email": email, "firstName": first, "lastName": last},
            )  # fmt: skip
            register_main(service_bus_message(body))
            w.regs[email] = reg
    w.watch(7001, "joerg.mueller.7001@a.example", live=12)
    route = {"orgId": ORG_A, "webinarId": "7001"}
    assert pull_main(admin_request("POST", "orgs/{orgId}/webinars/{webinarId}/pull", route)).status_code == 200

    answer = status(ORG_A)[1]

    assert answer["registrations"]["total"]["registered"] == 8, answer["registrations"]
    assert answer["registrations"]["inOn24"] == 8
    assert answer["registrations"]["last24h"]["registered"] == 8
    webinars_shown = {x["webinarId"]: x for x in answer["webinars"]}
    assert set(webinars_shown) == {"7001", "7002"}, "the webinar never pulled is listed too"
    assert webinars_shown["7001"]["status"] == "ok" and webinars_shown["7001"]["counts"]["written"] == 1
    never = webinars_shown["7002"]
    assert never["status"] == "never_pulled" and never["lastPull"] is None and never["nextDue"] is not None


def test_a_status_call_on_a_quiet_org_reads_no_ledger_row_and_no_rejected_message(
    webinars: Webinars, table_requests: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    w = webinars
    for i in range(5):
        w.register(ORG_A, 7001, f"r{i}@a.example")
    run_timer()
    monkeypatch.setattr("shared.health.current.CHANGE_OVERLAP", timedelta(0))  # the registrations are older
    table_requests.clear()
    assert status(ORG_A)[0] == 200
    prefix = get_app().settings.table_prefix
    assert len(table_requests) == 6, table_requests  # + the reconciliation rows of the org's partition
    reconciliations = [r for r in table_requests if "~reconcile" in urllib.parse.unquote(r)]
    assert len(reconciliations) == 1 and f"{prefix}syncstate" in reconciliations[0], "the org's own rows only"
    ledger = [urllib.parse.unquote(r) for r in table_requests if f"{prefix}ledger" in r]
    parked = [r for r in ledger if "~parked" in r]
    asked = [r for r in ledger if "UpdatedAt ge" in r]
    assert len(ledger) == 2 and len(parked) == 1 and len(asked) == 1, ledger
    assert "$top=1" in asked[0] and "$select=RowKey" in asked[0], "one question: anything new since the count?"
    assert f"RowKey ge '{ORG_A}|'" in parked[0], "only the org's parked rows, no ledger rows"


def test_a_token_idle_for_45_days_warns_and_a_pull_clears_it(webinars: Webinars, app_env: dict[str, str]) -> None:
    orgs = TableServiceClient.from_connection_string(app_env["AzureWebJobsStorage"]).get_table_client(
        app_env["STATE_TABLE_PREFIX"] + "orgs"
    )
    stored = datetime.now(UTC) - timedelta(days=50)  # credentials checked by ON24 50 days ago, nothing since
    orgs.update_entity({"PartitionKey": ORG_A, "RowKey": "credentials", "UpdatedAt": stored}, mode=UpdateMode.MERGE)
    token = status(ORG_A)[1]["token"]
    assert token["state"] == "warning" and token["idleDays"] == 50
    assert "in about 10 days" in token["message"] and "POST a pull" in token["message"]
    assert any(w["code"] == "token_expiring" for w in status(ORG_A)[1]["warnings"])

    orgs.update_entity(
        {"PartitionKey": ORG_A, "RowKey": "credentials", "UpdatedAt": stored - timedelta(days=11)},
        mode=UpdateMode.MERGE,
    )
    assert status(ORG_A)[1]["token"]["state"] == "expired"

    route = {"orgId": ORG_A, "webinarId": "7001"}
    assert pull_main(admin_request("POST", "orgs/{orgId}/webinars/{webinarId}/pull", route)).status_code == 200
    assert status(ORG_A)[1]["token"]["state"] == "ok", "a pull is a successful use of the token"


def test_an_org_without_credentials_answers_configured_false(app_env: dict[str, str]) -> None:
    code, answer = status(ORG_A)
    assert code == 200
    assert answer["configured"] is False and answer["token"] is None and answer["webinars"] == []
    disabled = "the integration is disabled for this org: no ON24 credentials are stored"
    assert answer["warnings"] == [{"code": "integration_disabled", "message": disabled}]


@pytest.mark.parametrize(
    ("org", "raw", "field"),
    [("not a guid!", b"", "orgId"), (ORG_A, b'{"verbose": true}', "body"), ("x" * 65, b"", "orgId")],
)
def test_bad_input_is_a_400_naming_the_field(app_env: dict[str, str], org: str, raw: bytes, field: str) -> None:
    code, answer = status(org, raw=raw)
    assert code == 400 and answer["error"]["field"] == field


def test_only_get_is_served(app_env: dict[str, str]) -> None:
    response = status_main(admin_request("POST", STATUS, {"orgId": ORG_A}))
    assert response.status_code == 405


def test_app_service_authentication_and_the_org_scope_apply(
    webinars: Webinars, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")
    monkeypatch.setenv("ADMIN_ORG_SCOPE", "true")
    reset_app()
    assert status(ORG_A)[0] == 401, "no principal"
    ada = user_principal("ada@contoso.com", [f"Webinar.Admin.{ORG_A}"])
    assert status(ORG_A, headers=ada)[0] == 200
    code, answer = status(ORG_B, headers=ada)
    assert code == 403 and answer["error"]["code"] == "forbidden"
    operator = user_principal("ops@contoso.com", ["Webinar.Admin"])
    assert status(ORG_B, headers=operator)[0] == 200


def test_upper_case_org_ids_address_the_same_org(webinars: Webinars) -> None:
    webinars.register(ORG_A, 7001, "case@a.example")
    run_timer()
    code, answer = status(ORG_A.upper())
    assert code == 200 and answer["orgId"] == ORG_A and answer["registrations"]["total"]["registered"] == 1


def test_unattributed_rejections_are_not_shown_to_any_org(webinars: Webinars) -> None:
    register_main(service_bus_message(b"{not json"))
    register_main(service_bus_message({"schema": "webinar-registration/1", "orgId": ORG_B, "action": "nope"}))
    run_timer()
    assert status(ORG_A)[1]["rejectedMessages"]["total"] == 0
    assert status(ORG_B)[1]["rejectedMessages"]["total"] == 1
    assert uuid.UUID(ORG_B)


def test_parked_registrations_and_the_orgs_parking_are_shown(
    webinars: Webinars, on24: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_BUDGET_SECONDS", "0")
    reset_app()
    on24.fail_next(50, status=503, path_contains="/registrant")  # ON24 is down
    crm = webinars.crm[7001]
    for i in range(2):
        reg = crm.registration(crm.contact("Par", "Ked", f"parked{i}@a.example"))
        body = canonical_body(
            org_id=ORG_A, registration_id=reg, event_id=crm.event_id, webinar_id="7001",
            attendee={"email": f"parked{i}@a.example", "firstName": "Par", "lastName": "Ked"},
        )  # fmt: skip
        register_main(service_bus_message(body, delivery_count=3))  # the third delivery parks it
    answer = status(ORG_A)[1]
    registrations = answer["registrations"]
    assert registrations["total"]["parked"] == 2 and registrations["last24h"]["parked"] == 2
    assert registrations["parking"]["failedAttempts"] == 1 and registrations["parking"]["nextAttempt"]
    assert {"code": "registrations_parked", "message": "2 registrations are parked until ON24 answers again"} in (
        answer["warnings"]
    )
    assert any(
        w["code"] == "parking" and w["message"].startswith("ON24 or CRM did not answer 1 attempts in a row")
        for w in answer["warnings"]
    )
    assert status(ORG_B)[1]["registrations"]["total"]["parked"] == 0, "parked rows are counted per org"
