"""PullMetrics with several orgs: one org's failure is recorded on that org and never touches another.

Each bad org is listed (Table Storage orders rows by PartitionKey) before a healthy org with five attendees.
The four ways an org fails are the ones seen in production-like runs: a stored webinar id ON24 can never
have, a Dataverse that answers 403 to ``$batch`` (the application user lacks a privilege), a token request
refused by Entra ID (AADSTS...), and ON24 answering 400 to ``get_event``. Real parts throughout: Azurite,
the Key Vault stand-in, the ON24 stand-in, two Dataverse stand-ins, the function folders' ``main``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.data.tables import TableServiceClient, UpdateMode
from azure.functions.timer import TimerRequest

from CredentialsStatus import main as status_main
from PullMetrics import main as pull_main
from RegisterAttendee import main as register_main
from sandbox.dataverse import DataverseStandIn
from shared.app import App, get_app, set_app
from shared.credentials import seal_secrets
from shared.crm import checkin_id
from shared.settings import Settings
from StoreCredentials import main as store_main
from tests.builders import CrmOrg, canonical_body
from tests.functions import http_request, json_body, service_bus_message

CHECKINS = "msevtmgt_checkins"
HEALTHY = "f0000000-0000-4000-8000-00000000000f"
BAD_WEBINAR_ID = "0a000000-0000-4000-8000-00000000000a"
DATAVERSE_403 = "0b000000-0000-4000-8000-00000000000b"
TOKEN_REFUSED = "0c000000-0000-4000-8000-00000000000c"
ON24_400 = "0d000000-0000-4000-8000-00000000000d"
REFUSED_URL = "https://fabrikam.crm4.dynamics.com"
AADSTS = "AADSTS500011: The resource principal named https://fabrikam.crm4.dynamics.com was not found in the tenant"


class RefusingCredential:
    """The app's identity as Entra ID sees it: refused for one Dataverse org, never asked for any other here."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        raise ClientAuthenticationError(AADSTS)

    def close(self) -> None:
        return None


class Tenants:
    """Orgs, each with its own ON24 account and webinar and five registrants registered by RegisterAttendee."""

    def __init__(self, on24: Any, dataverse: Any, env: dict[str, str]) -> None:
        self.on24, self.dataverse, self.env = on24, dataverse, env
        self.live = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        self.regs: dict[str, list[str]] = {}
        self.webinar: dict[str, int] = {}

    def org(self, org_id: str, client: str, webinar: int, *, attendees: int = 5) -> None:
        key, secret = f"key-{client}", f"Secret-{client}-0001"
        self.on24.add_client(client, key, secret)
        self.on24.add_event(client, webinar, livestart=self.live, liveend=self.live + timedelta(hours=1))
        body = {"clientId": client, "accessTokenKey": key, "accessTokenSecret": secret,
                "dataverseUrl": self.dataverse.url_for(org_id)}  # fmt: skip
        response = store_main(http_request("PUT", org_id, body))
        assert response.status_code == 200, response.get_body()
        crm = CrmOrg(self.dataverse, webinar_id=str(webinar))
        self.webinar[org_id] = webinar
        self.regs[org_id] = []
        for i in range(attendees):
            email = f"a{i}@{client}.example"
            contact = crm.contact(f"A{i}", "Tester", email)
            reg = crm.registration(contact)
            message = canonical_body(
                org_id=org_id,
                registration_id=reg,
                event_id=crm.event_id,
                webinar_id=str(webinar),
                attendee={"email": email, "firstName": f"A{i}", "lastName": "Tester"},
            )
            register_main(service_bus_message(message))
            self.regs[org_id].append(reg)
            self.on24.set_attendee(
                webinar,
                email,
                liveminutes=10 + i,
                firstliveactivity=self.live + timedelta(minutes=1),
                lastliveactivity=self.live + timedelta(minutes=11 + i),
            )

    def merge_org_row(self, org_id: str, **columns: Any) -> None:
        """Change clear columns of an org row directly in the table (what an operator or an attacker can do)."""
        service = TableServiceClient.from_connection_string(self.env["AzureWebJobsStorage"])
        table = service.get_table_client(self.env["STATE_TABLE_PREFIX"] + "orgs")
        table.update_entity({"PartitionKey": org_id, "RowKey": "credentials", **columns}, mode=UpdateMode.MERGE)

    def repoint_in_store(self, org_id: str, client: str, dataverse_url: str) -> None:
        """Point the org's row at a URL where the app's identity is refused now (a save checks WhoAmI, so this is
        a row saved before the app user was removed there), through the store itself."""
        app = get_app()
        record = replace(app.credentials.get(org_id), dataverse_url=dataverse_url)
        secrets = {"accessTokenKey": f"key-{client}", "accessTokenSecret": f"Secret-{client}-0001"}
        app.credentials.save(seal_secrets(app.cipher, record, secrets))

    def repoint(self, org_id: str, client: str, dataverse_url: str) -> None:
        """Store the org's credentials again with its own Dataverse URL (after its registrations went through)."""
        body = {
            "clientId": client,
            "accessTokenKey": f"key-{client}",
            "accessTokenSecret": f"Secret-{client}-0001",
            "dataverseUrl": dataverse_url,
        }
        response = store_main(http_request("PUT", org_id, body))
        assert response.status_code == 200, response.get_body()

    def checkins(self, org_id: str, dataverse: Any | None = None) -> int:
        store = dataverse or self.dataverse
        return sum(1 for reg in self.regs[org_id] if store.row(CHECKINS, checkin_id(org_id, reg)) is not None)

    def status(self, org_id: str) -> dict[str, Any]:
        response = status_main(http_request("GET", org_id))
        assert response.status_code == 200
        body: dict[str, Any] = json_body(response)
        return body


