"""OpenTelemetry: a registration's outcome reaches Application Insights with its ids as attributes, and no secret.

Each scenario runs RegisterAttendee.main and PullMetrics.main in a worker process of its own
(tests/e2e/otel_worker.py), because OpenTelemetry providers are process-global. The worker uses the session's
Azurite, Key Vault, ON24 and Dataverse stand-ins. With a connection string it configures the real
azure-monitor-opentelemetry distro through ``get_app()``; the test reads what was exported twice: with the SDK's
in-memory exporters added to the installed providers, and as the envelopes the Azure Monitor exporter posts to an
ingestion stand-in on 127.0.0.1 (what Application Insights stores as customDimensions). A socket audit hook in the
worker records any connection that leaves this machine; there must be none.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from sandbox.server import Request, Response, StandIn
from shared.app import reset_app
from StoreCredentials import main as store_main
from tests.builders import CrmOrg, canonical_body
from tests.conftest import KEY_SECRET_NAME, ON24_CLIENT_ID, ON24_KEY, ON24_SECRET, credentials_body, random_key
from tests.functions import http_request

ROOT = Path(__file__).resolve().parents[2]
ORG = "5b0e4f3a-2c1d-4e6f-8a9b-0c1d2e3f4a5b"
FAILING_ORG = "6c1f5a4b-3d2e-4f7a-9b0c-1d2e3f4a5b6c"
WEBINAR = 880301
OTHER_CLIENT_ID = "7001"
OTHER_KEY, OTHER_SECRET = "otel-token-key-7001", "Otel-Token-Secret-7001-Never-Log"
EMAIL = "zoe.otel@fabrikam.example"
FAILING_EMAIL = "xavier.long@fabrikam.example"
UNKNOWN_WEBINAR = 880399  # ON24 answers 404: a permanent failure of that registration


# What the template sets, minus what needs Azure: no Entra token, no statsbeat, no control plane, and no Azure VM
# resource detector (it asks the instance metadata service at 169.254.169.254).
OFFLINE = {
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "requests,urllib,urllib3",
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
}


class Ingestion(StandIn):
    """Application Insights' ingestion endpoint: accepts ``POST /v2.1/track`` envelopes and keeps them."""

    name = "ingestion"

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[dict[str, Any]] = []

    def handle(self, request: Request) -> Response:
        if request.method == "POST" and request.path.endswith("/v2.1/track"):
            items = request.json()
            self.envelopes.extend(items)
            return Response.json(200, {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})
        if "QuickPulseService.svc" in request.path:  # live metrics pings: say nobody is watching
            return Response(200, b"", {"x-ms-qps-subscribed": "false"})
        return Response.json(404, {"error": f"unexpected {request.method} {request.path}"})


@pytest.fixture
def ingestion() -> Any:
    with Ingestion() as server:
        yield server


@pytest.fixture
def world(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, on24: Any, dataverse: Any, keyvault: Any) -> Any:
    """Two orgs with stored credentials (one whose ON24 account is then switched off), a CRM registration."""
    monkeypatch.setenv("RETRY_BUDGET_SECONDS", "0.5")
    key = random_key()
    keyvault.set_secret(KEY_SECRET_NAME, key)  # the current key version: the test knows its value
    reset_app()
    on24.add_event(ON24_CLIENT_ID, WEBINAR, title="Telemetry webinar")
    on24.add_client(OTHER_CLIENT_ID, OTHER_KEY, OTHER_SECRET)
    on24.reactivate(OTHER_CLIENT_ID)
    assert store_main(http_request("PUT", ORG, credentials_body(webinarIds=[str(WEBINAR)]))).status_code == 200
    other = {
        "clientId": OTHER_CLIENT_ID,
        "accessTokenKey": OTHER_KEY,
        "accessTokenSecret": OTHER_SECRET,
        "webinarIds": [str(WEBINAR)],
        "dataverseUrl": dataverse.url_for(FAILING_ORG),
    }
    assert store_main(http_request("PUT", FAILING_ORG, other)).status_code == 200
    on24.deactivate(OTHER_CLIENT_ID)  # its next call is refused: PullMetrics records the org as failed
    crm = CrmOrg(dataverse, webinar_id=str(WEBINAR))
    registration = crm.registration(crm.contact("Zoë", "Ångström", EMAIL))
    failing = crm.registration(crm.contact("Xavier", "Long", FAILING_EMAIL))
    azurite_key = re.search(r"AccountKey=([^;]+)", app_env["AzureWebJobsStorage"])
    assert azurite_key
    secrets = [ON24_KEY, ON24_SECRET, OTHER_KEY, OTHER_SECRET, key, azurite_key.group(1)]
    messages = [
        canonical_body(
            org_id=ORG,
            registration_id=registration,
            event_id=crm.event_id,
            webinar_id=str(WEBINAR),
            attendee={"email": EMAIL, "firstName": "Zoë", "lastName": "Å"},
        ),
        canonical_body(
            org_id=ORG,
            registration_id=failing,
            event_id=crm.event_id,
            webinar_id=str(UNKNOWN_WEBINAR),
            attendee={"email": FAILING_EMAIL, "firstName": "Xavier", "lastName": "Long"},
        ),
        "this is not JSON",
    ]
    yield {"registration": registration, "failing": failing, "secrets": secrets, "messages": messages}
    on24.reactivate(OTHER_CLIENT_ID)


