"""Session-wide real parts: Azurite (from npm), the HTTPS Key Vault stand-in, ON24 and Dataverse stand-ins.

Each test that touches the app gets a fresh table prefix (so state never leaks between tests) and a
fresh ``App`` built from environment variables, exactly as a worker builds it.
"""

from __future__ import annotations

import base64
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.azurite import Azurite
from sandbox.keyvault import KeyVaultStandIn, TestCertificateAuthority
from tests import logscan

KEY_SECRET_NAME = "on24-credentials-key"


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode("ascii")


@pytest.fixture(scope="session", autouse=True)
def log_scan() -> Iterator[logscan.LogScan]:
    """Every record the suite logs (all loggers, all levels); the session fails if one carries an email."""
    scan, uninstall = logscan.install(logging.getLogger())
    yield scan
    uninstall()
    leaks = scan.leaks()
    if leaks:
        pytest.fail(logscan.report(leaks), pytrace=False)


@pytest.fixture(autouse=True)
def _log_scan_test(log_scan: logscan.LogScan, request: pytest.FixtureRequest) -> None:
    log_scan.test = request.node.nodeid


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite(("blob", "table")) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def certificate_authority(tmp_path_factory: pytest.TempPathFactory) -> TestCertificateAuthority:
    return TestCertificateAuthority(Path(tmp_path_factory.mktemp("ca")))


@pytest.fixture(scope="session")
def keyvault(certificate_authority: TestCertificateAuthority) -> Iterator[KeyVaultStandIn]:
    with KeyVaultStandIn(certificate_authority) as vault:
        assert isinstance(vault, KeyVaultStandIn)
        vault.set_secret(KEY_SECRET_NAME, random_key())
        yield vault


@pytest.fixture
def table_prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def base_env(
    monkeypatch: pytest.MonkeyPatch,
    azurite: Azurite,
    keyvault: KeyVaultStandIn,
    table_prefix: str,
) -> Iterator[dict[str, str]]:
    """The environment of a worker wired to the stand-ins (ON24/Dataverse URLs added by their fixtures)."""
    from shared.app import reset_app

    for name in list(os.environ):
        if name.startswith(("ON24_", "DATAVERSE_", "KEY_VAULT", "CREDENTIALS_KEY", "WEBSITE_", "STATE_")):
            monkeypatch.delenv(name, raising=False)
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "STATE_TABLE_PREFIX": table_prefix,
        "KEY_VAULT_URL": keyvault.url,
        "CREDENTIALS_KEY_SECRET_NAME": KEY_SECRET_NAME,
        "KEY_VAULT_AUTH": "none",
        "REQUESTS_CA_BUNDLE": str(keyvault.ca.ca_path),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_app()
    yield env
    reset_app()


ON24_CLIENT_ID = "1001"
ON24_KEY = "sandbox-token-key-1001"
ON24_SECRET = "Sandbox-Token-Secret-1001-DoNotLog"


@pytest.fixture(scope="session")
def on24_server() -> Iterator[Any]:
    from sandbox.on24 import On24StandIn

    server = On24StandIn()
    server.start()
    server.add_client(ON24_CLIENT_ID, ON24_KEY, ON24_SECRET)
    yield server
    server.close()


@pytest.fixture
def on24(on24_server: Any) -> Any:
    """The session's ON24 stand-in with a clean request log, no faults and no limits."""
    on24_server.clear_faults()
    on24_server.down = None
    on24_server.clear_limits()
    on24_server.reset_log()
    on24_server.latency = 0.0
    on24_server.reactivate(ON24_CLIENT_ID)
    return on24_server


@pytest.fixture(scope="session")
def dataverse_server() -> Iterator[Any]:
    from sandbox.dataverse import DataverseStandIn

    server = DataverseStandIn()
    server.start()
    yield server
    server.close()


@pytest.fixture
def dataverse(dataverse_server: Any, request: pytest.FixtureRequest) -> Any:
    """The session's Dataverse stand-in, emptied, with no faults or limits.

    Its ``WhoAmI`` answers the org the test stores credentials for with the default ``DATAVERSE_URL`` (the
    test's ``dataverse_org`` marker, else the module's ``ORG``, else ``ORG_A``), since a save refuses another
    org's URL; other orgs of the module use ``dataverse.url_for(org)`` as their ``dataverseUrl``.
    """
    marker = request.node.get_closest_marker("dataverse_org")  # a test that borrows another module's fixtures
    owner = marker.args[0] if marker else getattr(request.module, "ORG", None) or getattr(request.module, "ORG_A", None)
    dataverse_server.organization_id = owner or str(uuid.uuid4())
    dataverse_server.clear()
    dataverse_server.set_limit(None)
    dataverse_server.clear_faults()
    dataverse_server.down = None
    dataverse_server.reset_log()
    dataverse_server.latency = 0.0
    return dataverse_server


@pytest.fixture
def on24_env(base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, on24: Any) -> dict[str, str]:
    """A worker environment wired to Azurite, Key Vault and the ON24 stand-in."""
    monkeypatch.setenv("ON24_BASE_URL", on24.url)
    return {**base_env, "ON24_BASE_URL": on24.url}


@pytest.fixture
def app_env(on24_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, dataverse: Any) -> dict[str, str]:
    """A worker environment wired to every stand-in: Azurite, Key Vault, ON24 and Dataverse."""
    extra = {"DATAVERSE_URL": dataverse.url, "DATAVERSE_AUTH": "none"}
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    return {**on24_env, **extra}


def credentials_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"clientId": ON24_CLIENT_ID, "accessTokenKey": ON24_KEY, "accessTokenSecret": ON24_SECRET}
    body.update(overrides)
    return body
