"""Reading the credentials key from Azure Key Vault with the real ``SecretClient``.

Translates azure-core exceptions into the integration's error tree at this edge, so ``crypto`` never
sees an SDK type. The secret value (key material) is never logged.
"""

from __future__ import annotations

import logging
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets import SecretClient

from shared.errors import ConfigError, SecretUnavailableError, ThrottledError, TransientError

_log = logging.getLogger(__name__)


# Every Key Vault read must end well inside a registration's lease and an admin's HTTP wait: the SDK's defaults
# (a 300 s read timeout, 10 retries) would hold a worker thread for many minutes.
CLIENT_OPTIONS: dict[str, Any] = {
    "connection_timeout": 5,
    "read_timeout": 10,
    "retry_total": 2,
    "retry_backoff_factor": 0.5,
    "retry_backoff_max": 4,
}


class KeyVaultSecretSource:
    """``SecretSource`` over a ``SecretClient``: ``get_secret(name, version) -> (version, value)``."""

    def __init__(self, client: SecretClient) -> None:
        self._client = client

    @classmethod
    def connect(cls, vault_url: str, credential: TokenCredential, **client_options: Any) -> KeyVaultSecretSource:
        """Build the SDK client. Outside ``*.vault.azure.net`` (the sandbox) the challenge resource check is off."""
        verify = (vault_url.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0]).endswith(".vault.azure.net")
        options = {**CLIENT_OPTIONS, **client_options}
        client = SecretClient(vault_url, credential, verify_challenge_resource=verify, **options)
        return cls(client)

    def get_secret(self, name: str, version: str | None = None) -> tuple[str, str]:
        where = f"Key Vault secret {name!r}" + (f" version {version}" if version else "")
        try:
            secret = self._client.get_secret(name, version)
        except ResourceNotFoundError:
            raise SecretUnavailableError(where) from None
        except ClientAuthenticationError as exc:
            raise ConfigError(
                f"the app's identity could not authenticate to read {where}: {type(exc).__name__}"
            ) from exc
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status == 429:
                raise ThrottledError(f"Key Vault throttled reading {where}") from exc
            if status == 403 and _is_disabled(exc):
                raise SecretUnavailableError(where, disabled=True) from None
            if status in (401, 403):
                raise ConfigError(
                    f"the app's identity may not read {where} (HTTP {status}): grant 'Key Vault Secrets User'"
                ) from exc
            if status >= 500 or status == 0:
                raise TransientError(f"Key Vault failed reading {where} (HTTP {status})") from exc
            raise ConfigError(f"Key Vault refused reading {where} (HTTP {status})") from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise TransientError(f"Key Vault unreachable reading {where}: {type(exc).__name__}") from exc
        if secret.value is None or secret.properties.version is None:
            raise ConfigError(f"{where} has no value")
        _log.info("read %s", where, extra={"secret_name": name, "secret_version": secret.properties.version})
        return secret.properties.version, secret.value

    def close(self) -> None:
        self._client.close()


class StaticTokenCredential:
    """A fixed bearer token, accepted by the app only for loopback stand-ins (``*_AUTH=none``)."""

    def __init__(self, token: str = "sandbox-token") -> None:  # noqa: S107 - the stand-in's fixed, public token
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, 4102444800)  # 2100-01-01: never expires

    def close(self) -> None:
        return None


def _is_disabled(exc: HttpResponseError) -> bool:
    """Key Vault answers 403 with inner code ``SecretDisabled`` for a disabled version (not an access problem)."""
    error = getattr(exc, "error", None)
    inner = getattr(error, "innererror", None) or {}
    code = inner.get("code") if isinstance(inner, dict) else getattr(inner, "code", None)
    return code == "SecretDisabled" or "disabled secret" in str(getattr(error, "message", "") or exc.message or "")