@pytest.fixture
def second_dataverse() -> Iterator[DataverseStandIn]:
    server = DataverseStandIn()
    server.start()
    yield server
    server.close()


@pytest.fixture
def refusing_credential(app_env: dict[str, str]) -> Iterator[RefusingCredential]:
    credential = RefusingCredential()
    set_app(App(Settings.from_environ(), azure_credential=credential))
    yield credential
    set_app(None)


@pytest.fixture
def tenants(app_env: dict[str, str], on24: Any, dataverse: Any, refusing_credential: RefusingCredential) -> Tenants:
    return Tenants(on24, dataverse, app_env)


def run_timer() -> None:
    pull_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))


def _bad_webinar_id(t: Tenants, second: DataverseStandIn) -> str:
    t.org(BAD_WEBINAR_ID, "3001", 9201)
    t.merge_org_row(BAD_WEBINAR_ID, WebinarIds="0")  # stored before webinarIds had to be positive
    return "positive number"


def _dataverse_403(t: Tenants, second: DataverseStandIn) -> str:
    t.org(DATAVERSE_403, "3002", 9202)
    t.repoint(DATAVERSE_403, "3002", second.url_for(DATAVERSE_403))
    second.fail_next(
        1000,
        status=403,
        path_contains="$batch",
        payload={"error": {"code": "0x80040220", "message": "Principal user is missing prvCreatemsevtmgt_checkin"}},
    )
    return "403"


def _token_refused(t: Tenants, second: DataverseStandIn) -> str:
    t.org(TOKEN_REFUSED, "3003", 9203)
    t.repoint_in_store(TOKEN_REFUSED, "3003", REFUSED_URL)
    return "AADSTS500011"


def _on24_400(t: Tenants, second: DataverseStandIn) -> str:
    t.org(ON24_400, "3004", 9204)
    t.on24.fail_next(
        1000, status=400, method="GET", path_contains="/event/9204", payload={"message": "Error, invalid event."}
    )
    return "400"


BAD_ORGS: dict[str, tuple[str, Callable[[Tenants, DataverseStandIn], str]]] = {
    "stored webinar id 0": (BAD_WEBINAR_ID, _bad_webinar_id),
    "Dataverse 403 on $batch": (DATAVERSE_403, _dataverse_403),
    "token request refused": (TOKEN_REFUSED, _token_refused),
    "ON24 400 on get_event": (ON24_400, _on24_400),
}


@pytest.mark.parametrize("kind", list(BAD_ORGS))
def test_one_failing_org_listed_first_does_not_stop_a_healthy_one(
    tenants: Tenants, second_dataverse: DataverseStandIn, kind: str
) -> None:
    bad_org, make_bad = BAD_ORGS[kind]
    reason = make_bad(tenants, second_dataverse)
    tenants.org(HEALTHY, "3009", 9209)

    run_timer()  # returns normally: one org's failure is not the run's failure

    assert tenants.checkins(HEALTHY) == 5, "the healthy org gets every check-in"
    seen = tenants.status(bad_org)
    assert seen["metrics"]["status"] == "error", seen
    assert reason in seen["metrics"]["reason"], seen
    assert seen["metrics"]["at"], "the failure is recorded with its time"
    assert tenants.status(HEALTHY)["metrics"]["status"] == "ok"


def test_three_orgs_failing_three_ways_before_a_healthy_one(
    tenants: Tenants, second_dataverse: DataverseStandIn, refusing_credential: RefusingCredential, on24: Any
) -> None:
    reasons = {org: make(tenants, second_dataverse) for org, make in BAD_ORGS.values()}
    tenants.org(HEALTHY, "3009", 9209)

    run_timer()

    assert tenants.checkins(HEALTHY) == 5
    for org, reason in reasons.items():
        seen = tenants.status(org)
        assert seen["metrics"]["status"] == "error" and reason in seen["metrics"]["reason"], (org, seen)
        text = json.dumps(seen)
        assert "Secret-" not in text and "key-300" not in text
    assert tenants.checkins(DATAVERSE_403, second_dataverse) == 0
    assert refusing_credential.scopes == [f"{REFUSED_URL}/.default"], "a token is asked for the org's own host only"

    # The next run retries the failing orgs and still serves the healthy one (nothing is disabled for good).
    second_dataverse.clear_faults()
    on24.clear_faults()
    run_timer()
    assert tenants.checkins(DATAVERSE_403, second_dataverse) == 0, "its registrations live in the first Dataverse"
    assert tenants.status(ON24_400)["metrics"]["status"] == "ok"
    assert tenants.status(TOKEN_REFUSED)["metrics"]["status"] == "error"


def test_storage_down_fails_the_run(tenants: Tenants, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run itself cannot work without its state: that is the one failure PullMetrics raises."""
    from sandbox.server import free_port
    from shared.errors import TransientError

    tenants.org(HEALTHY, "3009", 9209)
    app = get_app()
    dead = f"TableEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1"
    connection = re.sub(r"TableEndpoint=[^;]+", dead, tenants.env["AzureWebJobsStorage"])
    table = TableServiceClient.from_connection_string(connection, retry_total=0)
    monkeypatch.setattr(app.credentials, "_table", table.get_table_client(tenants.env["STATE_TABLE_PREFIX"] + "orgs"))
    with pytest.raises(TransientError):
        run_timer()
