"""PullWebinar (POST /api/orgs/{orgId}/webinars/{webinarId}/pull) end to end, through the function's ``main``.

Real parts: Azurite (ledger, sync state, the shared ON24 pacing row), the HTTPS Key Vault stand-in, the ON24 and
Dataverse stand-ins; registrations made by RegisterAttendee itself.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from OperationStatus import main as operation_main
from PullWebinar import main as pull_main
from RemoveCredentials import main as remove_main
from shared.app import get_app, reset_app
from shared.crm import checkin_id
from tests.conftest import ON24_KEY, ON24_SECRET
from tests.e2e.test_admin_security import user_principal
from tests.e2e.test_pull_metrics import CHECKINS, CLIENT_B, ORG_A, ORG_B, Webinars, run_timer
from tests.e2e.test_webinar_status import status
from tests.functions import admin_request, http_request, json_body

PULL = "orgs/{orgId}/webinars/{webinarId}/pull"
OPERATION = "orgs/{orgId}/operations/{operationId}"


def follow(location: str, **kwargs: Any) -> tuple[int, Any, Any]:
    """GET a 202's Location the way Logic Apps does (through OperationStatus' ``main``)."""
    _, org, _, operation = location.removeprefix("/api/").split("/")
    response = operation_main(admin_request("GET", OPERATION, {"orgId": org, "operationId": operation}, **kwargs))
    return response.status_code, json_body(response), response.headers


def pull(org: str, webinar: str, **kwargs: Any) -> tuple[int, Any, Any]:
    response = pull_main(admin_request("POST", PULL, {"orgId": org, "webinarId": webinar}, **kwargs))
    return response.status_code, json_body(response), response.headers


def test_pulls_one_webinar_of_one_org_and_writes_only_its_checkins(
    webinars: Webinars, on24: Any, dataverse: Any
) -> None:
    w = webinars
    w.register(ORG_A, 7001, "ada@a.example")
    w.register(ORG_A, 7001, "bob@a.example")
    w.register(ORG_A, 7002, "cy@a.example")
    w.register(ORG_B, 7003, "dee@b.example")
    for event, email in ((7001, "ada"), (7001, "bob"), (7002, "cy"), (7003, "dee")):
        w.watch(event, f"{email}@{'b' if event == 7003 else 'a'}.example", live=20)
    on24.reset_log()

    code, answer, _ = pull(ORG_A, "7001")

    assert code == 200, answer
    assert answer == {
        "orgId": ORG_A,
        "webinarId": "7001",
        "status": "ok",
        "counts": {"pulled": 2, "matched": 2, "written": 2, "unchanged": 0, "unmatched": 0, "failed": 0},
    }
    rows = dataverse.rows(CHECKINS)
    assert {r["msevtmgt_checkinid"] for r in rows} == {
        checkin_id(ORG_A, w.regs["ada@a.example"]),
        checkin_id(ORG_A, w.regs["bob@a.example"]),
    }, "only the check-ins of that webinar of that org"
    assert on24.count(path_contains="/event/7002") == 0 and on24.count(path_contains="/event/7003") == 0
    assert on24.count(path_contains=f"/client/{CLIENT_B}/") == 0
    app = get_app()
    assert app.sync_state.get(ORG_A, "7002") is None and app.sync_state.get(ORG_B, "7003") is None
    state = app.sync_state.get(ORG_A, "7001")
    assert state is not None and state.status == "ok" and state.replication_key_value is not None

    code, again, _ = pull(ORG_A, "7001")
    assert code == 200 and again["counts"]["written"] == 0 and again["counts"]["unchanged"] == 2


def test_a_webinar_not_due_is_pulled_on_demand(webinars: Webinars, dataverse: Any) -> None:
    w = webinars
    w.register(ORG_A, 7001, "late@a.example")
    run_timer()
    assert dataverse.rows(CHECKINS) == []
    w.watch(7001, "late@a.example", live=15)  # data that arrived after the run
    code, answer, _ = pull(ORG_A, "7001")
    assert code == 200 and answer["counts"]["written"] == 1
    assert w.checkin(ORG_A, "late@a.example")["msevtmgt_viewingdurationinmins"] == 15


def test_a_pull_longer_than_the_request_budget_answers_202_and_the_next_run_finishes_it(
    webinars: Webinars, on24: Any, dataverse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = webinars
    for i in range(250):  # three ON24 pages of 100
        w.register(ORG_A, 7001, f"p{i:03}@a.example")
        w.watch(7001, f"p{i:03}@a.example", live=4)
    monkeypatch.setenv("ON_DEMAND_PULL_BUDGET_SECONDS", "1")
    reset_app()
    on24.latency = 0.6  # every ON24 call takes longer than half the budget: the first page ends it

    code, answer, headers = pull(ORG_A, "7001")

    on24.latency = 0.0
    assert code == 202, answer
    assert answer["status"] == "in_progress" and answer["webinarId"] == "7001"
    location = f"/api/orgs/{ORG_A}/operations/{answer['operation']['id']}"
    assert headers["Location"] == location == answer["operation"]["href"] and int(headers["Retry-After"]) > 0
    assert 0 < answer["counts"]["written"] < 250
    entry = next(x for x in status(ORG_A)[1]["webinars"] if x["webinarId"] == "7001")
    assert entry["status"] == "in_progress" and entry["pending"]["nextPage"] >= 1
    written, writes = len(dataverse.rows(CHECKINS)), dataverse.writes
    code, running, headers = follow(location)
    assert code == 202 and running["status"] == "running" and running["result"] is None, "Logic Apps keeps polling"
    assert int(headers["Retry-After"]) > 0 and headers["Location"] == location

    run_timer()

    assert len(dataverse.rows(CHECKINS)) == 250
    assert dataverse.writes - writes <= 250 - written, "the run resumes, it does not start over"
    entry = next(x for x in status(ORG_A)[1]["webinars"] if x["webinarId"] == "7001")
    assert entry["status"] == "ok" and entry["pending"] is None
    reset_app()  # another instance answers the poll: the operation is in Table Storage, not in memory
    code, done, _ = follow(location)
    assert code == 200 and done["status"] == "succeeded" and done["kind"] == "pull" and done["error"] is None
    assert done["result"]["webinarId"] == "7001" and done["result"]["counts"]["pulled"] > 0


def test_the_pull_takes_its_calls_from_the_accounts_shared_budget(webinars: Webinars, on24: Any) -> None:
    w = webinars
    w.register(ORG_A, 7001, "paced@a.example")
    w.watch(7001, "paced@a.example", live=1)
    assert pull(ORG_A, "7001")[0] == 200
    pace = get_app().tables.table("syncstate").get_entity("~pace", "1001|attendee")
    grants = json.loads(pace["Grants"])
    assert len(grants) == 1 and grants[0][1] == 10, "one block of the account's 100 calls a minute was reserved"


def test_an_org_without_credentials_is_a_409(webinars: Webinars, on24: Any) -> None:
    assert remove_main(http_request("DELETE", ORG_B)).status_code == 200
    on24.reset_log()
    code, answer, _ = pull(ORG_B, "7003")
    assert code == 409 and answer["error"]["code"] == "not_configured"
    assert on24.count() == 0


def test_a_webinar_unknown_to_on24_is_a_404(webinars: Webinars) -> None:
    code, answer, _ = pull(ORG_A, "999999")
    assert code == 404 and answer["error"]["code"] == "webinar_not_found"


def test_credentials_on24_refuses_are_a_409_and_flag_the_org(webinars: Webinars, on24: Any) -> None:
    on24.deactivate(CLIENT_B)
    code, answer, _ = pull(ORG_B, "7003")
    assert code == 409 and answer["error"]["code"] == "stored_credentials_rejected", "PUT's code is a 422"
    record = get_app().credentials.get(ORG_B)
    assert record is not None and record.status == "rejected"
    on24.reactivate(CLIENT_B)
    assert pull(ORG_B, "7003")[0] == 200
    record = get_app().credentials.get(ORG_B)
    assert record is not None and record.status == "active", "a pull that works clears the flag"


def test_on24_unavailable_is_a_503_recorded_on_the_webinar(
    webinars: Webinars, on24: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_BUDGET_SECONDS", "0")
    reset_app()
    on24.fail_next(10, status=503, path_contains="/event/7001")
    code, answer, _ = pull(ORG_A, "7001")
    assert code == 503 and answer["error"]["code"] == "unavailable"
    assert "503" in answer["error"]["message"]
    entry = next(x for x in status(ORG_A)[1]["webinars"] if x["webinarId"] == "7001")
    assert entry["status"] == "error" and "503" in entry["lastError"]


@pytest.mark.parametrize(
    ("webinar", "raw", "field"),
    [
        ("0", b"", "webinarId"),
        ("abc", b"", "webinarId"),
        ("1" * 19, b"", "webinarId"),
        ("-5", b"", "webinarId"),
        ("7001", b'{"force": true}', "body"),
        ("7001", b"not json", "body"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    webinars: Webinars, on24: Any, webinar: str, raw: bytes, field: str
) -> None:
    on24.reset_log()
    code, answer, _ = pull(ORG_A, webinar, raw=raw)
    assert code == 400 and answer["error"]["field"] == field
    assert on24.count() == 0


def test_an_empty_json_object_body_is_accepted_and_leading_zeros_are_dropped(webinars: Webinars) -> None:
    code, answer, _ = pull(ORG_A, "007001", raw=b"{}")
    assert code == 200 and answer["webinarId"] == "7001"


def test_only_post_is_served(webinars: Webinars) -> None:
    response = pull_main(admin_request("GET", PULL, {"orgId": ORG_A, "webinarId": "7001"}))
    assert response.status_code == 405


def test_app_service_authentication_and_the_org_scope_apply(
    webinars: Webinars, on24: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")
    monkeypatch.setenv("ADMIN_ORG_SCOPE", "true")
    reset_app()
    on24.reset_log()
    assert pull(ORG_A, "7001")[0] == 401
    scoped = user_principal("ada@contoso.com", [f"Webinar.Admin.{ORG_B}"])
    code, answer, _ = pull(ORG_A, "7001", headers=scoped)
    assert code == 403 and answer["error"]["code"] == "forbidden"
    assert on24.count() == 0, "refused before any ON24 call"
    assert pull(ORG_B, "7003", headers=scoped)[0] == 200


def test_answers_never_carry_a_secret(webinars: Webinars, on24: Any) -> None:
    on24.deactivate(CLIENT_B)
    answers = [pull(ORG_A, "7001")[1], pull(ORG_B, "7003")[1], pull(ORG_A, "999999")[1]]
    text = json.dumps(answers)
    for secret in (ON24_SECRET, ON24_KEY, "Secret-B-0001", "key-b"):
        assert secret not in text
