"""The README's deployment guide stays what the template does: one command, the same roles, sources named."""

from __future__ import annotations

import re

from tests.infra.bicep import ROOT, load, role_assignments

README = (ROOT / "README.md").read_text(encoding="utf-8")
DEPLOY = README.split("\n## Deploying to Azure\n", 1)[1].split("\n## Operations\n", 1)[0]


def test_the_first_two_commands_are_demo_and_tests_and_the_test_command_scans_the_iac() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first_block
    commands = [line.split("#")[0].strip() for line in first_block.group(1).strip().splitlines()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "checkov" in first_block.group(1)
    test_sh = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    assert "checkov -d infra --framework bicep --skip-download" in test_sh


def test_deployment_is_one_command() -> None:
    first_block = re.search(r"```bash\n(.*?)```", DEPLOY, re.S)
    assert first_block and first_block.group(1).split("#")[0].strip() == "azd up"


def test_the_role_table_is_the_template_s_roles() -> None:
    template_roles = {role for _, role, _, principal in role_assignments() if principal == "appIdentity"}
    table_roles = set(re.findall(r"^\| [^|]+ \| ([A-Z][A-Za-z ]+?) \| ", DEPLOY, re.M)) - {"role"}
    assert table_roles == template_roles
    assert "~~Storage Queue Data Contributor~~" in DEPLOY, "the dropped over-grant is shown as not granted"


def test_the_dataverse_role_lists_the_tables_the_code_touches() -> None:
    rows = re.findall(r"^\s*\| [^|]*\(`(\w+)`\) \| ([^|]+) \|", DEPLOY, re.M)
    privileges = {table: {p.strip() for p in grant.split(",")} for table, grant in rows}
    assert privileges == {
        "contact": {"Read", "Append To"},
        "account": {"Read"},
        "msevtmgt_event": {"Read", "Append To"},
        "msevtmgt_eventregistration": {"Read", "Write", "Append To"},
        "msevtmgt_checkin": {"Create", "Write", "Append"},
    }


def test_each_fact_names_its_source() -> None:
    for page in (
        "azure/azure-functions/flex-consumption-plan#supported-language-stack-versions",
        "azure/azure-functions/python-313-changes",
        "azure/azure-functions/functions-scale#timeout",
        "azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations",
        "azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity",
        "azure/azure-functions/functions-bindings-service-bus#identity-based-connections",
        "azure/azure-functions/python-scale-performance-reference",
        "azure/azure-functions/opentelemetry-howto",
        "azure/azure-functions/function-keys-how-to",
        "power-platform/admin/manage-application-users",
        "power-platform/admin/how-record-access-determined",
        "power-apps/developer/data-platform/azure-integration",
    ):
        assert f"https://learn.microsoft.com/{page}" in DEPLOY, page
    bicep = load()
    assert bicep.params["queueLockDurationSeconds"].default == "120" and "lock duration 2 minutes" in DEPLOY
    assert bicep.params["maxDeliveryCount"].default == "10" and "max delivery count 10" in DEPLOY
    assert "pypi.org/project/azure-functions/1.26.0" in README and '"node": ">=22"' in README
