"""Settings: defaults, and a clear error naming the setting for anything missing or malformed."""

from __future__ import annotations

import base64

import pytest

from shared.errors import ConfigError
from shared.settings import Settings

STORAGE = "UseDevelopmentStorage=true"
KEY = base64.b64encode(b"k" * 32).decode()


def test_defaults_from_the_design_contract() -> None:
    s = Settings.from_environ({"AzureWebJobsStorage": STORAGE})
    assert s.state_connection == STORAGE
    assert s.registrations_queue == "webinar-registrations"
    assert s.pull_metrics_schedule == "0 */15 * * * *"
    assert s.admin_role == "Webinar.Admin"
    assert s.dataverse_auth == "default" and s.key_vault_auth == "default"
    assert not s.running_in_azure


def test_state_storage_connection_overrides_webjobs_storage() -> None:
    s = Settings.from_environ({"AzureWebJobsStorage": STORAGE, "STATE_STORAGE_CONNECTION": "other"})
    assert s.state_connection == "other"


def test_identity_based_storage_account() -> None:
    s = Settings.from_environ({"AzureWebJobsStorage__accountName": "contosostate"})
    assert s.state_connection is None
    assert s.state_account_url == "https://contosostate.table.core.windows.net"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "AzureWebJobsStorage"),
        ({"KEY_VAULT_URL": "https://kv.vault.azure.net"}, "CREDENTIALS_KEY_SECRET_NAME"),
        ({"KEY_VAULT_URL": "kv.vault.azure.net", "CREDENTIALS_KEY_SECRET_NAME": "k"}, "KEY_VAULT_URL"),
        ({"CREDENTIALS_KEY": "not base64!"}, "CREDENTIALS_KEY"),
        ({"CREDENTIALS_KEY": base64.b64encode(b"short").decode()}, "CREDENTIALS_KEY"),
        ({"ON24_BASE_URL": "http://on24.example.com"}, "ON24_BASE_URL"),
        ({"DATAVERSE_URL": "https://contoso.crm.dynamics.com", "DATAVERSE_AUTH": "none"}, "DATAVERSE_AUTH"),
        ({"DATAVERSE_AUTH": "maybe"}, "DATAVERSE_AUTH"),
        ({"DATAVERSE_URL": "https://management.azure.com"}, "DATAVERSE_URL"),
        ({"DATAVERSE_URL": "https://169.254.169.254"}, "DATAVERSE_URL"),
        ({"DATAVERSE_URL": "https://contoso.crm.dynamics.com:8443"}, "DATAVERSE_URL"),
        ({"DATAVERSE_URL": "https://contoso.crm.dynamics.com.evil.example"}, "DATAVERSE_URL"),
        ({"DATAVERSE_URL": "http://127.0.0.1:8080"}, "DATAVERSE_URL"),  # loopback only with DATAVERSE_AUTH=none
        ({"ADMIN_ORG_SCOPE": "sometimes"}, "ADMIN_ORG_SCOPE"),
        ({"ADMIN_API_KEY": "@Microsoft.KeyVault(VaultName=kv;SecretName=admin-api-key)"}, "ADMIN_API_KEY"),
        ({"ADMIN_API_KEY": "too-short"}, "ADMIN_API_KEY"),
        (
            {
                "KEY_VAULT_URL": "https://kv.vault.azure.net",
                "CREDENTIALS_KEY_SECRET_NAME": "k",
                "KEY_VAULT_AUTH": "none",
            },
            "KEY_VAULT_AUTH",
        ),
        ({"METRICS_GRACE_DAYS": "thirty"}, "METRICS_GRACE_DAYS"),
        ({"WEBSITE_AUTH_ENABLED": "perhaps"}, "WEBSITE_AUTH_ENABLED"),
        ({"STATE_TABLE_PREFIX": "has-dash"}, "STATE_TABLE_PREFIX"),
    ],
)
def test_bad_settings_name_the_setting(env: dict[str, str], named: str) -> None:
    base = {} if named == "AzureWebJobsStorage" else {"AzureWebJobsStorage": STORAGE}
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({**base, **env})
    assert named in str(caught.value)


def test_local_key_value_never_appears_in_errors_or_repr() -> None:
    s = Settings.from_environ({"AzureWebJobsStorage": STORAGE, "CREDENTIALS_KEY": KEY})
    assert KEY not in repr(s)
    bad = KEY[:-4] + "!!!!"
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({"AzureWebJobsStorage": STORAGE, "CREDENTIALS_KEY": bad})
    assert bad not in str(caught.value)


