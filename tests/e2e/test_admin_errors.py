"""The admin API's error contract through the functions' ``main``: one shape (``target``, and ``field`` as its
deprecated alias), ``Retry-After`` on every 503 and 429, and one status per code across routes.

Real parts: Azurite, the Key Vault and ON24 stand-ins (ON24 made unreachable or throttling on purpose).
"""

from __future__ import annotations

from typing import Any

import pytest

from PullWebinar import main as pull_main
from sandbox.server import free_port
from shared.app import reset_app
from StoreCredentials import main as store_main
from tests.conftest import credentials_body
from tests.e2e.test_pull_metrics import CLIENT_B, ORG_A, ORG_B, Webinars
from tests.functions import admin_request, http_request, json_body

SOLO_ORG = "5c0ffee0-aaaa-4bbb-8ccc-0000000000e1"


def test_a_503_says_when_to_retry(on24_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ON24_BASE_URL", f"http://127.0.0.1:{free_port()}")  # ON24 unreachable
    reset_app()
    response = store_main(http_request("PUT", SOLO_ORG, credentials_body()))
    assert response.status_code == 503 and json_body(response)["error"]["code"] == "unavailable"
    assert int(response.headers["Retry-After"]) >= 1


def test_throttling_is_a_429_with_the_services_retry_after(
    on24_env: dict[str, str], on24: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_BUDGET_SECONDS", "0")  # no waiting within the request: the caller is told to wait
    reset_app()
    on24.fail_next(5, status=429, headers={"Retry-After": "42"})
    response = store_main(http_request("PUT", SOLO_ORG, credentials_body()))
    body = json_body(response)
    assert response.status_code == 429 and body["error"]["code"] == "throttled", body
    assert response.headers["Retry-After"] == "42", "ON24's own hint is passed on"


def test_the_field_at_fault_is_the_target_and_field_stays_as_its_alias(on24_env: dict[str, str]) -> None:
    response = store_main(http_request("PUT", SOLO_ORG, credentials_body(region="Åland")))
    error = json_body(response)["error"]
    assert response.status_code == 400 and error["code"] == "invalid_field"
    assert error["target"] == error["field"] == "region" and "Åland" not in error["message"]
    assert "Retry-After" not in response.headers


@pytest.mark.dataverse_org(ORG_A)  # Webinars stores ORG_A's credentials with the default URL
def test_refused_credentials_have_one_code_per_situation_each_with_one_status(webinars: Webinars, on24: Any) -> None:
    offered = store_main(http_request("PUT", ORG_A, credentials_body(accessTokenSecret="Wrong-Aero-Secret")))
    assert offered.status_code == 422 and json_body(offered)["error"]["code"] == "on24_rejected_credentials"
    on24.deactivate(CLIENT_B)
    route = {"orgId": ORG_B, "webinarId": "7003"}
    stored = pull_main(admin_request("POST", "orgs/{orgId}/webinars/{webinarId}/pull", route))
    assert stored.status_code == 409 and json_body(stored)["error"]["code"] == "stored_credentials_rejected"


def test_an_answer_that_drifted_from_the_description_is_never_sent(
    on24_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A route whose answer grew a key its model does not describe answers 500 rather than an undocumented body
    (a stand-in for a future bug: the model, the OpenAPI description and the answers stay one)."""
    from CredentialsStatus import main as credentials_main
    from shared import admin

    original = admin.credentials_status
    monkeypatch.setattr(admin, "credentials_status", lambda *a, **k: {**original(*a, **k), "undocumented": 1})
    response = credentials_main(http_request("GET", SOLO_ORG))
    error = json_body(response)["error"]
    assert response.status_code == 500 and error["code"] == "internal_error" and "undocumented" not in str(error)


@pytest.mark.dataverse_org(ORG_A)  # Webinars stores ORG_A's credentials with the default URL
def test_an_operation_is_read_only_through_its_own_org_with_that_orgs_role(
    webinars: Webinars, monkeypatch: pytest.MonkeyPatch
) -> None:
    from OperationStatus import main as operation_main
    from shared.app import get_app
    from shared.entrypoints.operations import accepted
    from tests.functions import principal_headers

    answer = accepted(get_app(), ORG_B, {}, "purge")  # a purge of org B, recorded as the route records it
    operation_id = answer.payload["operation"]["id"]
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")
    monkeypatch.setenv("ADMIN_ORG_SCOPE", "true")
    reset_app()
    admin_a = principal_headers("åsa.odegard@contoso.com", [f"Webinar.Admin.{ORG_A}"])

    def get(org: str) -> tuple[int, Any]:
        route = {"orgId": org, "operationId": operation_id}
        response = operation_main(admin_request("GET", "orgs/{orgId}/operations/{operationId}", route, headers=admin_a))
        return response.status_code, json_body(response)

    assert get(ORG_B)[0] == 403, "org A's admin cannot follow org B's purge"
    code, body = get(ORG_A)
    assert code == 404 and body["error"]["code"] == "operation_not_found", "nor find it under org A"


@pytest.mark.dataverse_org(ORG_A)  # Webinars stores ORG_A's credentials with the default URL
def test_an_orgs_operations_are_deleted_30_days_on_when_it_starts_another(webinars: Webinars) -> None:
    from datetime import UTC, datetime, timedelta

    from shared.app import get_app
    from shared.entrypoints.operations import accepted
    from shared.store.operations import Operation, OperationStore

    app = get_app()
    store = OperationStore(app.tables.table("orgs"))
    now = datetime.now(UTC)

    def old(org: str, days: int) -> str:
        operation = Operation(org, f"{days:02d}" + "a" * 30, "pull", now - timedelta(days=days), webinar_id="7001")
        return store.create(operation).operation_id

    expired, kept, other = old(ORG_A, 31), old(ORG_A, 29), old(ORG_B, 45)
    new = accepted(app, ORG_A, {}, "pull", "7001").payload["operation"]["id"]
    assert store.get(ORG_A, expired) is None, "started more than 30 days before the new one"
    assert store.get(ORG_A, kept) is not None and store.get(ORG_A, new) is not None
    assert store.get(ORG_B, other) is not None, "another org's rows are its own"
