"""infra/ (Bicep) and azure.yaml say what docs/deploy.md says: Flex Consumption, one user-assigned identity for every
connection, least-privilege roles that each say why, a queue that outlasts a delivery, a vault that keeps the key,
no secret in any output, and a checkov scan with nothing failed and every skip explained.

There is no Bicep CLI here: the templates are read with pycep-parser (tests/infra/bicep.py) and scanned with
checkov (PyPI).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

from tests.infra.bicep import INFRA, ROOT, Template, app_settings, load, parse, role_assignments

# Settings Flex Consumption deprecates (functions-app-settings#flex-consumption-plan-deprecations).
FLEX_DEPRECATED_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "WEBSITE_TIME_ZONE",
    "WEBSITE_NODE_DEFAULT_VERSION",
}


# What an output may reference: names, ids, the identity's ids, the host name, and other outputs of the module.
SAFE_OUTPUT = r"\w+\.(name|id|properties\.(clientId|principalId|defaultHostName))|resources\.outputs\.\w+"


def _literals(value: Any) -> list[str]:
    """Every string in a pycep value (literals and identifiers alike)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _literals(v)]
    if isinstance(value, list):
        return [s for v in value for s in _literals(v)]
    return []


# siteConfig properties ARM refuses for Flex Consumption sites (error 51021; the runtime and scale live in
# functionAppConfig). List from the Azure Verified Modules function-app module's FC1 tests.
FLEX_REJECTED_SITE_CONFIG = {
    "linuxFxVersion",
    "windowsFxVersion",
    "netFrameworkVersion",
    "phpVersion",
    "pythonVersion",
    "nodeVersion",
    "javaVersion",
    "javaContainer",
    "javaContainerVersion",
    "powerShellVersion",
    "alwaysOn",
    "ftpsState",
    "use32BitWorkerProcess",
    "preWarmedInstanceCount",
    "functionsRuntimeScaleMonitoringEnabled",
    "functionAppScaleLimit",
}


def test_every_role_assignment_says_why_it_is_needed() -> None:
    for assignment, role, _, _ in role_assignments():
        why = " ".join(assignment.comments)
        assert role in why, f"{assignment.symbol}: the comment above it must name the role ({role})"
        assert len(why) > len(role) + 60, f"{assignment.symbol}: the comment must say why {role} is needed"


def test_roles_are_exactly_the_least_privilege_set() -> None:
    granted = {(role, scope, principal) for _, role, scope, principal in role_assignments()}
    assert granted == {
        ("Storage Blob Data Owner", "storage", "appIdentity"),  # host storage, app package, rejected bodies
        ("Storage Table Data Contributor", "storage", "appIdentity"),  # state tables
        ("Azure Service Bus Data Receiver", "registrationsQueue", "appIdentity"),  # the trigger
        ("Azure Service Bus Data Owner", "registrationsQueue", "appIdentity"),  # scale controller: queue length
        ("Key Vault Secrets User", "credentialsKeySecret", "appIdentity"),  # read the key, one secret only
        ("Key Vault Secrets Officer", "keyVault", "keygenIdentity"),  # deployment script creates the key (temporary)
        ("Monitoring Metrics Publisher", "appInsights", "appIdentity"),  # Entra-authenticated telemetry
    }
    names = {role for role, _, _ in granted}
    assert "Storage Queue Data Contributor" not in names, "no queue triggers: the host needs no queue role"
    assert "Azure Service Bus Data Sender" not in names, "the app never sends to Service Bus"


def test_function_app_is_flex_consumption_python_311_on_one_user_assigned_identity() -> None:
    template = load()
    plan = template.resources["plan"].body
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    site = template.resources["functionApp"]
    assert site.body["kind"] == "functionapp,linux"
    assert site.body["identity"]["type"] == "UserAssigned"
    assert list(site.body["identity"]["userAssignedIdentities"]) == ["'${appIdentity.id}'"]
    config = site.properties["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["scaleAndConcurrency"]["maximumInstanceCount"] == "maximumInstanceCount", (
        "the scale limit is a parameter"
    )
    param = template.params["maximumInstanceCount"]
    assert param["type"] == "int"
    assert template.decorator("maximumInstanceCount", "min_value") == 40
    assert template.decorator("maximumInstanceCount", "max_value") == 1000
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer" and "deploymentContainerName" in storage["value"]
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert template.render(storage["authentication"]["userAssignedIdentityResourceId"]) == "appIdentity.id"
    assert site.properties["httpsOnly"] is True
    rejected = FLEX_REJECTED_SITE_CONFIG & set(site.properties["siteConfig"])
    assert not rejected, f"ARM rejects these siteConfig properties on Flex Consumption sites: {rejected}"


