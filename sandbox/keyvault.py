"""A Key Vault stand-in over HTTPS (throwaway CA) that the real ``SecretClient`` talks to.

It follows the Key Vault secrets protocol as far as the integration uses it: the 401 bearer challenge
on an unauthenticated first call, ``GET /secrets/<name>/<version>`` (empty version = latest) and
``PUT /secrets/<name>`` to add a version (how a rotation looks). ``api-version`` is required.
"""

from __future__ import annotations

import ssl
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import trustme

from sandbox.server import Request, Response, StandIn

EXPECTED_TOKEN = "sandbox-token"
_CHALLENGE = 'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net"'


class TestCertificateAuthority:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost, with the CA written to a PEM file."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path | None = None) -> None:
        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert("127.0.0.1", "localhost")
        folder = directory or Path(tempfile.mkdtemp(prefix="sandbox-ca-"))
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_path = folder / "sandbox-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_path))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(context)
        return context


class KeyVaultStandIn(StandIn):
    """Secrets in memory, versioned like Key Vault. ``set_secret`` returns the new version."""

    name = "keyvault-standin"

    def __init__(self, ca: TestCertificateAuthority, *, expected_token: str = EXPECTED_TOKEN) -> None:
        super().__init__(ssl_context=ca.server_context())
        self.ca = ca
        self._expected = expected_token
        self._secrets: dict[str, list[tuple[str, str, bool]]] = {}  # name -> [(version, value, enabled)]
        self._data_lock = threading.Lock()

    # ---- controls ----------------------------------------------------------------------------
    def set_secret(self, name: str, value: str) -> str:
        version = uuid.uuid4().hex
        with self._data_lock:
            self._secrets.setdefault(name, []).append((version, value, True))
        return version

    def set_enabled(self, name: str, version: str, enabled: bool) -> None:
        """Disable (or re-enable) one version, as an admin can in the portal."""
        with self._data_lock:
            versions = self._secrets[name]
            for index, (got, value, _) in enumerate(versions):
                if got == version:
                    versions[index] = (got, value, enabled)
                    return
        raise KeyError(version)

    def versions(self, name: str) -> list[str]:
        with self._data_lock:
            return [version for version, _, _ in self._secrets.get(name, [])]

    # ---- protocol ----------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if "api-version" not in request.query:
            return _error(400, "BadParameter", "The request is missing the required api-version parameter.")
        auth = request.header("authorization") or ""
        if not auth.startswith("Bearer "):
            return Response.json(
                401,
                {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}},
                {"WWW-Authenticate": _CHALLENGE},
            )
        if auth != f"Bearer {self._expected}":
            return _error(401, "Unauthorized", "AKV10032: Invalid issuer.")
        parts = [p for p in request.path.split("/") if p]
        if len(parts) < 2 or parts[0] != "secrets":
            return _error(404, "NotFound", "The requested resource was not found.")
        name = parts[1]
        if request.method == "PUT" and len(parts) == 2:
            body = request.json()
            version = self.set_secret(name, str(body["value"]))
            return Response.json(200, self._bundle(name, version, str(body["value"])))
        if request.method == "GET":
            version = parts[2] if len(parts) > 2 else ""
            with self._data_lock:
                versions = self._secrets.get(name, [])
                found = [v for v in versions if v[0] == version] if version else versions[-1:]
            if not found:
                return _error(
                    404, "SecretNotFound", f"A secret with (name/id) {name}/{version} was not found in this key vault."
                )
            got_version, value, enabled = found[0]
            if not enabled:
                return _error(
                    403, "Forbidden", "Operation get is not allowed on a disabled secret.", inner="SecretDisabled"
                )
            return Response.json(200, self._bundle(name, got_version, value))
        return _error(405, "MethodNotAllowed", f"{request.method} is not supported here.")

    def _bundle(self, name: str, version: str, value: str) -> dict[str, Any]:
        now = int(time.time())
        return {
            "value": value,
            "id": f"{self.url}/secrets/{name}/{version}",
            "attributes": {"enabled": True, "created": now, "updated": now, "recoveryLevel": "Recoverable+Purgeable"},
        }


def _error(status: int, code: str, message: str, *, inner: str | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner is not None:
        error["innererror"] = {"code": inner}
    return Response.json(status, {"error": error})
