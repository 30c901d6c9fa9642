"""Every admin route's real answers, success and error, against the OpenAPI description the app serves.

Each answer is checked against the schema of its route and status in ``GET /api/openapi.json`` (JSON Schema
2020-12, ``additionalProperties: false`` everywhere: an undocumented key fails too), and every 503/429 for a
``Retry-After``, every 202 for ``Location`` and ``Retry-After``. Real parts: Azurite, the Key Vault, ON24 and
Dataverse stand-ins, through the functions' ``main``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from jsonschema import Draft202012Validator

from CredentialsStatus import main as credentials_main
from ForgetAttendee import main as forget_main
from OpenApi import main as openapi_main
from OperationStatus import main as operation_main
from PullWebinar import main as pull_main
from RemoveCredentials import main as remove_main
from shared.app import reset_app
from StoreCredentials import main as store_main
from tests.conftest import credentials_body
from tests.e2e.test_pull_metrics import CLIENT_B, ORG_A, ORG_B, Webinars, run_timer
from tests.functions import admin_request, json_body, principal_headers
from WebinarStatus import main as status_main

ROOT = Path(__file__).resolve().parents[2]
CREDENTIALS = "orgs/{orgId}/webinar/credentials"
PULL = "orgs/{orgId}/webinars/{webinarId}/pull"
OPERATION = "orgs/{orgId}/operations/{operationId}"
MAINS: dict[str, tuple[Callable[[func.HttpRequest], func.HttpResponse], str, str]] = {
    "StoreCredentials": (store_main, "PUT", CREDENTIALS),
    "CredentialsStatus": (credentials_main, "GET", CREDENTIALS),
    "RemoveCredentials": (remove_main, "DELETE", CREDENTIALS),
    "WebinarStatus": (status_main, "GET", "orgs/{orgId}/webinar/status"),
    "PullWebinar": (pull_main, "POST", PULL),
    "ForgetAttendee": (forget_main, "POST", "orgs/{orgId}/webinar/forget"),
    "OperationStatus": (operation_main, "GET", OPERATION),
}


class Checked:
    """Calls routes and checks each answer against the served description."""

    def __init__(self) -> None:
        response = openapi_main(admin_request("GET", "openapi.json", {}))
        assert response.status_code == 200
        self.document = json_body(response)
        assert self.document == json.loads((ROOT / "docs" / "openapi.json").read_text()), "served = in the repo"
        self.seen: set[tuple[str, int]] = set()

    def call(self, name: str, route: dict[str, str], body: Any = None, **kwargs: Any) -> tuple[int, Any, Any]:
        main, method, template = MAINS[name]
        response = main(admin_request(method, template, route, body, **kwargs))
        payload = json_body(response)
        operation = self.document["paths"]["/" + template][method.lower()]
        described = operation["responses"].get(str(response.status_code))
        assert described is not None, f"{name} answered {response.status_code}, which its description lacks"
        schema = {**described["content"]["application/json"]["schema"], "components": self.document["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(payload), key=str)
        assert not errors, f"{name} {response.status_code}: {[e.message for e in errors][:3]} in {payload}"
        if response.status_code in (429, 503):
            assert int(response.headers["Retry-After"]) > 0
        if response.status_code == 202:
            assert response.headers["Location"] and int(response.headers["Retry-After"]) > 0
        if response.status_code >= 400:
            code = payload["error"]["code"]
            assert code in operation["responses"][str(response.status_code)]["description"], "code listed there"
        self.seen.add((name, response.status_code))
        return response.status_code, payload, response.headers


@pytest.fixture
def api(webinars: Webinars) -> Checked:
    return Checked()


def test_every_route_answers_what_the_description_says(api: Checked, webinars: Webinars, on24: Any) -> None:
    a, b = {"orgId": ORG_A}, {"orgId": ORG_B}
    webinars.register(ORG_A, 7001, "jorg.muller@a.example")
    webinars.watch(7001, "jorg.muller@a.example", live=25)

    assert api.call("CredentialsStatus", a)[0] == 200
    assert api.call("CredentialsStatus", {"orgId": "7d1f4c2a-0000-4000-8000-00000000abcd"})[0] == 200  # not configured
    assert api.call("StoreCredentials", a, credentials_body(webinarIds=["7001"]))[0] == 200
    assert api.call("StoreCredentials", a, credentials_body(region="mars"))[0] == 400
    assert api.call("StoreCredentials", a, raw=b"[1]")[0] == 400
    assert api.call("StoreCredentials", a, credentials_body(accessTokenSecret="wrong-Secret"))[0] == 422
    assert api.call("StoreCredentials", {"orgId": "not a guid!"}, credentials_body())[0] == 400
    assert api.call("WebinarStatus", a)[0] == 200
    assert api.call("WebinarStatus", a, raw=b'{"verbose": 1}')[0] == 400
    assert api.call("PullWebinar", {**a, "webinarId": "7001"})[0] == 200
    assert api.call("PullWebinar", {**a, "webinarId": "0"})[0] == 400
    assert api.call("PullWebinar", {**a, "webinarId": "999999"})[0] == 404
    on24.deactivate(CLIENT_B)
    assert api.call("PullWebinar", {**b, "webinarId": "7003"})[0] == 409
    on24.reactivate(CLIENT_B)
    on24.down = 503  # an ON24 outage
    assert api.call("PullWebinar", {**b, "webinarId": "7003"})[0] == 503
    on24.down = None
    assert api.call("ForgetAttendee", a, {"email": "jorg.muller@a.example"})[0] == 200
    assert api.call("ForgetAttendee", a, {"email": "no-at-sign"})[0] == 400
    assert api.call("OperationStatus", {**a, "operationId": "0" * 32})[0] == 404
    assert api.call("OperationStatus", {**a, "operationId": "nope"})[0] == 400
    assert api.call("RemoveCredentials", b, params={"purge": "maybe"})[0] == 400
    assert api.call("RemoveCredentials", b)[0] == 200
    assert api.call("PullWebinar", {**b, "webinarId": "7003"})[0] == 409
    assert api.call("RemoveCredentials", a, params={"purge": "true"})[0] == 200


def test_the_async_answers_and_the_access_errors_match_too(
    api: Checked, webinars: Webinars, on24: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(150):
        webinars.register(ORG_A, 7001, f"p{i:03}@a.example")
        webinars.watch(7001, f"p{i:03}@a.example", live=3)
    monkeypatch.setenv("ON_DEMAND_PULL_BUDGET_SECONDS", "1")
    reset_app()
    on24.latency = 0.6
    code, answer, _ = api.call("PullWebinar", {"orgId": ORG_A, "webinarId": "7001"})
    on24.latency = 0.0
    assert code == 202
    route = {"orgId": ORG_A, "operationId": answer["operation"]["id"]}
    assert api.call("OperationStatus", route)[0] == 202
    run_timer()
    assert api.call("OperationStatus", route)[0] == 200

    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")
    reset_app()
    assert api.call("WebinarStatus", {"orgId": ORG_A})[0] == 401
    stranger = principal_headers("eve@contoso.com", ["Reader"])
    assert api.call("WebinarStatus", {"orgId": ORG_A}, headers=stranger)[0] == 403
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "false")
    monkeypatch.setenv("ADMIN_ORG_SCOPE", "true")
    reset_app()
    assert api.call("CredentialsStatus", {"orgId": ORG_A})[0] == 500, "a scope without App Service auth"
    assert {(name, status) for name, status in api.seen if name == "OperationStatus"} == {
        ("OperationStatus", 200), ("OperationStatus", 202)
    }  # fmt: skip
