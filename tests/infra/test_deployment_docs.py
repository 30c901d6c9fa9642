"""The deployment guide (docs/deploy.md) stays what the template does: one command, the same roles, sources named."""

from __future__ import annotations

import re

from tests.infra.bicep import ROOT, load, role_assignments

README = (ROOT / "README.md").read_text(encoding="utf-8")
DEPLOY = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
DEVELOPMENT = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")


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
        "azure/app-service/overview-authentication-authorization",
        "azure/app-service/app-service-key-vault-references",
        "power-platform/admin/manage-application-users",
        "power-platform/admin/how-record-access-determined",
        "power-apps/developer/data-platform/azure-integration",
    ):
        assert f"https://learn.microsoft.com/{page}" in DEPLOY, page
    bicep = load()
    assert bicep.params["queueLockDurationSeconds"]["default"] == 120 and "lock duration 2 minutes" in DEPLOY
    assert bicep.params["maxDeliveryCount"]["default"] == 10 and "max delivery count 10" in DEPLOY
    assert "pypi.org/project/azure-functions/1.26.0" in DEVELOPMENT and '"node": ">=22"' in DEVELOPMENT


def test_the_dataverse_steps_register_every_step_the_app_parses_in_one_list() -> None:
    """Erasure needs the Delete steps (registration, and contact with an emailaddress1 pre-image): an admin who
    follows the guide must register them, so the one table lists every (message, entity) the parser accepts."""
    from shared.messages.dataverse import CONTACT_ENTITY, REGISTRATION_ENTITY

    steps = set(re.findall(r"^\s*\| `(Create|Update|Delete)` \| `(\w+)` \|", DEPLOY, re.M))
    assert steps == {
        ("Create", REGISTRATION_ENTITY),
        ("Update", REGISTRATION_ENTITY),
        ("Delete", REGISTRATION_ENTITY),
        ("Delete", CONTACT_ENTITY),
    }
    contact_row = next(
        line for line in DEPLOY.splitlines() if line.strip().startswith(f"| `Delete` | `{CONTACT_ENTITY}`")
    )
    assert "pre-image" in contact_row and "emailaddress1" in contact_row


def test_the_namespace_root_key_and_the_queue_trust_boundary_are_documented() -> None:
    keys = DEPLOY.split("\n## Service Bus keys and the queue's trust boundary\n", 1)[1]
    assert "RootManageSharedAccessKey" in keys and "listKeys" in keys
    assert "--name RootManageSharedAccessKey --key PrimaryKey" in keys, "how to rotate it"
    assert "any holder write messages for any org of this deployment" in keys
    assert "one namespace" in keys and "per owner" in keys
    template = (ROOT / "infra" / "resources.bicep").read_text(encoding="utf-8")
    assert "RootManageSharedAccessKey" in template, "the template says the rule exists and is not used"


def test_the_opentelemetry_facts_cite_pages_that_exist_and_no_false_portal_claim() -> None:
    for page in (
        "azure/azure-functions/configure-monitoring#require-microsoft-entra-authentication",
        "azure/azure-monitor/app/azure-ad-authentication",
    ):
        assert f"https://learn.microsoft.com/{page}" in DEPLOY, page
    assert "shows no log stream or recent invocations" not in README + DEPLOY


def test_key_generation_leaves_no_standing_role_and_says_why() -> None:
    assert "KEYGEN_ROLE_ASSIGNMENT_ID" in DEPLOY and "GENERATE_CREDENTIALS_KEY=false" in DEPLOY
    assert "az role assignment delete --ids" in DEPLOY


def test_security_policy_and_license_are_there_and_say_what_they_must() -> None:
    security = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    for heading in ("## Reporting a vulnerability", "## What the app stores", "## Trust boundaries"):
        assert heading in security, heading
    assert "any org of the" in security and "RootManageSharedAccessKey" in security
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License\n") and "WITHOUT WARRANTY OF ANY KIND" in license_text
    assert "SECURITY.md" in README and "LICENSE" in README
