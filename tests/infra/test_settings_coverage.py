"""The template sets every app setting the bindings and the code need, so a deployed app loads and starts.

The Functions host resolves ``%NAME%`` binding expressions from app settings only: a default in shared/settings.py
never reaches it, and a missing one keeps the function from loading ("does not resolve to a value"). The code's
own required settings fail at the first invocation with a ConfigError. Both are checked here against what
infra/resources.bicep really sets, generically: new ``%NAME%`` expressions, new binding connections and new required
settings in shared/settings.py are picked up without editing this test. A mutation test proves that removing any
of the settings that matter from the template makes the check fail.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.app import App
from shared.crypto import KeyVaultKeyProvider
from shared.errors import ConfigError
from shared.keyvault import StaticTokenCredential
from shared.settings import Settings
from tests.infra.bicep import FAKE_CLIENT_ID, ROOT, Template, app_settings, evaluate, load, parse

FUNCTION_JSONS = sorted(ROOT.glob("*/function.json"))
BINDING_EXPRESSION = re.compile(r"%([A-Za-z0-9_.\-]+)%")
IDENTITY_SUFFIXES = ("__fullyQualifiedNamespace", "__accountName", "__serviceUri", "__blobServiceUri")


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def binding_expressions() -> dict[str, list[str]]:
    """``%NAME%`` -> the functions whose function.json uses it."""
    found: dict[str, list[str]] = {}
    for path in FUNCTION_JSONS:
        for text in _strings(json.loads(path.read_text(encoding="utf-8"))):
            for name in BINDING_EXPRESSION.findall(text):
                found.setdefault(name, []).append(path.parent.name)
    return found


def binding_connections() -> set[str]:
    """Every ``connection`` of every binding, plus the host's own storage connection."""
    names = {"AzureWebJobsStorage"}
    for path in FUNCTION_JSONS:
        for binding in json.loads(path.read_text(encoding="utf-8"))["bindings"]:
            if binding.get("connection"):
                names.add(binding["connection"])
    return names


def coverage_problems(bicep: Template) -> list[str]:
    """What a deployment of this template would lack, in words; empty when everything is set."""
    settings = app_settings(bicep)
    values = {name: evaluate(expr, bicep) for name, expr in settings.items()}
    problems: list[str] = []

    for name, functions in sorted(binding_expressions().items()):
        if not values.get(name):
            problems.append(f"%{name}% (used by {', '.join(functions)}) is not set: the function would not load")

    for connection in sorted(binding_connections()):
        if values.get(connection):
            continue
        if not any(values.get(connection + suffix) for suffix in IDENTITY_SUFFIXES):
            problems.append(f"connection {connection} has neither a setting nor an identity-based {connection}__*")
            continue
        if values.get(f"{connection}__credential") != "managedidentity":
            problems.append(f"{connection}__credential must be managedidentity for an identity-based connection")
        if values.get(f"{connection}__clientId") != FAKE_CLIENT_ID:
            problems.append(f"{connection}__clientId must name the app's user-assigned identity")

    # The app's only identity is user-assigned: DefaultAzureCredential finds it through AZURE_CLIENT_ID.
    if values.get("AZURE_CLIENT_ID") != FAKE_CLIENT_ID:
        problems.append("AZURE_CLIENT_ID must be the app identity's client id (Table Storage, Key Vault, Dataverse)")

    environ = {**values, "WEBSITE_INSTANCE_ID": "0" * 64}  # as in Azure: the local key is refused there
    try:
        config = Settings.from_environ(environ)
    except ConfigError as exc:
        return [*problems, f"shared/settings.py refuses the template's settings: {exc}"]
    if config.state_connection or not config.state_account_url:
        problems.append("the state tables must be reached through the identity (AzureWebJobsStorage__accountName)")
    try:
        provider = App(config, azure_credential=StaticTokenCredential()).key_provider
    except ConfigError as exc:
        problems.append(f"no credentials key in Azure: {exc}")
    else:
        if not isinstance(provider, KeyVaultKeyProvider):
            problems.append("the credentials key must come from Key Vault in Azure")
    return problems


def without_setting(text: str, name: str) -> str:
    """The Bicep text with one ``{ name: '<name>' value: ... }`` app-setting entry removed."""
    pattern = re.compile(r"\n[ \t]*\{\s*\n[ \t]*name: '" + re.escape(name) + r"'\s*\n[ \t]*value: [^\n]*\n[ \t]*\}")
    mutated, count = pattern.subn("", text)
    assert count == 1, f"app setting {name} not found exactly once"
    return mutated


def test_the_template_sets_every_binding_expression_connection_and_required_setting() -> None:
    assert binding_expressions(), "the function.json files use %NAME% expressions"
    assert coverage_problems(load()) == []


def test_binding_expressions_get_the_resources_the_template_creates() -> None:
    bicep = load()
    settings = app_settings(bicep)
    assert bicep.render(settings["REGISTRATIONS_QUEUE"]) == "registrationsQueue.name", "listen on the queue created"
    assert evaluate(settings["PULL_METRICS_SCHEDULE"], bicep) == "0 */15 * * * *"
    namespace = evaluate(settings["ServiceBusConnection__fullyQualifiedNamespace"], bicep)
    assert namespace.endswith(".servicebus.windows.net")
    assert bicep.render(settings["AzureWebJobsStorage__accountName"]) == "storage.name"


def test_removing_any_setting_that_matters_is_caught(tmp_path: Path) -> None:
    bicep = load()
    text = bicep.text
    caught = set()
    for name in app_settings(bicep):
        path = tmp_path / "resources.bicep"
        path.write_text(without_setting(text, name), encoding="utf-8")
        if coverage_problems(parse(path)):
            caught.add(name)
    must_catch = set(binding_expressions()) | {
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "ServiceBusConnection__fullyQualifiedNamespace",
        "ServiceBusConnection__credential",
        "ServiceBusConnection__clientId",
        "KEY_VAULT_URL",
        "CREDENTIALS_KEY_SECRET_NAME",
        "AZURE_CLIENT_ID",
    }
    assert must_catch <= caught, f"removing {sorted(must_catch - caught)} from the template goes unnoticed"


@pytest.mark.parametrize("name", ["REGISTRATIONS_QUEUE", "PULL_METRICS_SCHEDULE", "KEY_VAULT_URL"])
def test_the_problem_names_the_missing_setting(tmp_path: Path, name: str) -> None:
    path = tmp_path / "resources.bicep"
    path.write_text(without_setting(load().text, name), encoding="utf-8")
    problems = coverage_problems(parse(path))
    assert any(name in problem for problem in problems), problems
