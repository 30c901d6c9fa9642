"""Typed app settings, read once from the environment (pydantic-settings).

The names are the user-facing contract listed in the README and in local.settings.sample.json: each field's
alias is the app setting's name, and its default is stated here once. A missing or malformed setting raises
``ConfigError`` naming the setting, never its value (some hold secrets).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from shared.dataverse_hosts import dataverse_origin, is_loopback_url
from shared.errors import ConfigError
from shared.hosting import metrics_budget_problem

REGISTRATIONS_QUEUE = "webinar-registrations"
"""The queue's name: a ``%REGISTRATIONS_QUEUE%`` binding expression the host resolves; ``tools.replay`` sends to it."""

AuthMode = Literal["default", "none"]


# ---- value rules: each says what follows "setting <NAME> " in the ConfigError ------------------------------------
def _problem(text: str) -> PydanticCustomError:
    return PydanticCustomError("setting", text)


def _number(low: float | None = None, high: float | None = None, *, whole: bool = False) -> BeforeValidator:
    """A number within [low, high]; ``whole``: its integer part (an int setting given ``30.5`` reads 30)."""

    def check(value: Any) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _problem("must be a number") from None
        if low is not None and high is not None and not low <= number <= high:
            raise _problem(f"must be between {low:g} and {high:g}")
        if low is not None and number < low:
            raise _problem(f"must be at least {low:g}")
        if high is not None and number > high:
            raise _problem(f"must be at most {high:g}")
        return int(number) if whole else number

    return BeforeValidator(check)


def _flag(value: Any) -> bool:
    text = str(value).lower()
    if text in {"1", "true", "yes"}:
        return True
    if text in {"0", "false", "no"}:
        return False
    raise _problem("must be true or false")


def _url(value: Any) -> str:
    text = str(value)
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise _problem("must be an absolute http(s) URL")
    if parts.scheme == "http" and not is_loopback_url(text):
        raise _problem("must use https (plain http is accepted only for loopback stand-ins)")
    return text.rstrip("/")


def _auth_mode(value: Any) -> str:
    text = str(value).lower()
    if text not in ("default", "none"):
        raise _problem("must be 'default' or 'none'")
    return text


def _local_key(value: Any) -> SecretStr:
    try:
        key = base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise _problem("must be base64 (32 random bytes)") from None
    if len(key) != 32:
        raise _problem(f"must decode to exactly 32 bytes (AES-256), got {len(key)}")
    return SecretStr(str(value))


def _admin_key(value: Any) -> SecretStr | None:
    """An empty value is no key; an unresolved Key Vault reference (App Service leaves the reference text in place
    when it cannot read the secret) is refused rather than becoming a key anyone could read in the template."""
    text = str(value).strip()
    if not text:
        return None
    if text.startswith("@Microsoft.KeyVault("):
        raise _problem("is a Key Vault reference the platform could not resolve (check the app's access to the secret)")
    if len(text) < 16:
        raise _problem("must be at least 16 characters (e.g. `openssl rand -base64 32`)")
    return SecretStr(text)


def _table_prefix(value: Any) -> str:
    text = str(value)
    if not (text.isalnum() and text[0].isalpha() and len(text) <= 40):
        raise _problem("must be 1-40 letters and digits, starting with a letter")
    return text


Flag = Annotated[bool, BeforeValidator(_flag)]
Url = Annotated[str | None, BeforeValidator(_url)]
Auth = Annotated[AuthMode, BeforeValidator(_auth_mode)]


