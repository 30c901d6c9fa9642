"""Each function folder's function.json matches its ``main`` the way the Python worker checks at load time."""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import azure.functions as func
import pytest
from pydantic import AliasChoices

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = sorted(p.parent.name for p in ROOT.glob("*/function.json"))

# The admin routes design.md documents, and which function serves each.
# Admin routes: anonymous at the host, guarded by the app (shared.entrypoints.admin_auth: App Service
# authentication's principal, else ADMIN_API_KEY, else closed in Azure); a host key would make a signed-in admin
# type one. tests/e2e/test_function_host_http.py attacks each of them over HTTP.
ADMIN_ROUTES = {
    "StoreCredentials": ("orgs/{orgId}/webinar/credentials", ["put"]),
    "CredentialsStatus": ("orgs/{orgId}/webinar/credentials", ["get"]),
    "RemoveCredentials": ("orgs/{orgId}/webinar/credentials", ["delete"]),
    "WebinarStatus": ("orgs/{orgId}/webinar/status", ["get"]),
    "PullWebinar": ("orgs/{orgId}/webinars/{webinarId}/pull", ["post"]),
    "ForgetAttendee": ("orgs/{orgId}/webinar/forget", ["post"]),
    "Reconcile": ("orgs/{orgId}/webinars/{webinarId}/reconcile", ["post"]),
    "OperationStatus": ("orgs/{orgId}/operations/{operationId}", ["get"]),
}
# Public HTTP functions: no data behind them (the page's data calls go through the guarded admin routes).
ANONYMOUS_ROUTES = {"AdminPage": ("{page:regex(^admin$)}/{asset?}", ["get"]), "OpenApi": ("openapi.json", ["get"])}
TRIGGER_TYPES = {
    "serviceBusTrigger": func.ServiceBusMessage,
    "timerTrigger": func.TimerRequest,
    "httpTrigger": func.HttpRequest,
}


def test_the_product_owners_functions_exist() -> None:
    assert {"RegisterAttendee", "PullMetrics", "RemoveCredentials", "StoreCredentials"} <= set(FOLDERS)
    assert not (ROOT / "function_app.py").exists(), "a root function_app.py would switch the worker to the v2 model"


@pytest.mark.parametrize("folder", FOLDERS)
def test_function_json_matches_main(folder: str) -> None:
    spec = json.loads((ROOT / folder / "function.json").read_text())
    assert spec.get("scriptFile", "__init__.py") == "__init__.py"
    module = importlib.import_module(folder)
    main = getattr(module, spec.get("entryPoint", "main"))
    params = inspect.signature(main).parameters
    bindings = {b["name"]: b for b in spec["bindings"] if b["name"] != "$return"}
    assert set(bindings) == set(params) - {"context"}, "binding names and main parameters must match exactly"
    triggers = [b for b in spec["bindings"] if b["type"].endswith("Trigger")]
    assert len(triggers) == 1 and triggers[0]["direction"] == "in"
    trigger = triggers[0]
    annotation = params[trigger["name"]].annotation
    assert annotation in (TRIGGER_TYPES[trigger["type"]], TRIGGER_TYPES[trigger["type"]].__name__) or (
        isinstance(annotation, type) and issubclass(annotation, TRIGGER_TYPES[trigger["type"]])
    )
    returns = [b for b in spec["bindings"] if b["name"] == "$return"]
    if trigger["type"] == "httpTrigger":
        assert returns and returns[0]["type"] == "http" and returns[0]["direction"] == "out"
        assert trigger["authLevel"] == "anonymous"
        assert (trigger["route"], trigger["methods"]) == {**ANONYMOUS_ROUTES, **ADMIN_ROUTES}[folder]
        # the host refuses a route whose text starts with "admin" or "runtime" (its own APIs), whatever the prefix
        assert not trigger["route"].strip("/").lower().startswith(("admin", "runtime"))
    else:
        assert not returns
    if trigger["type"] == "serviceBusTrigger":
        assert trigger["queueName"] == "%REGISTRATIONS_QUEUE%" and trigger["connection"] == "ServiceBusConnection"
    if trigger["type"] == "timerTrigger":
        schedules = {"PullMetrics": "%PULL_METRICS_SCHEDULE%", "RetryParked": "%RETRY_PARKED_SCHEDULE%"}
        assert trigger["schedule"] == schedules[folder], "each timer has its own schedule setting"
        assert trigger.get("runOnStartup", False) is False


def test_admin_routes_do_not_clash() -> None:
    routes = []
    for folder in FOLDERS:
        for b in json.loads((ROOT / folder / "function.json").read_text())["bindings"]:
            if b["type"] == "httpTrigger":
                routes.extend((b["route"], m) for m in b["methods"])
    assert len(routes) == len(set(routes))
    assert {m for _, m in routes} == {"put", "get", "delete", "post"}
    assert {folder for folder in FOLDERS if folder in ADMIN_ROUTES} == set(ADMIN_ROUTES)


def test_host_json_is_a_v2_production_configuration() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    sb = host["extensions"]["serviceBus"]
    assert sb["autoCompleteMessages"] is True and "messageHandlerOptions" not in sb
    assert host["functionTimeout"] == "00:10:00"


def test_local_settings_sample_lists_every_setting_the_code_reads() -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())
    values = sample["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    read = {name for field in Settings.model_fields.values() for name in _setting_names(field.validation_alias)}
    assert read, "every setting is a field of Settings, its alias the setting's name"
    platform_set = {"WEBSITE_INSTANCE_ID", "WEBSITE_AUTH_ENABLED"}  # Azure sets these; never configure them
    missing = sorted(name for name in read - platform_set if name not in values)
    assert not missing, f"local.settings.sample.json lacks {missing}"


def _setting_names(alias: object) -> list[str]:
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [alias] if isinstance(alias, str) else []