def test_admin_key_never_appears_in_errors_or_repr_and_blank_is_none() -> None:
    key = "Adm1n-key-4f5a-8c6d-2e1f0a9b8c7d"
    assert key not in repr(Settings.from_environ({"AzureWebJobsStorage": STORAGE, "ADMIN_API_KEY": key}))
    assert Settings.from_environ({"AzureWebJobsStorage": STORAGE, "ADMIN_API_KEY": "  "}).admin_api_key is None
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({"AzureWebJobsStorage": STORAGE, "ADMIN_API_KEY": key[:10]})
    assert key[:10] not in str(caught.value)


def test_sandbox_auth_none_is_accepted_for_loopback_urls() -> None:
    s = Settings.from_environ(
        {"AzureWebJobsStorage": STORAGE, "DATAVERSE_URL": "http://127.0.0.1:8080", "DATAVERSE_AUTH": "none"}
    )
    assert s.dataverse_url == "http://127.0.0.1:8080" and s.dataverse_auth == "none"


def test_dataverse_url_is_stored_as_its_canonical_origin() -> None:
    settings = Settings.from_environ(
        {"AzureWebJobsStorage": STORAGE, "DATAVERSE_URL": "https://Contoso.crm4.dynamics.com/"}
    )
    assert settings.dataverse_url == "https://contoso.crm4.dynamics.com"
    assert settings.admin_org_scope is False


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("PULL_METRICS_BUDGET_SECONDS", "1", "must be at least 5"),  # a lower bound only
        ("ON_DEMAND_PULL_BUDGET_SECONDS", "500", "must be between 1 and 100"),
        ("ON24_TIMEOUT_SECONDS", "0.01", "must be between 0.05 and 120"),
        ("REJECTED_RETENTION_DAYS", "0", "must be between 1 and 3650"),
    ],
)
def test_a_number_out_of_range_says_the_range_in_words(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({"AzureWebJobsStorage": STORAGE, name: value})
    assert str(caught.value) == f"setting {name} {says}", "a bound that does not exist is never printed as None"


def test_the_metrics_budget_must_fit_the_host_function_timeout() -> None:
    """host.json's functionTimeout is 10 minutes: a run needs 120 s after its budget, so 480 s is the most."""
    base = {"AzureWebJobsStorage": STORAGE}
    assert Settings.from_environ({**base, "PULL_METRICS_BUDGET_SECONDS": "480"}).metrics_budget_seconds == 480
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({**base, "PULL_METRICS_BUDGET_SECONDS": "600"})
    message = str(caught.value)
    assert message.startswith("setting PULL_METRICS_BUDGET_SECONDS must be at most 480: ")
    assert "functionTimeout (600 s)" in message and "host.json" in message


def test_the_app_setting_override_of_function_timeout_is_what_the_budget_is_checked_against() -> None:
    """``AzureFunctionsJobHost__functionTimeout`` overrides host.json, as the host does."""
    base = {"AzureWebJobsStorage": STORAGE, "PULL_METRICS_BUDGET_SECONDS": "600"}
    longer = Settings.from_environ({**base, "AzureFunctionsJobHost__functionTimeout": "00:30:00"})
    assert longer.metrics_budget_seconds == 600
    assert Settings.from_environ({**base, "AzureFunctionsJobHost__functionTimeout": "-1"}).metrics_budget_seconds == 600
    with pytest.raises(ConfigError, match=r"^setting PULL_METRICS_BUDGET_SECONDS must be at most 180: "):
        Settings.from_environ({**base, "AzureFunctionsJobHost__functionTimeout": "00:05:00"})
    with pytest.raises(ConfigError, match=r"^setting app setting AzureFunctionsJobHost__functionTimeout must be"):
        Settings.from_environ({**base, "AzureFunctionsJobHost__functionTimeout": "ten minutes"})


def test_the_default_budget_fits_the_deployed_host_json() -> None:
    from shared.hosting import HOST_JSON, function_timeout_seconds

    assert function_timeout_seconds({}) == 600 and HOST_JSON.is_file()
    assert Settings.from_environ({"AzureWebJobsStorage": STORAGE}).metrics_budget_seconds == 240