class Settings(BaseSettings):
    """Everything the app reads from its environment: ``Settings.from_environ()`` (the process environment, read
    by pydantic-settings) or ``Settings.from_environ(mapping)``. Each field's alias is the setting's name."""

    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", frozen=True, validate_default=False, hide_input_in_errors=True
    )

    # ---- state storage
    state_storage_connection: str | None = Field(None, validation_alias="STATE_STORAGE_CONNECTION", repr=False)
    webjobs_storage: str | None = Field(None, validation_alias="AzureWebJobsStorage", repr=False)
    storage_account: str | None = Field(None, validation_alias="AzureWebJobsStorage__accountName", repr=False)
    """Identity-based storage: the state tables at ``https://<name>.table.core.windows.net``."""
    state_table_endpoint: Url = Field(None, validation_alias="STATE_STORAGE_TABLE_ENDPOINT", repr=False)
    state_blob_endpoint: Url = Field(None, validation_alias="STATE_STORAGE_BLOB_ENDPOINT", repr=False)
    table_prefix: Annotated[str, BeforeValidator(_table_prefix)] = Field(
        "webinar", validation_alias="STATE_TABLE_PREFIX"
    )
    running_in_azure: Annotated[bool, BeforeValidator(bool)] = Field(False, validation_alias="WEBSITE_INSTANCE_ID")
    """Azure sets WEBSITE_INSTANCE_ID on every instance (a local key is refused there)."""
    # ---- binding expressions: the host resolves them from app settings; these defaults never reach a trigger
    registrations_queue: str = Field(REGISTRATIONS_QUEUE, validation_alias="REGISTRATIONS_QUEUE")
    pull_metrics_schedule: str = Field("0 */15 * * * *", validation_alias="PULL_METRICS_SCHEDULE")
    retry_parked_schedule: str = Field("0 * * * * *", validation_alias="RETRY_PARKED_SCHEDULE")
    # ---- the credentials key
    key_vault_url: Url = Field(None, validation_alias="KEY_VAULT_URL")
    credentials_key_secret_name: str | None = Field(None, validation_alias="CREDENTIALS_KEY_SECRET_NAME")
    key_vault_auth: Auth = Field("default", validation_alias="KEY_VAULT_AUTH")
    key_refresh_seconds: Annotated[float, _number(1)] = Field(300.0, validation_alias="CREDENTIALS_KEY_REFRESH_SECONDS")
    credentials_key: Annotated[SecretStr | None, BeforeValidator(_local_key)] = Field(
        None, validation_alias="CREDENTIALS_KEY", repr=False
    )
    allow_local_key_in_azure: Flag = Field(False, validation_alias="ALLOW_LOCAL_CREDENTIALS_KEY")
    # ---- the services
    on24_base_url: Url = Field(None, validation_alias="ON24_BASE_URL")
    dataverse_auth: Auth = Field("default", validation_alias="DATAVERSE_AUTH")
    dataverse_url: str | None = Field(None, validation_alias="DATAVERSE_URL")
    """The https origin of an allowlisted Dataverse host; a loopback URL only with DATAVERSE_AUTH=none."""
    # ---- admin routes
    admin_role: str = Field("Webinar.Admin", validation_alias="ADMIN_ROLE")
    app_service_auth_enabled: Flag = Field(False, validation_alias="WEBSITE_AUTH_ENABLED")
    admin_org_scope: Flag = Field(False, validation_alias="ADMIN_ORG_SCOPE")
    admin_api_key: Annotated[SecretStr | None, BeforeValidator(_admin_key)] = Field(
        None, validation_alias="ADMIN_API_KEY", repr=False
    )
    """Without App Service authentication, the key every admin call must send (``shared.entrypoints.admin_auth``)."""
    """Also accept the app role ``<ADMIN_ROLE>.<orgId>`` for that one org (needs App Service auth)."""
    # ---- metrics
    metrics_grace_days: Annotated[int, _number(0, 3650, whole=True)] = Field(30, validation_alias="METRICS_GRACE_DAYS")
    metrics_lookback_hours: Annotated[int, _number(0, 24 * 180, whole=True)] = Field(
        48, validation_alias="METRICS_LOOKBACK_HOURS"
    )
    metrics_budget_seconds: Annotated[float, _number(5)] = Field(240.0, validation_alias="PULL_METRICS_BUDGET_SECONDS")
    on_demand_pull_budget_seconds: Annotated[float, _number(1, 100)] = Field(
        60.0, validation_alias="ON_DEMAND_PULL_BUDGET_SECONDS"
    )
    """How long ``POST .../pull`` pulls before answering 202 (at most 100: with a page call (55 s) and a wait for
    the shared ON24 limit (65 s) the answer stays inside the 230 s HTTP limit)."""
    on24_attendee_calls_per_minute: Annotated[int, _number(1, 100000, whole=True)] = Field(
        100, validation_alias="ON24_ATTENDEE_CALLS_PER_MINUTE"
    )
    reconcile_repairs_per_minute: Annotated[int, _number(1, 1000, whole=True)] = Field(
        60, validation_alias="RECONCILE_REPAIRS_PER_MINUTE"
    )
    on24_registrant_calls_per_minute: Annotated[int, _number(1, 100000, whole=True)] = Field(
        980, validation_alias="ON24_REGISTRANT_CALLS_PER_MINUTE"
    )
    """Registrant creates, updates and soft deletes per ON24 account and window, across every instance (ON24
    allows 1,000 a minute: the rest is headroom for calls that reach ON24 a little late)."""
    on24_forget_calls_per_minute: Annotated[int, _number(1, 100000, whole=True)] = Field(
        28, validation_alias="ON24_FORGET_CALLS_PER_MINUTE"
    )
    """Forget calls per ON24 account and window, across every instance (ON24 allows 30 a minute)."""
    on24_pace_window_seconds: Annotated[float, _number(1, 3600)] = Field(
        60.0, validation_alias="ON24_PACE_WINDOW_SECONDS"
    )
    """The window those two limits count in: ON24's minute; shorter only for a benchmark on a scaled clock."""
    registration_pace_wait_seconds: Annotated[float, _number(0, 60)] = Field(
        10.0, validation_alias="REGISTRATION_PACE_WAIT_SECONDS"
    )
    """How long a delivery waits for its ON24 slot before it parks the message until then (well inside the
    queue's lock, which the host renews)."""
    on24_attendee_date_filter: Literal["lastActivity", "default"] = Field(
        "lastActivity", validation_alias="ON24_ATTENDEE_DATE_FILTER"
    )
    """What ON24 filters a pull's window on: ``lastActivity`` sends ``dateFilterMode=lastActivity`` (documented for
    the attendee list; the pull assumes it); ``default`` sends none (ON24's default, undocumented; uncertain)."""
    # ---- registration timing
    retry_budget_seconds: Annotated[float, _number(0, 600)] = Field(15.0, validation_alias="RETRY_BUDGET_SECONDS")
    on24_timeout_seconds: Annotated[float, _number(0.05, 120)] = Field(10.0, validation_alias="ON24_TIMEOUT_SECONDS")
    registration_lease_seconds: Annotated[float, _number(0.5, 3600)] = Field(
        90.0, validation_alias="REGISTRATION_LEASE_SECONDS"
    )
    registration_lease_margin_seconds: Annotated[float, _number(0, 600)] = Field(
        5.0, validation_alias="REGISTRATION_LEASE_MARGIN_SECONDS"
    )
    registration_lease_wait_seconds: Annotated[float, _number(0, 120)] = Field(
        5.0, validation_alias="REGISTRATION_LEASE_WAIT_SECONDS"
    )
    # ---- parking
    park_after_deliveries: Annotated[int, _number(1, 100, whole=True)] = Field(
        3, validation_alias="PARK_AFTER_DELIVERIES"
    )
    park_backoff_base_seconds: Annotated[float, _number(1, 86400)] = Field(
        60.0, validation_alias="PARK_BACKOFF_BASE_SECONDS"
    )
    park_backoff_max_seconds: Annotated[float, _number(1, 86400)] = Field(
        1800.0, validation_alias="PARK_BACKOFF_MAX_SECONDS"
    )
    retry_parked_budget_seconds: Annotated[float, _number(1, 3600)] = Field(
        45.0, validation_alias="RETRY_PARKED_BUDGET_SECONDS"
    )
    # ---- privacy
    rejected_retention_days: Annotated[int, _number(1, 3650, whole=True)] = Field(
        30, validation_alias="REJECTED_RETENTION_DAYS"
    )
    """How long an unparseable queue message is kept whole before it is deleted."""

    @property
    def state_connection(self) -> str | None:
        """Table Storage connection string: STATE_STORAGE_CONNECTION, else AzureWebJobsStorage."""
        return self.state_storage_connection or self.webjobs_storage

    @property
    def state_account_url(self) -> str | None:
        """Table endpoint for identity-based access, when no connection string is set."""
        if self.state_connection:
            return None
        account = f"https://{self.storage_account}.table.core.windows.net" if self.storage_account else None
        return self.state_table_endpoint or account

    @property
    def state_blob_url(self) -> str | None:
        """Blob endpoint for identity-based access (large rejected message bodies), when no connection string."""
        if self.state_connection:
            return None
        account = f"https://{self.storage_account}.blob.core.windows.net" if self.storage_account else None
        return self.state_blob_endpoint or account

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
        """Read and validate ``environ`` (the process environment when omitted).

        Raises:
            ConfigError: a setting is missing or malformed; the message names it.
        """
        token = _ENVIRON.set(environ)
        try:
            return cls()
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            raise ConfigError(f"setting {_setting_name(first['loc'])} {first['msg']}") from None
        finally:
            _ENVIRON.reset(token)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the environment (no .env or secrets files): the app settings are environment variables."""
        return (init_settings, _Environment(settings_cls))

    @field_validator("dataverse_url", mode="before")
    @classmethod
    def _dataverse_origin(cls, value: Any, info: ValidationInfo) -> Any:
        try:
            return dataverse_origin(str(value), sandbox=info.data.get("dataverse_auth") == "none")
        except ValueError as exc:
            raise _problem(str(exc)) from None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """The rules between settings (each message names the setting to fix)."""
        if not self.state_connection and not self.state_account_url:
            raise ConfigError(
                "setting AzureWebJobsStorage (or STATE_STORAGE_CONNECTION) is missing: "
                "the integration keeps its credentials and ledger in Table Storage"
            )
        if self.key_vault_url and not self.credentials_key_secret_name:
            raise ConfigError("setting CREDENTIALS_KEY_SECRET_NAME is missing: KEY_VAULT_URL is set without it")
        if self.key_vault_url and self.key_vault_auth == "none" and not is_loopback_url(self.key_vault_url):
            raise ConfigError("setting KEY_VAULT_AUTH=none is accepted only for a loopback KEY_VAULT_URL (sandbox)")
        if self.dataverse_url and self.dataverse_auth == "none" and not is_loopback_url(self.dataverse_url):
            raise ConfigError("setting DATAVERSE_AUTH=none is accepted only for a loopback DATAVERSE_URL (sandbox)")
        shortest = self.retry_budget_seconds + 5 * self.on24_timeout_seconds + self.registration_lease_margin_seconds
        if self.registration_lease_seconds < shortest:
            raise ConfigError(
                f"setting REGISTRATION_LEASE_SECONDS must be at least {shortest:g}: RETRY_BUDGET_SECONDS plus "
                "5 x ON24_TIMEOUT_SECONDS (one ON24 call and the time an unanswered request may still land) "
                "plus REGISTRATION_LEASE_MARGIN_SECONDS"
            )
        if problem := metrics_budget_problem(self.metrics_budget_seconds, _ENVIRON.get() or os.environ):
            raise ConfigError(f"setting {problem}")
        return self


def _setting_name(loc: tuple[int | str, ...]) -> str:
    """The setting a validation error is about (pydantic names it by its alias)."""
    return str(loc[0]) if loc else "?"


_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("settings_environ", default=None)


class _Environment(EnvSettingsSource):
    """The process environment, or the mapping given to ``Settings.from_environ``; values are stripped and a blank
    one counts as unset (``local.settings.json`` lists unused settings empty)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        given = _ENVIRON.get()
        environ = os.environ if given is None else given
        stripped = {name: value.strip() for name, value in environ.items() if isinstance(value, str)}
        return {name: value for name, value in stripped.items() if value}