def test_site_config_holds_only_what_the_flex_samples_set_each_value_explained() -> None:
    """ARM's error 51021 refuses some siteConfig properties on Flex sites depending on the region; Microsoft's Flex
    quickstart sets minTlsVersion only. Anything else (http20Enabled was here) risks a failed deployment."""
    template = load()
    site_config = template.resources["functionApp"].properties["siteConfig"]
    assert set(site_config) == {"minTlsVersion", "appSettings"} and site_config["minTlsVersion"] == "1.2"
    lines = template.text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("minTlsVersion: '1.2'"))
    assert lines[at - 1].strip().startswith("//") and "TLS" in lines[at - 1], "minTlsVersion says why it is there"


def test_service_bus_resources_use_the_ga_api_version() -> None:
    """2024-01-01 is a GA Microsoft.ServiceBus version that checkov and the Bicep types know (no preview)."""
    template = load()
    service_bus = [r for r in template.resources.values() if r.type.startswith("Microsoft.ServiceBus/")]
    assert len(service_bus) == 3
    assert {r.api_version for r in service_bus} == {"2024-01-01"}
    previews = {r.symbol for r in template.resources.values() if "preview" in r.api_version}
    assert previews == {"serviceBusMetrics"}, "diagnosticSettings has no GA version newer than 2021-05-01-preview"


def test_the_key_generation_role_is_temporary_and_the_hook_deletes_it() -> None:
    template = load()
    for symbol in ("keygenSecretsOfficer", "generateCredentialsKeyScript"):
        resource = template.resources[symbol]
        assert resource.condition == "generateCredentialsKey", f"{symbol} exists only while the key is created"
        assert resource.head.endswith("= if (generateCredentialsKey) {")
    output = template.render(template.outputs["KEYGEN_ROLE_ASSIGNMENT_ID"])
    assert output == "generateCredentialsKey ? keygenSecretsOfficer.id : ''"
    azd = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert azd["generateCredentialsKey"]["value"] == "${GENERATE_CREDENTIALS_KEY=true}"
    for hook in ("postprovision.sh", "postprovision.ps1"):
        text = (INFRA / "scripts" / hook).read_text(encoding="utf-8")
        assert "az role assignment delete --ids" in text and "azd env set GENERATE_CREDENTIALS_KEY false" in text


