"""Typed app settings, read once from the environment.

The names are the user-facing contract listed in the README and in local.settings.sample.json. A missing
or malformed setting raises ``ConfigError`` naming the setting, never its value (some hold secrets).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from shared.errors import ConfigError

DEFAULT_QUEUE = "webinar-registrations"
DEFAULT_SCHEDULE = "0 */15 * * * *"
DEFAULT_ADMIN_ROLE = "Webinar.Admin"
DEFAULT_TABLE_PREFIX = "webinar"
DEFAULT_KEY_REFRESH_SECONDS = 300.0

AuthMode = Literal["default", "none"]


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from its environment. Build it with ``Settings.from_environ``."""

    state_connection: str | None
    """Table Storage connection string: STATE_STORAGE_CONNECTION, else AzureWebJobsStorage."""
    state_account_url: str | None
    """Table endpoint for identity-based access (AzureWebJobsStorage__accountName), when no connection string."""
    state_blob_url: str | None = None
    """Blob endpoint for identity-based access (large rejected message bodies), when no connection string."""
    table_prefix: str = DEFAULT_TABLE_PREFIX
    registrations_queue: str = DEFAULT_QUEUE
    pull_metrics_schedule: str = DEFAULT_SCHEDULE
    key_vault_url: str | None = None
    credentials_key_secret_name: str | None = None
    key_vault_auth: AuthMode = "default"
    key_refresh_seconds: float = DEFAULT_KEY_REFRESH_SECONDS
    credentials_key: SecretStr | None = field(default=None, repr=False)
    allow_local_key_in_azure: bool = False
    running_in_azure: bool = False
    on24_base_url: str | None = None
    dataverse_url: str | None = None
    dataverse_auth: AuthMode = "default"
    admin_role: str = DEFAULT_ADMIN_ROLE
    app_service_auth_enabled: bool = False
    metrics_grace_days: int = 30
    metrics_lookback_hours: int = 48
    metrics_budget_seconds: float = 240.0
    retry_budget_seconds: float = 15.0
    on24_timeout_seconds: float = 10.0
    registration_lease_seconds: float = 90.0
    registration_lease_margin_seconds: float = 5.0
    registration_lease_wait_seconds: float = 5.0
    on24_attendee_calls_per_minute: int = 100

    @property
    def on24_call_seconds(self) -> float:
        """The longest one ON24 call can take: retries within the budget, then one more attempt, whose pool
        wait, connect, send and read are each bounded by the timeout."""
        return self.retry_budget_seconds + 4 * self.on24_timeout_seconds

    @property
    def on24_linger_seconds(self) -> float:
        """How long after we stop waiting an unanswered ON24 request is assumed to possibly still be applied."""
        return self.on24_timeout_seconds

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings.

        Args:
            environ: the environment to read; ``os.environ`` when omitted.

        Raises:
            ConfigError: a setting is missing or malformed; the message names it.
        """
        env = _Env(os.environ if environ is None else environ)
        state_connection = env.text("STATE_STORAGE_CONNECTION") or env.text("AzureWebJobsStorage")
        account = env.text("AzureWebJobsStorage__accountName")
        state_account_url = f"https://{account}.table.core.windows.net" if account else None
        state_account_url = env.url("STATE_STORAGE_TABLE_ENDPOINT") or state_account_url
        state_blob_url = env.url("STATE_STORAGE_BLOB_ENDPOINT") or (
            f"https://{account}.blob.core.windows.net" if account else None
        )
        if not state_connection and not state_account_url:
            raise ConfigError(
                "setting AzureWebJobsStorage (or STATE_STORAGE_CONNECTION) is missing: "
                "the integration keeps its credentials and ledger in Table Storage"
            )
        key_vault_url = env.url("KEY_VAULT_URL")
        secret_name = env.text("CREDENTIALS_KEY_SECRET_NAME")
        if key_vault_url and not secret_name:
            raise ConfigError("setting CREDENTIALS_KEY_SECRET_NAME is missing: KEY_VAULT_URL is set without it")
        key_vault_auth = env.auth_mode("KEY_VAULT_AUTH")
        if key_vault_url and key_vault_auth == "none" and not is_loopback_url(key_vault_url):
            raise ConfigError("setting KEY_VAULT_AUTH=none is accepted only for a loopback KEY_VAULT_URL (sandbox)")
        dataverse_url = env.url("DATAVERSE_URL")
        dataverse_auth = env.auth_mode("DATAVERSE_AUTH")
        if dataverse_url and dataverse_auth == "none" and not is_loopback_url(dataverse_url):
            raise ConfigError("setting DATAVERSE_AUTH=none is accepted only for a loopback DATAVERSE_URL (sandbox)")
        retry_budget = env.number("RETRY_BUDGET_SECONDS", 15.0, low=0, high=600)
        on24_timeout = env.number("ON24_TIMEOUT_SECONDS", 10.0, low=0.05, high=120)
        lease = env.number("REGISTRATION_LEASE_SECONDS", 90.0, low=0.5, high=3600)
        margin = env.number("REGISTRATION_LEASE_MARGIN_SECONDS", 5.0, low=0, high=600)
        shortest = retry_budget + 5 * on24_timeout + margin
        if lease < shortest:
            raise ConfigError(
                f"setting REGISTRATION_LEASE_SECONDS must be at least {shortest:g}: RETRY_BUDGET_SECONDS plus "
                "5 x ON24_TIMEOUT_SECONDS (one ON24 call and the time an unanswered request may still land) "
                "plus REGISTRATION_LEASE_MARGIN_SECONDS"
            )
        table_prefix = env.text("STATE_TABLE_PREFIX") or DEFAULT_TABLE_PREFIX
        if not (table_prefix.isalnum() and table_prefix[0].isalpha() and len(table_prefix) <= 40):
            raise ConfigError("setting STATE_TABLE_PREFIX must be 1-40 letters and digits, starting with a letter")
        return cls(
            state_connection=state_connection,
            state_account_url=None if state_connection else state_account_url,
            state_blob_url=None if state_connection else state_blob_url,
            table_prefix=table_prefix,
            registrations_queue=env.text("REGISTRATIONS_QUEUE") or DEFAULT_QUEUE,
            pull_metrics_schedule=env.text("PULL_METRICS_SCHEDULE") or DEFAULT_SCHEDULE,
            key_vault_url=key_vault_url,
            credentials_key_secret_name=secret_name,
            key_vault_auth=key_vault_auth,
            key_refresh_seconds=env.number("CREDENTIALS_KEY_REFRESH_SECONDS", DEFAULT_KEY_REFRESH_SECONDS, low=1),
            credentials_key=env.local_key("CREDENTIALS_KEY"),
            allow_local_key_in_azure=env.flag("ALLOW_LOCAL_CREDENTIALS_KEY"),
            running_in_azure=bool(env.text("WEBSITE_INSTANCE_ID")),
            on24_base_url=env.url("ON24_BASE_URL"),
            dataverse_url=dataverse_url,
            dataverse_auth=dataverse_auth,
            admin_role=env.text("ADMIN_ROLE") or DEFAULT_ADMIN_ROLE,
            app_service_auth_enabled=env.flag("WEBSITE_AUTH_ENABLED"),
            metrics_grace_days=int(env.number("METRICS_GRACE_DAYS", 30, low=0, high=3650)),
            metrics_lookback_hours=int(env.number("METRICS_LOOKBACK_HOURS", 48, low=0, high=24 * 180)),
            metrics_budget_seconds=env.number("PULL_METRICS_BUDGET_SECONDS", 240.0, low=5),
            retry_budget_seconds=retry_budget,
            on24_timeout_seconds=on24_timeout,
            registration_lease_seconds=lease,
            registration_lease_margin_seconds=margin,
            registration_lease_wait_seconds=env.number("REGISTRATION_LEASE_WAIT_SECONDS", 5.0, low=0, high=120),
            on24_attendee_calls_per_minute=int(env.number("ON24_ATTENDEE_CALLS_PER_MINUTE", 100, low=1, high=100000)),
        )


def is_loopback_url(url: str) -> bool:
    """True for URLs whose host is a loopback address or ``localhost`` (the sandbox stand-ins)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Env:
    """Typed readers over a string mapping; every error names the setting, never its value."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def flag(self, name: str) -> bool:
        value = (self.text(name) or "false").lower()
        if value in {"1", "true", "yes"}:
            return True
        if value in {"0", "false", "no"}:
            return False
        raise ConfigError(f"setting {name} must be true or false")

    def url(self, name: str) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError(f"setting {name} must be an absolute http(s) URL")
        if parts.scheme == "http" and not is_loopback_url(value):
            raise ConfigError(f"setting {name} must use https (plain http is accepted only for loopback stand-ins)")
        return value.rstrip("/")

    def number(self, name: str, default: float, *, low: float | None = None, high: float | None = None) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"setting {name} must be a number") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"setting {name} must be between {low} and {high}")
        return value

    def auth_mode(self, name: str) -> AuthMode:
        value = (self.text(name) or "default").lower()
        if value == "default":
            return "default"
        if value == "none":
            return "none"
        raise ConfigError(f"setting {name} must be 'default' or 'none'")

    def local_key(self, name: str) -> SecretStr | None:
        raw = self.text(name)
        if raw is None:
            return None
        try:
            key = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"setting {name} must be base64 (32 random bytes)") from None
        if len(key) != 32:
            raise ConfigError(f"setting {name} must decode to exactly 32 bytes (AES-256), got {len(key)}")
        return SecretStr(raw)
