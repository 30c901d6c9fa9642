"""Typed app settings, read once from the environment.

The names are the user-facing contract listed in the README and in local.settings.sample.json. A missing
or malformed setting raises ``ConfigError`` naming the setting, never its value (some hold secrets).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from shared.errors import ConfigError

DEFAULT_QUEUE = "webinar-registrations"
DEFAULT_SCHEDULE = "0 */15 * * * *"
DEFAULT_RETRY_PARKED_SCHEDULE = "0 * * * * *"
DEFAULT_ADMIN_ROLE = "Webinar.Admin"
DEFAULT_TABLE_PREFIX = "webinar"
DEFAULT_KEY_REFRESH_SECONDS = 300.0

AuthMode = Literal["default", "none"]

# ---- where Dataverse may be: the host allowlist -------------------------------------------------------------------
# A Dataverse org URL is ``https://<org>.<suffix>`` with exactly one label before one of these suffixes. Tokens of
# the app's identity are sent only there (``shared.dataverse.DataverseClient`` checks again before asking for one).
# Sources:
# - ``crm.dynamics.com`` and ``crm<N>.dynamics.com``: the commercial regions (NAM crm, SAM crm2, CAN crm3, EUR crm4,
#   APJ crm5, OCE crm6, JPN crm7, IND crm8, GBR crm11, FRA crm12, ZAF crm14, UAE crm15, GER crm16, CHE crm17, ...)
#   and US Government GCC (crm9): Microsoft's maintenance-window table, MicrosoftDocs/power-platform
#   ``power-platform/admin/policies-communications.md``, and the discovery server list in
#   microsoft/PowerPlatform-DataverseServiceClient ``src/GeneralTools/DataverseClient/Client/Model/DiscoveryServers.cs``
#   (which also lists crm19-crm21). New regions get new numbers, so any ``crm<1-99>`` is accepted.
# - ``crm.microsoftdynamics.us``: US Government GCC High (both sources above).
# - ``crm.appsplatform.us``: US Government DoD (DiscoveryServers.cs, "US Gov DoD").
# - ``crm.dynamics.cn``: China, operated by 21Vianet (both sources above).
# Not accepted: ``crm.microsoftdynamics.de`` (the German sovereign cloud, closed in 2021), and the portal's
# ``<org>.api.crm.dynamics.com`` form (enter the org URL ``<org>.crm.dynamics.com`` instead).
DATAVERSE_HOST_SUFFIXES: tuple[str, ...] = (
    "crm.dynamics.com",
    "crm<1-99>.dynamics.com",
    "crm.microsoftdynamics.us",
    "crm.appsplatform.us",
    "crm.dynamics.cn",
)
_ORG_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DATAVERSE_HOST = re.compile(
    rf"{_ORG_LABEL}\.(?:crm(?:[1-9][0-9]?)?\.dynamics\.com|crm\.microsoftdynamics\.us|crm\.appsplatform\.us"
    r"|crm\.dynamics\.cn)"
)
# The whole URL: a scheme, a host of DNS characters, at most a trailing slash. No userinfo, port, path, query,
# fragment, whitespace or percent-encoding can get through, whatever a URL parser would make of them.
_HTTPS_ORIGIN = re.compile(r"(?i:https)://([A-Za-z0-9.-]{1,253})/?")
_LOOPBACK_ORIGIN = re.compile(r"(?i:https?)://(127\.0\.0\.1|localhost|\[::1\])(?::([0-9]{1,5}))?/?")
DATAVERSE_URL_RULE = (
    "must be the https origin of a Dataverse org on an allowlisted host, e.g. https://contoso.crm.dynamics.com "
    "(hosts: *." + ", *.".join(DATAVERSE_HOST_SUFFIXES) + "; no user, port, path or IP address)"
)


def dataverse_origin(url: str, *, sandbox: bool = False) -> str:
    """The canonical origin (``https://<host>``, lower case) of a Dataverse org URL on the allowlist.

    Args:
        url: what an admin or a setting gave, e.g. ``https://Contoso.crm4.dynamics.com/``.
        sandbox: also accept a plain-http or https loopback origin with a port (``DATAVERSE_AUTH=none``: the
            stand-ins, where no token is ever sent).

    Raises:
        ValueError: anything else; the message states the rule, never echoing the value.
    """
    if not isinstance(url, str):
        raise ValueError(DATAVERSE_URL_RULE)
    if sandbox:
        loopback = _LOOPBACK_ORIGIN.fullmatch(url)
        if loopback and (loopback.group(2) is None or 0 < int(loopback.group(2)) < 65536):
            return url.rstrip("/").lower()
    match = _HTTPS_ORIGIN.fullmatch(url)
    host = match.group(1).lower() if match else ""
    if not _DATAVERSE_HOST.fullmatch(host):
        suffix = " (or a loopback URL in the sandbox)" if sandbox else ""
        raise ValueError(DATAVERSE_URL_RULE + suffix)
    return f"https://{host}"


def is_dataverse_host(url: str) -> bool:
    """True when ``url`` is the https origin of an allowlisted Dataverse host (what a token may be sent to)."""
    try:
        return dataverse_origin(url) == url.rstrip("/").lower()
    except ValueError:
        return False


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
    retry_parked_schedule: str = DEFAULT_RETRY_PARKED_SCHEDULE
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
    admin_org_scope: bool = False
    """ADMIN_ORG_SCOPE: also accept the app role ``<ADMIN_ROLE>.<orgId>`` for that one org (needs App Service auth)."""
    metrics_grace_days: int = 30
    metrics_lookback_hours: int = 48
    metrics_budget_seconds: float = 240.0
    on_demand_pull_budget_seconds: float = 60.0
    """ON_DEMAND_PULL_BUDGET_SECONDS: how long ``POST .../pull`` pulls before answering 202 (at most 100: with a
    page call (55 s) and a wait for the shared ON24 limit (65 s) the answer stays inside the 230 s HTTP limit)."""
    retry_budget_seconds: float = 15.0
    on24_timeout_seconds: float = 10.0
    registration_lease_seconds: float = 90.0
    registration_lease_margin_seconds: float = 5.0
    registration_lease_wait_seconds: float = 5.0
    park_after_deliveries: int = 3
    park_backoff_base_seconds: float = 60.0
    park_backoff_max_seconds: float = 1800.0
    retry_parked_budget_seconds: float = 45.0
    on24_attendee_calls_per_minute: int = 100
    rejected_retention_days: int = 30
    """REJECTED_RETENTION_DAYS: how long an unparseable queue message is kept whole before it is deleted."""

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
        dataverse_auth = env.auth_mode("DATAVERSE_AUTH")
        dataverse_url = env.dataverse_url("DATAVERSE_URL", sandbox=dataverse_auth == "none")
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
            retry_parked_schedule=env.text("RETRY_PARKED_SCHEDULE") or DEFAULT_RETRY_PARKED_SCHEDULE,
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
            admin_org_scope=env.flag("ADMIN_ORG_SCOPE"),
            metrics_grace_days=int(env.number("METRICS_GRACE_DAYS", 30, low=0, high=3650)),
            metrics_lookback_hours=int(env.number("METRICS_LOOKBACK_HOURS", 48, low=0, high=24 * 180)),
            metrics_budget_seconds=env.number("PULL_METRICS_BUDGET_SECONDS", 240.0, low=5),
            on_demand_pull_budget_seconds=env.number("ON_DEMAND_PULL_BUDGET_SECONDS", 60.0, low=1, high=100),
            retry_budget_seconds=retry_budget,
            on24_timeout_seconds=on24_timeout,
            registration_lease_seconds=lease,
            registration_lease_margin_seconds=margin,
            registration_lease_wait_seconds=env.number("REGISTRATION_LEASE_WAIT_SECONDS", 5.0, low=0, high=120),
            park_after_deliveries=int(env.number("PARK_AFTER_DELIVERIES", 3, low=1, high=100)),
            park_backoff_base_seconds=env.number("PARK_BACKOFF_BASE_SECONDS", 60.0, low=1, high=86400),
            park_backoff_max_seconds=env.number("PARK_BACKOFF_MAX_SECONDS", 1800.0, low=1, high=86400),
            retry_parked_budget_seconds=env.number("RETRY_PARKED_BUDGET_SECONDS", 45.0, low=1, high=3600),
            on24_attendee_calls_per_minute=int(env.number("ON24_ATTENDEE_CALLS_PER_MINUTE", 100, low=1, high=100000)),
            rejected_retention_days=int(env.number("REJECTED_RETENTION_DAYS", 30, low=1, high=3650)),
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

    def dataverse_url(self, name: str, *, sandbox: bool) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return dataverse_origin(value, sandbox=sandbox)
        except ValueError as exc:
            raise ConfigError(f"setting {name} {exc}") from None

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
