"""StoreCredentials / CredentialsStatus / RemoveCredentials: each folder's ``main`` fed ``func.HttpRequest``.

Real parts: Azurite (the org table), the HTTPS Key Vault stand-in (the real SecretClient), the ON24 stand-in.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from CredentialsStatus import main as status_main
from RemoveCredentials import main as remove_main
from sandbox.server import free_port
from shared.app import get_app, reset_app
from StoreCredentials import main as store_main
from tests.conftest import ON24_CLIENT_ID, ON24_KEY, ON24_SECRET, credentials_body, random_key
from tests.functions import http_request, json_body, principal_headers

ORG = "contoso-prod"


ADMIN_KEY = "admin-key-0001-4f5a8c6d"


def put(org: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    response = store_main(http_request("PUT", org, body, **kwargs))
    return response.status_code, json_body(response)


def status(org: str, **kwargs: Any) -> tuple[int, Any]:
    response = status_main(http_request("GET", org, **kwargs))
    return response.status_code, json_body(response)


def delete(org: str, **kwargs: Any) -> tuple[int, Any]:
    response = remove_main(http_request("DELETE", org, **kwargs))
    return response.status_code, json_body(response)


def raw_org_rows(env: dict[str, str]) -> list[dict[str, Any]]:
    service = TableServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    table = service.get_table_client(env["STATE_TABLE_PREFIX"] + "orgs")
    try:
        return [dict(entity) for entity in table.list_entities()]
    except Exception:  # table not created yet
        return []


def test_store_status_remove_round_trip(on24_env: dict[str, str], on24: Any) -> None:
    assert status(ORG) == (200, {"orgId": ORG, "configured": False})

    code, stored = put(
        ORG,
        credentials_body(region="na", webinarIds=["4471234", "4471234"]),  # no Dataverse URL: nothing to bind
    )
    assert code == 200, stored
    assert stored["webinarIds"] == ["4471234"]
    assert stored["configured"] is True and stored["status"] == "active"
    assert stored["clientId"] == ON24_CLIENT_ID and stored["region"] == "na"
    assert stored["dataverseUrl"] is None
    assert stored["keyVersion"].startswith("kv:on24-credentials-key/")
    assert on24.count("GET") == 1, "credentials are checked against ON24 with one call"

    code, seen = status(ORG)
    assert code == 200 and seen["configured"] is True and seen["clientId"] == ON24_CLIENT_ID

    code, removed = delete(ORG)
    assert code == 200
    assert removed == {
        "orgId": ORG,
        "removed": True,
        "configured": False,
        "clientId": ON24_CLIENT_ID,
        "region": "na",
        "integration": "disabled",
    }
    assert status(ORG) == (200, {"orgId": ORG, "configured": False})
    code, again = delete(ORG)
    assert code == 200 and again["removed"] is False, "removing twice is fine"


def test_stored_row_holds_only_ciphertext_that_opens_to_the_secret(on24_env: dict[str, str]) -> None:
    assert put(ORG, credentials_body())[0] == 200
    rows = raw_org_rows(on24_env)
    assert len(rows) == 1
    flat = json.dumps(rows[0], default=str)
    assert ON24_SECRET not in flat and ON24_KEY not in flat
    app = get_app()
    record = app.credentials.get(ORG)
    assert record is not None
    opened = app.provider_for(record)  # decrypts through Key Vault
    assert opened is not None


def test_re_put_rotates_the_credentials(on24_env: dict[str, str], on24: Any) -> None:
    assert put(ORG, credentials_body())[0] == 200
    first = raw_org_rows(on24_env)[0]["Envelope"]
    on24.add_client(ON24_CLIENT_ID, ON24_KEY, "Rotated-Secret-0002")
    try:
        code, body = put(ORG, credentials_body(accessTokenSecret="Rotated-Secret-0002"))
        assert code == 200, body
        second = raw_org_rows(on24_env)[0]["Envelope"]
        assert first != second
        # The old secret no longer validates at ON24, the stored one does:
        assert put("other-org", credentials_body())[0] == 422
        record = get_app().credentials.get(ORG)
        assert record is not None
        get_app().provider_for(record).check_credentials()
    finally:
        on24.add_client(ON24_CLIENT_ID, ON24_KEY, ON24_SECRET)


def test_rejected_credentials_get_422_and_nothing_is_stored(on24_env: dict[str, str]) -> None:
    code, body = put(ORG, credentials_body(accessTokenSecret="WrongSecret"))
    assert code == 422
    assert body["error"]["code"] == "on24_rejected_credentials"
    assert body["error"]["message"].startswith("ON24 did not accept these credentials"), "a fixed message"
    assert raw_org_rows(on24_env) == []


def test_on24_unreachable_gets_503_and_nothing_is_stored(
    on24_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ON24_BASE_URL", f"http://127.0.0.1:{free_port()}")
    reset_app()
    code, body = put(ORG, credentials_body())
    assert code == 503
    assert body["error"]["code"] == "unavailable"
    assert raw_org_rows(on24_env) == []


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"", "body"),
        (b"not json", "body"),
        (b"\xff\xfe\x00", "body"),
        (b"[1, 2]", "body"),
        (b'"just a string"', "body"),
        (json.dumps(credentials_body(padding="x" * 9000)).encode(), "body"),
        (json.dumps({"accessTokenKey": "k", "accessTokenSecret": "s"}).encode(), "clientId"),
        (json.dumps({"clientId": "1001", "accessTokenSecret": "s"}).encode(), "accessTokenKey"),
        (json.dumps({"clientId": "1001", "accessTokenKey": "k"}).encode(), "accessTokenSecret"),
        (json.dumps(credentials_body(clientId=1001)).encode(), "clientId"),
        (json.dumps(credentials_body(clientId="abc")).encode(), "clientId"),
        (json.dumps(credentials_body(accessTokenKey=["k"])).encode(), "accessTokenKey"),
        (json.dumps(credentials_body(accessTokenSecret="")).encode(), "accessTokenSecret"),
        (json.dumps(credentials_body(accessTokenSecret="line\nbreak")).encode(), "accessTokenSecret"),
        (json.dumps(credentials_body(region="apac")).encode(), "region"),
        (json.dumps(credentials_body(region=None)).encode(), "region"),
        (json.dumps(credentials_body(dataverseUrl="ftp://contoso")).encode(), "dataverseUrl"),
        (json.dumps(credentials_body(dataverseUrl="http://contoso.crm.dynamics.com")).encode(), "dataverseUrl"),
        (json.dumps(credentials_body(acessTokenKey="typo")).encode(), "acessTokenKey"),
        (json.dumps(credentials_body(webinarIds="4471234")).encode(), "webinarIds"),
        (json.dumps(credentials_body(webinarIds=["44x"])).encode(), "webinarIds.0"),
        (json.dumps(credentials_body(webinarIds=[4471234])).encode(), "webinarIds.0"),
    ],
)
def test_bad_bodies_get_400_naming_the_field_and_store_nothing(
    on24_env: dict[str, str], on24: Any, raw: bytes, field: str
) -> None:
    code, body = put(ORG, raw=raw)
    assert code == 400, body
    assert body["error"]["field"] == field
    assert field in body["error"]["message"] or field == "body"
    assert ON24_SECRET not in json.dumps(body)
    assert on24.count() == 0, "nothing reaches ON24"
    assert raw_org_rows(on24_env) == []


@pytest.mark.parametrize("org", ["a/b", "x" * 65, "-leading", "has space", "semi;colon", "quote'"])
def test_bad_org_id_gets_400(on24_env: dict[str, str], org: str) -> None:
    code, body = put(org, credentials_body())
    assert code == 400 and body["error"]["field"] == "orgId"
    assert delete(org)[0] == 400 and status(org)[0] == 400


def test_wrong_method_on_a_function_gets_405(on24_env: dict[str, str]) -> None:
    response = store_main(http_request("DELETE", ORG))
    assert response.status_code == 405


def test_app_service_auth_requires_the_admin_role(
    on24_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")
    reset_app()
    assert put(ORG, credentials_body())[0] == 401
    assert put(ORG, credentials_body(), headers=principal_headers("eve@contoso.com", ["Reader"]))[0] == 403
    assert delete(ORG, headers=principal_headers("eve@contoso.com", []))[0] == 403
    assert status(ORG, headers={"X-MS-CLIENT-PRINCIPAL": "%%%not-base64"})[0] == 401
    admin = principal_headers("ada@contoso.com", ["Webinar.Admin"])
    with caplog.at_level(logging.INFO):
        assert put(ORG, credentials_body(), headers=admin)[0] == 200
        code, body = delete(ORG, headers=admin)
    assert code == 200 and body["removed"] is True
    audit = [r for r in caplog.records if getattr(r, "audit", None) == "credentials.removed"]
    assert audit and audit[0].actor == "ada@contoso.com"
    assert status(ORG, headers=admin)[1]["configured"] is False


def test_secrets_never_reach_logs_responses_or_errors(
    on24_env: dict[str, str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        texts.append(json.dumps(put(ORG, credentials_body())))
        texts.append(json.dumps(put(ORG, credentials_body(accessTokenSecret="Another-Wrong-Secret"))))
        texts.append(json.dumps(put(ORG, credentials_body(region="xx"))))
        texts.append(json.dumps(status(ORG)))
        record = get_app().credentials.get(ORG)
        texts.append(repr(record))
        assert record is not None
        texts.append(repr(get_app().provider_for(record)))
        monkeypatch.setenv("ON24_BASE_URL", f"http://127.0.0.1:{free_port()}")
        reset_app()
        texts.append(json.dumps(put(ORG, credentials_body())))
        texts.append(json.dumps(delete(ORG)))
    texts.append(caplog.text)
    texts.extend(str(r.__dict__) for r in caplog.records)
    everything = "\n".join(texts)
    for secret in (ON24_SECRET, "Another-Wrong-Secret", ON24_KEY):
        assert secret not in everything


def test_local_key_is_refused_in_azure_unless_allowed(
    on24_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEY_VAULT_URL")
    monkeypatch.setenv("CREDENTIALS_KEY", random_key())
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "abc123")
    monkeypatch.setenv("ADMIN_API_KEY", ADMIN_KEY)  # in Azure the admin routes want a key (or a signed-in admin)
    reset_app()
    key = {"x-functions-key": ADMIN_KEY}
    code, body = put(ORG, credentials_body(), headers=key)
    assert code == 500 and "CREDENTIALS_KEY" in body["error"]["message"]
    assert raw_org_rows(on24_env) == []
    assert delete(ORG, headers=key)[0] == 200, "the off switch needs no credentials key"
    monkeypatch.setenv("ALLOW_LOCAL_CREDENTIALS_KEY", "true")
    reset_app()
    assert put(ORG, credentials_body(), headers=key)[0] == 200


def test_no_key_configured_is_a_clear_error(on24_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEY_VAULT_URL")
    monkeypatch.delenv("CREDENTIALS_KEY_SECRET_NAME")
    reset_app()
    code, body = put(ORG, credentials_body())
    assert code == 500
    assert "KEY_VAULT_URL" in body["error"]["message"] and "CREDENTIALS_KEY" in body["error"]["message"]
