"""The bearer token of the app's identity for one Dataverse org: cached, refreshed before expiry and after a 401."""

from __future__ import annotations

import threading
import time
from typing import Final

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError

from shared.dataverse._errors import clip
from shared.errors import ConfigError, TransientError

TOKEN_REFRESH_MARGIN: Final = 120.0
"""A cached token is replaced this many seconds before it expires."""


class TokenCache:
    """Tokens for ``scope`` from ``credential``; thread-safe (parallel batches share one)."""

    def __init__(self, credential: TokenCredential, scope: str) -> None:
        self._credential = credential
        self._scope = scope
        self._token: AccessToken | None = None
        self._lock = threading.Lock()

    def bearer(self) -> str:
        """The cached token, fetched again when missing or within ``TOKEN_REFRESH_MARGIN`` of expiry."""
        with self._lock:
            token = self._token
            if token is None or token.expires_on - TOKEN_REFRESH_MARGIN <= time.time():
                token = self._fetch()
                self._token = token
            return token.token

    def invalidate(self, rejected: str) -> None:
        """Forget ``rejected`` (Dataverse answered 401 to it)."""
        # Only drop the cache if it still holds the rejected token: parallel batches that all met the same 401
        # then share a single refresh.
        with self._lock:
            if self._token is not None and self._token.token == rejected:
                self._token = None

    def _fetch(self) -> AccessToken:
        # Note: azure-identity credentials may return their own cached token on a second call; a token revoked
        # before its expiry therefore may not be replaced until the credential's cache refreshes.
        try:
            return self._credential.get_token(self._scope)
        except ClientAuthenticationError as exc:
            said = clip(str(exc).splitlines()[0] if str(exc) else "")
            raise ConfigError(
                f"could not get a Dataverse token for {self._scope} ({type(exc).__name__}"
                + (f": {said}" if said else "")
                + "): check the app's identity and that it has an application user in this org"
            ) from exc
        except AzureError as exc:
            raise TransientError(f"token request for {self._scope} failed ({type(exc).__name__})") from exc
