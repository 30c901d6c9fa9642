"""The admin API under hostile input: it can reach nothing but a Dataverse org, and tells an attacker nothing.

Each function folder's ``main`` is fed ``func.HttpRequest`` objects; real parts: Azurite, the HTTPS Key Vault
stand-in, the ON24 and Dataverse stand-ins, and a capture server standing in for a host an attacker controls.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.data.tables import TableServiceClient, UpdateMode
from azure.functions.timer import TimerRequest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from PullMetrics import main as pull_main
from RegisterAttendee import main as register_main
from sandbox.capture import CaptureServer
from shared import admin
from shared.app import App, get_app, reset_app, set_app
from shared.credentials import seal_secrets
from shared.errors import DecryptionError
from shared.on24.provider import CredentialsBody
from shared.settings import Settings
from shared.store import OrgRecord
from tests.builders import canonical_body
from tests.conftest import ON24_CLIENT_ID, ON24_KEY, ON24_SECRET, credentials_body
from tests.e2e.test_admin_functions import delete, put, raw_org_rows, status
from tests.functions import service_bus_message
from tests.logscan import allow_in_logs

ORG = "7d1f4c2a-9b3e-4f5a-8c6d-2e1f0a9b8c7d"
OTHER = "1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6"


def org_table(env: dict[str, str]) -> Any:
    service = TableServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    return service.get_table_client(env["STATE_TABLE_PREFIX"] + "orgs")


class RecordingCredential:
    """The app's managed identity: hands out a recognisable token and records every scope asked for."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken("managed-identity-token-DO-NOT-LEAK", 4_102_444_800)

    def close(self) -> None:
        return None


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    server = CaptureServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def identity_env(on24_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingCredential]:
    """Production-like Dataverse auth (tokens from the app's identity), with a recording identity."""
    monkeypatch.setenv("DATAVERSE_AUTH", "default")
    monkeypatch.delenv("DATAVERSE_URL", raising=False)
    credential = RecordingCredential()
    set_app(App(Settings.from_environ(), azure_credential=credential))
    yield credential
    set_app(None)


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every outbound socket connect attempted while the test runs (new connections; pools are checked per server)."""
    attempts: list[Any] = []
    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        original(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


# ---- dataverseUrl: an allowlist of Dataverse hosts --------------------------------------------------------------

ISSUE_CASES = [
    "https://169.254.169.254",
    "https://10.0.0.5",
    "https://management.azure.com",
    "https://user:pw@contoso.crm.dynamics.com",
    "https://contoso.crm.dynamics.com:8443",
    "https://contoso.crm.dynamics.com.evil.example",
]
MORE_CASES = [
    "http://contoso.crm.dynamics.com",  # plain http
    "https://contoso.crm.dynamics.com.",  # trailing dot
    "https://contoso.crm.dynamics.com:443",  # even the default port
    "https://contoso.crm.dynamics.com@evil.example",  # userinfo that looks like the host
    "https://evil.example#.crm.dynamics.com",  # fragment trick
    "https://evil.example/?x=.crm.dynamics.com",  # query trick
    "https://evil.example\\.crm.dynamics.com",  # backslash trick
    "https://contoso.crm.dynamics.com/api/data/v9.2/../../x",  # a path
    "https://[::1]",  # IPv6 literal
    "https://127.0.0.1",  # loopback without the sandbox setting
    "https://localhost",
    "https://2130706433",  # 127.0.0.1 as a number
    "https://0x7f.0.0.1",
    "https://crm.dynamics.com",  # no org label
    "https://a.b.crm.dynamics.com",  # two labels
    "https://contoso.crm123.dynamics.com",  # not a region number
    "https://contoso.crmx.dynamics.com",
    "https://contoso.dynamics.com",
    "https://contoso-.crm.dynamics.com",  # label may not end in a hyphen
    "https://contoso.crm.dynamics.com%2eevil.example",  # percent-encoded dot
    "https://contoso.crm.dynamics.c\u03bfm",  # Greek omicron
    "https://contoso.crm.microsoftdynamics.us.evil.example",
    "https://contoso.crm.dynamics.com\t",
    " https://contoso.crm.dynamics.com",
    "//contoso.crm.dynamics.com",  # scheme-relative
    "javascript:alert(1)",
    "file:///etc/passwd",
    "https://" + "a" * 70 + ".crm.dynamics.com",  # label longer than DNS allows
    "",
]


@pytest.mark.parametrize("url", ISSUE_CASES + MORE_CASES)
def test_dataverse_url_outside_the_allowlist_is_a_400_naming_the_field(
    on24_env: dict[str, str], on24: Any, capture: CaptureServer, connections: list[Any], url: str
) -> None:
    code, body = put(ORG, credentials_body(dataverseUrl=url))
    made = list(connections)
    assert code == 400, body
    assert body["error"]["field"] == "dataverseUrl" and "dataverseUrl" in body["error"]["message"]
    assert on24.count() == 0 and capture.count() == 0 and made == [], "no outbound call is made"
    assert raw_org_rows(on24_env) == [], "nothing is stored"


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("https://contoso.crm.dynamics.com", "https://contoso.crm.dynamics.com"),
        ("https://Contoso.CRM4.dynamics.com/", "https://contoso.crm4.dynamics.com"),
        ("https://contoso.crm21.dynamics.com", "https://contoso.crm21.dynamics.com"),
        ("https://contoso.crm9.dynamics.com", "https://contoso.crm9.dynamics.com"),  # US Government (GCC)
        ("https://contoso.crm.microsoftdynamics.us", "https://contoso.crm.microsoftdynamics.us"),  # GCC High
        ("https://contoso.crm.appsplatform.us", "https://contoso.crm.appsplatform.us"),  # DoD
        ("https://contoso.crm.dynamics.cn", "https://contoso.crm.dynamics.cn"),  # China (21Vianet)
    ],
)
def test_dataverse_hosts_on_the_allowlist_pass_the_rule_as_origins(url: str, stored: str) -> None:
    # Storing one also needs its WhoAmI to name the org (test_dataverse_org_binding), which no test can reach here.
    parsed = admin.parse_credentials_input(credentials_body(dataverseUrl=url), CredentialsBody, sandbox=False)
    assert parsed.dataverse_url == stored


def test_loopback_http_is_accepted_only_in_the_sandbox(app_env: dict[str, str], dataverse: Any) -> None:
    code, body = put(ORG, credentials_body(dataverseUrl=dataverse.url))  # DATAVERSE_AUTH=none: the sandbox
    assert code == 200 and body["dataverseUrl"] == dataverse.url


def test_no_token_ever_reaches_a_host_outside_the_allowlist(
    identity_env: RecordingCredential, on24_env: dict[str, str], on24: Any, capture: CaptureServer
) -> None:
    """The loopback capture server used to receive ``Authorization: Bearer <managed identity token>``."""
    code, body = put(ORG, credentials_body(dataverseUrl=capture.url))
    assert code == 400 and body["error"]["field"] == "dataverseUrl"
    # Whatever reaches the table anyway (an edited row) is no way out either: the URL is bound to the envelope.
    app = get_app()  # a row with an allowlisted URL, saved through the store (a PUT would call its WhoAmI)
    record = OrgRecord(ORG, ON24_CLIENT_ID, "na", "", None, dataverse_url="https://contoso.crm.dynamics.com")
    secrets = {"accessTokenKey": ON24_KEY, "accessTokenSecret": ON24_SECRET}
    app.credentials.save(seal_secrets(app.cipher, record, secrets))
    org_table(on24_env).update_entity(
        {"PartitionKey": ORG, "RowKey": "credentials", "DataverseUrl": capture.url}, mode=UpdateMode.MERGE
    )
    registration = str(uuid.uuid4())
    message = canonical_body(
        org_id=ORG,
        registration_id=registration,
        event_id=str(uuid.uuid4()),
        webinar_id="4471234",
        attendee={"email": "ada@contoso.example", "firstName": "Ada", "lastName": "Lovelace"},
    )
    on24.add_event(ON24_CLIENT_ID, 4471234)
    with contextlib.suppress(Exception):  # whatever the outcome, the assertions below are what matters
        register_main(service_bus_message(message))
    pull_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))
    assert capture.count() == 0 and capture.authorizations() == []
    assert not any("127.0.0.1" in scope for scope in identity_env.scopes)


def test_the_dataverse_client_requests_no_token_for_a_host_outside_the_allowlist(capture: CaptureServer) -> None:
    from shared.dataverse import DataverseClient

    credential = RecordingCredential()
    with pytest.raises(ValueError, match="allowlist"), DataverseClient(capture.url, credential) as client:
        client.get_row("contacts", str(uuid.uuid4()), select=["contactid"])
    assert capture.count() == 0 and credential.scopes == []


# ---- org ids: normalised once, at the edge -------------------------------------------------------------------


def test_an_upper_case_guid_addresses_the_same_org_as_lower_case(on24_env: dict[str, str], on24: Any) -> None:
    code, body = put(ORG.upper(), credentials_body())
    assert code == 200 and body["orgId"] == ORG
    assert [row["PartitionKey"] for row in raw_org_rows(on24_env)] == [ORG]
    assert status(ORG)[1]["configured"] is True
    assert status(ORG.upper())[1]["configured"] is True
    code, removed = delete(ORG)
    assert code == 200 and removed["removed"] is True, "a lower-case DELETE removes what an upper-case PUT stored"
    assert raw_org_rows(on24_env) == []


def test_a_row_stored_under_an_upper_case_org_id_is_refused_and_removed_by_the_off_switch(
    app_env: dict[str, str], on24: Any
) -> None:
    """A row left by the landed code (PartitionKey upper-case) never keeps PullMetrics running for the org."""
    assert put(ORG, credentials_body(webinarIds=["4471234"]))[0] == 200
    table = org_table(app_env)
    legacy = dict(table.get_entity(ORG, "credentials"))
    legacy["PartitionKey"] = ORG.upper()
    table.create_entity(legacy)
    on24.add_event(ON24_CLIENT_ID, 4471234)

    code, removed = delete(ORG)
    assert code == 200 and removed["removed"] is True
    assert raw_org_rows(app_env) == [], "every spelling of the org is removed"
    on24.reset_log()
    pull_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))
    assert on24.count() == 0, "the off switch holds: no ON24 call for the org"

    table.create_entity(legacy)  # a legacy row alone: ignored by PullMetrics, reported by the status route
    pull_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))
    assert on24.count() == 0
    code, seen = status(ORG)
    assert code == 200 and seen["configured"] is False and "PUT" in seen.get("attention", "")


# ---- tokens and webinar ids: the same rules as the ON24 client ---------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"accessTokenKey": "t\u00f6k\u00e9n-key"}, "accessTokenKey"),
        ({"accessTokenSecret": "inner space"}, "accessTokenSecret"),
        ({"accessTokenSecret": "s\u200bcret"}, "accessTokenSecret"),
        ({"clientId": "1" * 20}, "clientId"),
        ({"webinarIds": ["0"]}, "webinarIds.0"),
        ({"webinarIds": ["000"]}, "webinarIds.0"),
        ({"webinarIds": ["12", "0"]}, "webinarIds.1"),
    ],
)
def test_input_the_on24_client_would_refuse_is_a_400_naming_the_field(
    on24_env: dict[str, str], on24: Any, overrides: dict[str, Any], field: str
) -> None:
    code, body = put(ORG, credentials_body(**overrides))
    assert code == 400, body
    assert body["error"]["field"] == field
    assert raw_org_rows(on24_env) == [] and on24.count() == 0


def test_webinar_ids_are_stored_as_plain_positive_numbers(on24_env: dict[str, str]) -> None:
    code, body = put(ORG, credentials_body(webinarIds=["007", "7", "4471234"]))
    assert code == 200 and body["webinarIds"] == ["7", "4471234"]


def test_validation_errors_never_carry_the_secret() -> None:
    import pydantic

    from shared.on24.provider import CredentialsBody

    secret = "Hidden-" + "x" * 600  # too long: refused, and pydantic would quote it unless told not to
    with pytest.raises(pydantic.ValidationError) as caught:
        CredentialsBody.model_validate({"clientId": "1", "accessTokenKey": "k", "accessTokenSecret": secret})
    assert "Hidden-" not in str(caught.value) and "Hidden-" not in repr(caught.value)
    assert "Hidden-" not in repr(caught.value.errors(include_input=False))


# ---- the clear columns are bound to the sealed credentials ---------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [("ClientId", "666"), ("Region", "eu"), ("DataverseUrl", "https://evil.crm.dynamics.com")],
)
def test_editing_a_clear_column_makes_the_envelope_fail_to_open(
    app_env: dict[str, str], on24: Any, column: str, value: str
) -> None:
    assert put(ORG, credentials_body(webinarIds=["4471234"]))[0] == 200
    org_table(app_env).update_entity(
        {"PartitionKey": ORG, "RowKey": "credentials", column: value}, mode=UpdateMode.MERGE
    )
    record = get_app().credentials.get(ORG)
    assert record is not None
    with pytest.raises(DecryptionError) as caught:
        get_app().provider_for(record)
    assert "client id, region" in str(caught.value)
    on24.reset_log()
    pull_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))
    assert on24.count() == 0
    seen = status(ORG)[1]
    assert seen["metrics"]["status"] == "error" and "DecryptionError" not in seen["metrics"]["reason"]


def test_an_envelope_of_the_first_format_is_refused_with_an_actionable_message(app_env: dict[str, str]) -> None:
    assert put(ORG, credentials_body())[0] == 200
    app = get_app()
    kek = app.key_provider.current_key()
    aad = b"on24-credentials/v1|org=" + ORG.encode()
    data_key = AESGCM.generate_key(bit_length=256)
    dk_nonce, nonce = b"\x01" * 12, b"\x02" * 12
    payload = json.dumps({"accessTokenKey": ON24_KEY, "accessTokenSecret": ON24_SECRET}).encode()
    v1 = {
        "v": 1,
        "kid": kek.key_id,
        "dk": base64.b64encode(dk_nonce + AESGCM(kek.secret).encrypt(dk_nonce, data_key, aad)).decode(),
        "n": base64.b64encode(nonce).decode(),
        "ct": base64.b64encode(AESGCM(data_key).encrypt(nonce, payload, aad)).decode(),
    }
    org_table(app_env).update_entity(
        {"PartitionKey": ORG, "RowKey": "credentials", "Envelope": json.dumps(v1)}, mode=UpdateMode.MERGE
    )
    record = app.credentials.get(ORG)
    assert record is not None
    with pytest.raises(DecryptionError) as caught:
        app.provider_for(record)
    assert "re-store" in str(caught.value) and ON24_SECRET not in str(caught.value)


# ---- the credential check tells an attacker nothing ----------------------------------------------------------


def test_unknown_client_and_wrong_secret_get_the_same_answer(
    on24_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        unknown = put(ORG, credentials_body(clientId="987654"))
        wrong = put(ORG, credentials_body(accessTokenSecret="Wrong-Secret-123"))
    assert unknown[0] == wrong[0] == 422
    assert unknown[1] == wrong[1], "the answer does not tell whether the client id exists"
    assert "does not exist" in caplog.text and "wrong or invalid" in caplog.text, "the detail is logged"
    assert "Wrong-Secret-123" not in caplog.text and ON24_KEY not in caplog.text


# ---- optional per-org scope with App Service authentication ---------------------------------------------------

ROLE_URI = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"


def user_principal(name: str, roles: list[str], *, role_claim: str = "roles") -> dict[str, str]:
    """X-MS-CLIENT-PRINCIPAL headers as App Service authentication (Entra ID provider) sends them for a user.

    The name may be logged (audit lines say who acted), so it is allowed in the log scan."""
    allow_in_logs(name)
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    claims = [
        {"typ": "aud", "val": "api://5f0c3a52-webinar-admin"},
        {"typ": "iss", "val": f"https://login.microsoftonline.com/{tenant}/v2.0"},
        {"typ": "iat", "val": "1764583200"},
        {"typ": "nbf", "val": "1764583200"},
        {"typ": "exp", "val": "1764587100"},
        {"typ": "aio", "val": "AWQAm/8ZAAAA"},
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": str(uuid.uuid4())},
        {"typ": "name", "val": name.split("@")[0].title()},
        {"typ": "preferred_username", "val": name},
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": tenant},
        {"typ": "ver", "val": "2.0"},
    ] + [{"typ": role_claim, "val": role} for role in roles]
    principal = {
        "auth_typ": "aad",
        "claims": claims,
        "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        "role_typ": ROLE_URI,
    }
    return {
        "X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(principal).encode()).decode(),
        "X-MS-CLIENT-PRINCIPAL-NAME": name,
        "X-MS-CLIENT-PRINCIPAL-ID": str(uuid.uuid4()),
        "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
        "X-Requested-With": "XMLHttpRequest",  # the admin page's calls (a change without it is refused)
    }


def app_principal(app_id: str, roles: list[str]) -> dict[str, str]:
    """The headers for an application (client credentials) caller: app roles, no user name."""
    claims = [
        {"typ": "aud", "val": "api://5f0c3a52-webinar-admin"},
        {"typ": "azp", "val": app_id},
        {"typ": "azpacr", "val": "1"},
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": str(uuid.uuid4())},
        {"typ": "ver", "val": "2.0"},
    ] + [{"typ": ROLE_URI, "val": role} for role in roles]
    principal = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": ROLE_URI}
    return {
        "X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(principal).encode()).decode(),
        "X-MS-CLIENT-PRINCIPAL-NAME": app_id,
        "X-MS-CLIENT-PRINCIPAL-ID": app_id,
        "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
        "Authorization": "Bearer eyJ0eXAiOiJKV1QifQ.e30.c2ln",  # the flow's token, which the platform validated
    }


@pytest.fixture
def scoped(on24_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")
    monkeypatch.setenv("ADMIN_ORG_SCOPE", "true")
    reset_app()
    return on24_env


def test_an_org_scoped_role_acts_on_its_org_only(scoped: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    ada = user_principal("ada@contoso.com", [f"Webinar.Admin.{ORG.upper()}"])
    with caplog.at_level(logging.INFO):
        assert put(ORG, credentials_body(), headers=ada)[0] == 200
    assert status(ORG, headers=ada)[1]["configured"] is True
    for call in (lambda h: put(OTHER, credentials_body(), headers=h), lambda h: status(OTHER, headers=h)):
        code, body = call(ada)
        assert code == 403 and body["error"]["code"] == "forbidden"
    assert delete(OTHER, headers=ada)[0] == 403
    audit = [r for r in caplog.records if getattr(r, "audit", None) == "credentials.stored"]
    assert audit and audit[0].actor == "ada@contoso.com"

    service = app_principal("0f9e8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f", [f"Webinar.Admin.{OTHER}"])
    assert put(OTHER, credentials_body(), headers=service)[0] == 200
    assert delete(ORG, headers=service)[0] == 403
    assert delete(ORG, headers=ada)[1]["removed"] is True

    operator = user_principal("ops@contoso.com", ["Webinar.Admin"], role_claim=ROLE_URI)
    assert delete(OTHER, headers=operator)[1]["removed"] is True, "the global role still manages every org"


def test_org_scoped_roles_are_ignored_unless_the_scope_is_switched_on(
    on24_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")
    reset_app()
    ada = user_principal("ada@contoso.com", [f"Webinar.Admin.{ORG}"])
    assert put(ORG, credentials_body(), headers=ada)[0] == 403


def test_the_scope_without_app_service_authentication_fails_closed(
    on24_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADMIN_ORG_SCOPE", "true")
    reset_app()
    code, body = put(ORG, credentials_body())
    assert code == 500 and "WEBSITE_AUTH_ENABLED" in body["error"]["message"]
    assert raw_org_rows(on24_env) == []


# ---- dataverseUrl belongs to its org: Dataverse's WhoAmI names the org behind a URL ---------------------------------
@pytest.fixture
def scoped_with_dataverse(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, dataverse: Any) -> Any:
    """Org-scoped admins; DATAVERSE_URL is ORG's Dataverse (the stand-in's WhoAmI answers ORG)."""
    for name, value in {"WEBSITE_AUTH_ENABLED": "true", "ADMIN_ORG_SCOPE": "true", "RETRY_BUDGET_SECONDS": "0"}.items():
        monkeypatch.setenv(name, value)
    reset_app()
    assert dataverse.organization_id == ORG
    return dataverse


def test_an_admin_of_one_org_cannot_store_another_orgs_dataverse_url(scoped_with_dataverse: Any, env_rows: Any) -> None:
    dataverse = scoped_with_dataverse
    admin_of_other = user_principal("asa.odegard@fabrikam.example", [f"Webinar.Admin.{OTHER}"])
    code, body = put(OTHER, credentials_body(dataverseUrl=dataverse.url), headers=admin_of_other)
    assert code == 422, body
    error = body["error"]
    assert error["code"] == "dataverse_org_mismatch" and error["field"] == "dataverseUrl"
    assert ORG in error["message"] and OTHER in error["message"], "the message names both org ids"
    assert env_rows() == [], "nothing is stored"

    code, body = put(OTHER, credentials_body(), headers=admin_of_other)  # DATAVERSE_URL: ORG's too
    assert code == 422 and body["error"]["code"] == "dataverse_org_mismatch" and "field" not in body["error"]
    assert "DATAVERSE_URL" in body["error"]["message"] and env_rows() == []

    own = dataverse.url_for(OTHER.upper())  # WhoAmI answers in any case: compared in the canonical spelling
    code, body = put(OTHER, credentials_body(dataverseUrl=own), headers=admin_of_other)
    assert code == 200 and body["dataverseUrl"] == own
    admin_of_org = user_principal("joerg.mueller@contoso.example", [f"Webinar.Admin.{ORG}"])
    assert put(ORG, credentials_body(), headers=admin_of_org)[0] == 200, "the default URL is ORG's own"
    assert sorted(row["PartitionKey"] for row in env_rows()) == sorted([ORG, OTHER])
    assert dataverse.count(path_contains="WhoAmI") == 4


def test_a_dataverse_url_that_cannot_be_checked_stores_nothing(scoped_with_dataverse: Any, env_rows: Any) -> None:
    dataverse = scoped_with_dataverse
    admin_of_org = user_principal("ivan.petrov@contoso.example", [f"Webinar.Admin.{ORG}"])
    dataverse.down = 503
    code, body = put(ORG, credentials_body(dataverseUrl=dataverse.url), headers=admin_of_org)
    assert code == 503 and body["error"]["code"] == "unavailable" and env_rows() == []
    dataverse.down = None
    missing = {"error": {"code": "0x80040220", "message": "The user is not a member of the organization."}}
    dataverse.fail_next(1, status=403, payload=missing, path_contains="WhoAmI")
    code, body = put(ORG, credentials_body(dataverseUrl=dataverse.url), headers=admin_of_org)
    assert code == 422 and body["error"]["code"] == "dataverse_unverified" and env_rows() == []
    assert put(ORG, credentials_body(dataverseUrl=dataverse.url), headers=admin_of_org)[0] == 200


@pytest.fixture
def env_rows(app_env: dict[str, str]) -> Any:
    return lambda: raw_org_rows(app_env)