def run_worker(mode: str, world: Any, tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    plan = tmp_path / f"plan-{uuid.uuid4().hex}.json"
    plan.write_text(json.dumps({"messages": world["messages"]}), encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_", "AZURE_"))}
    environ.update(env)
    done = subprocess.run(  # noqa: S603 - this interpreter running the test's own worker module
        [sys.executable, "-m", "tests.e2e.otel_worker", mode, str(plan)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


def outcome_line(logs: list[dict[str, Any]], registration: str) -> dict[str, Any]:
    lines = [r for r in logs if r["attributes"].get("registration_id") == registration and "outcome" in r["attributes"]]
    assert len(lines) == 1, lines
    return lines[0]


def exported_text(result: dict[str, Any], envelopes: list[dict[str, Any]]) -> str:
    return json.dumps([result["logs"], result["spans"], envelopes], ensure_ascii=False)


def test_registration_outcomes_are_exported_with_their_ids_as_attributes_and_no_secret(
    world: Any, ingestion: Ingestion, tmp_path: Path
) -> None:
    connection = (
        "InstrumentationKey=00000000-0000-0000-0000-0000000000a1;"
        f"IngestionEndpoint={ingestion.url}/;LiveEndpoint={ingestion.url}/"
    )
    result = run_worker(
        "app",
        world,
        tmp_path,
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": connection, **OFFLINE},
    )
    assert result["state"] == "app", "get_app() configured azure-monitor-opentelemetry"
    assert result["network"] == [], "nothing may leave this machine"
    logs = result["logs"]

    registered = outcome_line(logs, world["registration"])
    assert registered["attributes"]["org_id"] == ORG
    assert registered["attributes"]["outcome"] == "registered"
    assert registered["attributes"]["on24_event_id"] == str(WEBINAR)
    assert isinstance(registered["attributes"]["duration_ms"], float)
    failed = outcome_line(logs, world["failing"])
    assert failed["attributes"]["outcome"] == "failed" and failed["attributes"]["org_id"] == ORG
    assert failed["attributes"]["reason"] and failed["severity"] == "ERROR"
    rejected = [r for r in logs if r["attributes"].get("outcome") == "rejected"]
    assert len(rejected) == 1 and rejected[0]["attributes"]["reason"]
    [run] = [r for r in logs if "left_for_next_run" in r["attributes"]]
    assert run["attributes"]["orgs_failed"] == FAILING_ORG, "a plain comma-separated string, not a list"

    # What Application Insights stores: the same ids as custom dimensions of the trace.
    messages = [e["data"]["baseData"] for e in ingestion.envelopes if e["data"]["baseType"] == "MessageData"]
    dimensions = [m.get("properties", {}) for m in messages]
    assert {"org_id": ORG, "registration_id": world["registration"], "outcome": "registered"}.items() <= next(
        d for d in dimensions if d.get("registration_id") == world["registration"]
    ).items()
    [run_dimensions] = [d for d in dimensions if "left_for_next_run" in d]
    assert run_dimensions["orgs_failed"].split(",") == [FAILING_ORG], "how docs/queries.kql reads it (split on ',')"
    assert "[" not in run_dimensions["orgs_failed"] and "'" not in run_dimensions["orgs_failed"]
    assert any(e["data"]["baseType"] == "RemoteDependencyData" for e in ingestion.envelopes), "ON24/CRM calls traced"

    text = exported_text(result, ingestion.envelopes)
    for secret in world["secrets"]:
        assert secret not in text, "a secret reached the exported telemetry"
    assert EMAIL not in text and FAILING_EMAIL not in text, "no email in telemetry"

    # Every custom dimension docs/queries.kql reads is one the code exports.
    queried = set(re.findall(r"customDimensions\.(\w+)", (ROOT / "docs" / "queries.kql").read_text(encoding="utf-8")))
    exported = {key for d in dimensions for key in d}
    assert queried, "docs/queries.kql queries custom dimensions"
    assert queried <= exported, f"docs/queries.kql queries {sorted(queried - exported)}, which nothing exports"


def test_when_the_functions_worker_configured_opentelemetry_the_app_does_not_configure_it_again(
    world: Any, tmp_path: Path
) -> None:
    result = run_worker(
        "worker",
        world,
        tmp_path,
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-0000000000a1"},
    )
    assert result["state"] == "worker"
    assert not [m for m in result["imported"] if m.startswith("azure.monitor")], "no second pipeline"
    registered = outcome_line(result["logs"], world["registration"])
    assert registered["attributes"]["org_id"] == ORG and registered["attributes"]["outcome"] == "registered"
    assert result["network"] == []


def test_a_malformed_connection_string_turns_telemetry_off_and_the_functions_keep_working(
    world: Any, tmp_path: Path
) -> None:
    result = run_worker(
        "app", world, tmp_path, {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=oops", **OFFLINE}
    )
    assert result["state"] == "off"
    assert (
        "OpenTelemetry export is off" in result["stderr"]
        and "APPLICATIONINSIGHTS_CONNECTION_STRING" in result["stderr"]
    )
    from shared.app import get_app

    entry = get_app().ledger.get(ORG, world["registration"])
    assert entry is not None and entry.state == "registered", "the registration went through regardless"
    assert result["network"] == []


def test_without_a_connection_string_nothing_of_opentelemetry_is_loaded(world: Any, tmp_path: Path) -> None:
    result = run_worker("off", world, tmp_path, {})
    assert result["state"] == "off"
    assert result["imported"] == [], "cold start stays free of the OpenTelemetry imports"
    assert result["network"] == []