def test_no_flex_deprecated_setting_and_thread_pool_matches_service_bus_concurrency() -> None:
    template = load()
    settings = app_settings(template)
    assert not FLEX_DEPRECATED_SETTINGS & set(settings), "Flex Consumption rejects or ignores these settings"
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    concurrent = host["extensions"]["serviceBus"]["maxConcurrentCalls"]
    threads = int(settings["PYTHON_THREADPOOL_THREAD_COUNT"])
    assert threads >= concurrent, "a sync main runs on the worker's thread pool: one thread per concurrent delivery"
    assert host["telemetryMode"] == "OpenTelemetry"
    assert settings["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"
    assert "Authorization=AAD" in settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    assert template.resources["appInsights"].properties["DisableLocalAuth"] is True


def _settings_default(name: str, fallback: float) -> float:
    """The default shared/settings.py gives a numeric setting (the fallback when this branch does not read it)."""
    source = (ROOT / "shared" / "settings.py").read_text(encoding="utf-8")
    m = re.search(r'env\.number\(\s*"' + name + r'",\s*([0-9.]+)', source)
    return float(m.group(1)) if m else fallback


def test_queue_lock_outlasts_one_delivery_and_dead_letters_expired_messages() -> None:
    template = load()
    queue = template.resources["registrationsQueue"].properties
    assert queue["lockDuration"] == "PT${queueLockDurationSeconds}S"
    lock = template.params["queueLockDurationSeconds"]["default"]
    lease = _settings_default("REGISTRATION_LEASE_SECONDS", 90)
    budget = _settings_default("RETRY_BUDGET_SECONDS", 15)
    timeout = _settings_default("ON24_TIMEOUT_SECONDS", 10)
    assert lease + budget + timeout < lock <= 300, "lease + retry budget + one ON24 call must fit in the lock"
    assert template.decorator("queueLockDurationSeconds", "max_value") == 300, "Service Bus allows 5 minutes"
    assert queue["maxDeliveryCount"] == "maxDeliveryCount" and template.params["maxDeliveryCount"]["default"] == 10
    assert queue["deadLetteringOnMessageExpiration"] is True
    assert queue["requiresSession"] is False


def test_dataverse_gets_a_send_only_queue_scoped_sas_rule_whose_key_is_never_output() -> None:
    template = load()
    rule = template.resources["dataverseSendRule"]
    assert rule.type == "Microsoft.ServiceBus/namespaces/queues/authorizationRules"
    assert rule.body["parent"] == "registrationsQueue"
    assert rule.properties["rights"] == ["Send"]
    assert not template.of_type("Microsoft.ServiceBus/namespaces/authorizationRules"), "no namespace-wide rule"
    for path in (INFRA / "resources.bicep", INFRA / "main.bicep"):
        parsed = parse(path)
        assert "listkeys" not in parsed.text.lower(), f"{path.name} must never read a key"
        for name, value in parsed.outputs.items():
            for reference in re.findall(r"\b\w+(?:\.\w+)+", parsed.render(value)):
                assert re.fullmatch(SAFE_OUTPUT, reference), f"output {name} exposes {reference}"


def test_key_vault_uses_rbac_soft_delete_and_purge_protection_and_the_key_is_generated_once() -> None:
    template = load()
    vault = template.resources["keyVault"].properties
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True and vault["enablePurgeProtection"] is True
    assert "accessPolicies" not in vault
    script = template.resources["generateCredentialsKeyScript"]
    assert (
        template.render(script.properties["scriptContent"]) == "loadTextContent('scripts/generate-credentials-key.sh')"
    )
    assert "outputs" not in script.properties and "AZ_SCRIPTS_OUTPUT_PATH" not in (
        INFRA / "scripts" / "generate-credentials-key.sh"
    ).read_text(encoding="utf-8")
    assert template.resources["credentialsKeySecret"].existing, "the template never holds the key's value"
    assert template.of_type("Microsoft.KeyVault/vaults/secrets") == [template.resources["credentialsKeySecret"]]


def test_state_tables_and_blob_containers_match_what_the_app_uses() -> None:
    from shared.store.tables import TABLE_SUFFIXES

    template = load()
    assert tuple(template.variables["stateTableSuffixes"]) == TABLE_SUFFIXES
    assert template.render(template.variables["rejectedContainerName"]) == "toLower('${stateTablePrefix}rejected')"
    assert template.render(template.variables["matchIndexContainerName"]) == "toLower('${stateTablePrefix}metrics')"
    assert template.resources["matchIndexContainer"].properties["publicAccess"] == "None"
    storage = template.resources["storage"].properties
    assert storage["allowSharedKeyAccess"] is False and storage["allowBlobPublicAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2"


def test_main_passes_its_parameters_and_azd_parameters_exist() -> None:
    main = parse(INFRA / "main.bicep")
    resources = load()
    for name, value in main.data["modules"]["resources"]["config"]["params"].items():
        assert name in resources.params and value == name and name in main.params, name
    azd_params = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert set(azd_params) <= set(main.params)
    for name, value in main.outputs.items():
        output = main.render(value)
        assert output == f"resources.outputs.{name}" or name in {"AZURE_RESOURCE_GROUP", "AZURE_LOCATION"}
        if output.startswith("resources.outputs."):
            assert name in resources.outputs


def test_no_literal_string_shadows_a_declared_name() -> None:
    """pycep gives literals and identifiers alike as str (tests/infra/bicep.py): a literal equal to a declared
    name would be read as a reference. Every quoted literal in the templates must differ from every name."""
    for path in (INFRA / "resources.bicep", INFRA / "main.bicep"):
        template: Template = parse(path)
        code, in_decorator = [], False
        for line in template.text.splitlines():
            in_decorator = line.startswith("@") or (in_decorator and not re.match(r"(param|output) ", line))
            if not in_decorator:  # decorators hold metadata, never references
                code.append(line.split("//")[0])
        code = "\n".join(code)
        quoted = set(re.findall(r"'([A-Za-z_]\w*)'", code))
        assert not quoted & template.names, (
            f"{path.name}: literal(s) equal to a declared name: {quoted & template.names}"
        )


def test_azure_yaml_publishes_the_repository_root_as_the_tagged_function_app() -> None:
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    service = re.search(r"^services:\n  (\w+):\n((?:    .*\n|\s*\n)+)", text, re.M)
    assert service, "one service"
    name, body = service.group(1), service.group(2)
    assert re.search(r"^    project: \.$", body, re.M) and "language: python" in body and "host: function" in body
    tags = load().resources["functionApp"].body["tags"]["function"]["parameters"]
    assert tags["arg_1"] == "tags" and tags["arg_2"] == {"'azd-service-name'": name}
    assert re.search(r"^infra:\n  provider: bicep\n  path: infra\n  module: main$", text, re.M)


def test_funcignore_keeps_tooling_out_and_the_app_in() -> None:
    patterns = {p.strip().rstrip("/") for p in (ROOT / ".funcignore").read_text().splitlines() if p.strip()}
    assert {"infra", "docs", "azure.yaml", ".azure", "tests", "sandbox", "scripts", "benchmarks"} <= patterns
    app = {"host.json", "requirements.txt", "shared", *(p.parent.name for p in ROOT.glob("*/function.json"))}
    assert not app & patterns


def test_checkov_passes_and_every_skip_is_justified_and_still_needed() -> None:
    skips: dict[str, str] = {}
    for path in INFRA.rglob("*.bicep"):
        for check, reason in re.findall(r"//\s*checkov:skip=(CKV2?_AZURE_\d+):\s*(.*)", path.read_text()):
            assert len(reason) > 60, f"{check}: the skip needs a real reason, got {reason!r}"
            skips[check] = reason
    run = subprocess.run(  # noqa: S603 - checkov from this venv on the repository's own templates
        [
            sys.executable,
            "-m",
            "checkov.main",
            "-d",
            str(INFRA),
            "--framework",
            "bicep",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    results = json.loads(run.stdout)["results"]
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert not failed and run.returncode == 0, failed
    skipped = {c["check_id"] for c in results["skipped_checks"]}
    assert skipped == set(skips), f"stale skips: {set(skips) - skipped}"
    assert len(results["passed_checks"]) >= 20


def test_host_json_sets_no_log_category_that_opentelemetry_mode_ignores() -> None:
    """With telemetryMode OpenTelemetry the host does not emit Host.Results and Host.Aggregator (the Application
    Insights request and aggregate metrics of the classic mode), so a level for them is dead configuration."""
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    assert host["telemetryMode"] == "OpenTelemetry"
    levels = host["logging"]["logLevel"]
    assert not {"Host.Results", "Host.Aggregator"} & set(levels)
    assert levels["Function"] == "Information" and levels["default"] == "Warning"


def test_app_service_authentication_guards_the_app_when_an_app_registration_is_given() -> None:
    """The admin routes are anonymous at the host (the app guards them); with ADMIN_AUTH_CLIENT_ID the template turns
    on App Service authentication: sign-in required, this tenant's issuer, the registration's audiences, no token
    store. Without it, no authentication resource exists and the app keeps its routes closed (no ADMIN_API_KEY)."""
    template = load()
    auth = template.resources["functionAppAuth"]
    assert auth.type == "Microsoft.Web/sites/config" and auth.body["name"] == "authsettingsV2"
    assert template.render(auth.condition) == "!empty(adminAuthClientId)"
    assert template.params["adminAuthClientId"]["default"] == ""
    settings = auth.properties
    assert settings["platform"]["enabled"] is True
    assert settings["globalValidation"]["requireAuthentication"] is True
    assert settings["globalValidation"]["unauthenticatedClientAction"] == "RedirectToLoginPage"
    entra = settings["identityProviders"]["azureActiveDirectory"]
    assert entra["enabled"] is True and entra["registration"]["clientId"] == "adminAuthClientId"
    issuer = template.render(entra["registration"]["openIdIssuer"])
    assert "environment().authentication.loginEndpoint" in issuer and "tenant().tenantId" in issuer, issuer
    assert [template.render(a) for a in entra["validation"]["allowedAudiences"]] == [
        "'api://${adminAuthClientId}'",
        "adminAuthClientId",
    ]
    assert settings["login"]["tokenStore"]["enabled"] is False
    assert settings["httpSettings"]["requireHttps"] is True
    assert "ADMIN_API_KEY" not in app_settings(template), "a key in the template would be readable by every reader"
    site = template.resources["functionApp"]
    assert template.render(site.properties["keyVaultReferenceIdentity"]) == "appIdentity.id"
    main = parse(INFRA / "main.bicep")
    assert template.render(main.data["modules"]["resources"]["config"]["params"]["adminAuthClientId"]) == (
        "adminAuthClientId"
    )
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["adminAuthClientId"]["value"] == "${ADMIN_AUTH_CLIENT_ID=}"
