"""The harness both benchmark scripts share: starting the stand-ins, Azurite and Key Vault, the worker environment,
progress lines, signal handling."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.managers import BaseManager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sandbox.dataverse import DataverseStandIn
    from sandbox.on24 import On24StandIn
from urllib.parse import urlsplit

KEY_SECRET_NAME = "on24-credentials-key"
ROOT = Path(__file__).resolve().parent.parent
_Args = TypeVar("_Args")


def worker_environment(
    table_connection: str, vault_url: str, ca_path: str, on24_url: str, dataverse_url: str, **extra: str
) -> dict[str, str]:
    """What ``tests/conftest.py`` ``app_env`` sets, with a fresh table prefix, plus ``extra`` settings."""
    return {
        "AzureWebJobsStorage": table_connection,
        "STATE_TABLE_PREFIX": "bench" + uuid.uuid4().hex[:12],
        "KEY_VAULT_URL": vault_url,
        "CREDENTIALS_KEY_SECRET_NAME": KEY_SECRET_NAME,
        "KEY_VAULT_AUTH": "none",
        "REQUESTS_CA_BUNDLE": ca_path,
        "ON24_BASE_URL": on24_url,
        "DATAVERSE_URL": dataverse_url,
        "DATAVERSE_AUTH": "none",
        **extra,
    }


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def stepper() -> Callable[[str], None]:
    """A progress printer (stderr) that prefixes each line with the seconds since it was made."""
    started = time.perf_counter()

    def step(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    return step


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Treat SIGTERM like Ctrl-C so the cleanup in ``finally`` blocks runs."""
    raise KeyboardInterrupt


def run_with_cleanup(run: Callable[[_Args, contextlib.ExitStack], int], args: _Args) -> int:
    """Run a benchmark from the repo root; Ctrl-C or SIGTERM stops it with exit 130 after its ExitStack has
    stopped the servers and Azurite."""
    signal.signal(signal.SIGTERM, on_sigterm)
    os.chdir(ROOT)
    try:
        with contextlib.ExitStack() as stack:
            return run(args, stack)
    except KeyboardInterrupt:
        print("\ninterrupted: servers and Azurite stopped", file=sys.stderr)
        return 130


class StandInServers:
    """The ON24 and Dataverse stand-ins, meant to live in a ``multiprocessing`` manager's process (the real
    services are remote: their CPU must not count against the code measured). Scripts subclass it with their
    seeding and inspection methods."""

    def __init__(self) -> None:
        from sandbox.dataverse import DataverseStandIn
        from sandbox.on24 import On24StandIn

        self.on24: On24StandIn = On24StandIn()
        self.on24.start()
        self.dataverse: DataverseStandIn = DataverseStandIn()
        self.dataverse.start()

    def urls(self) -> tuple[str, str]:
        return self.on24.url, self.dataverse.url

    def own_dataverse(self, org_id: str) -> str:
        """Make ``org_id`` the org behind the Dataverse stand-in's URL (DATAVERSE_URL): a credentials save checks
        it with WhoAmI. Returns the URL; ``dataverse_url_for`` gives other orgs a URL of their own."""
        self.dataverse.organization_id = org_id
        return self.dataverse.url

    def dataverse_url_for(self, org_id: str) -> str:
        """A URL of the Dataverse stand-in (same rows) whose WhoAmI answers ``org_id``."""
        return self.dataverse.url_for(org_id)

    def reset_logs(self) -> None:
        self.on24.reset_log()
        self.dataverse.reset_log()

    def close(self) -> None:
        self.on24.close()
        self.dataverse.close()


def stand_ins_process_init() -> None:
    """In the stand-ins' process: Ctrl-C reaches the whole group, and the parent shuts this process down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class Parts:
    """What both benchmarks start: the stand-ins' process, Azurite, Key Vault, the worker environment, logging."""

    stand_ins: Any
    azurite: Any
    env: dict[str, str]
    on24_url: str
    dataverse_url: str
    log_handler: logging.Handler


def start_parts(
    stack: contextlib.ExitStack, manager: BaseManager, log_level: str, log_handler: logging.Handler, **settings: str
) -> Parts:
    """Start everything (stopped by ``stack``) and build the worker environment with ``settings`` added; the caller
    puts it into ``os.environ`` when its pass begins."""
    # The stand-ins' process first, before this process starts any thread (fork safety).
    manager.start(stand_ins_process_init)
    stack.callback(manager.shutdown)
    stand_ins: Any = manager.StandIns()  # type: ignore[attr-defined]
    stack.callback(stand_ins.close)

    from sandbox.azurite import Azurite
    from sandbox.keyvault import KeyVaultStandIn, TestCertificateAuthority
    from shared.app import reset_app
    from tests.conftest import random_key

    azurite = Azurite(("blob", "table"))
    stack.callback(azurite.stop)
    azurite.start()
    ca = TestCertificateAuthority(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ca-"))))
    vault = KeyVaultStandIn(ca)
    vault.start()
    stack.callback(vault.close)
    vault.set_secret(KEY_SECRET_NAME, random_key())
    on24_url, dataverse_url = stand_ins.urls()
    for name in list(os.environ):
        if name.startswith(("ON24_", "DATAVERSE_", "KEY_VAULT", "CREDENTIALS_KEY", "WEBSITE_", "STATE_",
                            "PULL_METRICS_", "METRICS_")):
            del os.environ[name]
    env = worker_environment(azurite.connection_string, vault.url, str(ca.ca_path), on24_url, dataverse_url,
                             **settings)
    stack.callback(reset_app)  # closes the App's clients before the servers stop
    logging.getLogger().setLevel(log_level)
    logging.getLogger().addHandler(log_handler)
    stack.callback(logging.getLogger().removeHandler, log_handler)
    return Parts(stand_ins, azurite, env, on24_url, dataverse_url, log_handler)


def storage_only_app(stack: contextlib.ExitStack) -> Any:
    """An ``App`` on a fresh Azurite (blob and table) with a throwaway local credentials key and its own table prefix:
    for benchmarks of storage-bound use cases (no ON24, Dataverse or Key Vault). Both close with ``stack``."""
    import base64

    from sandbox.azurite import Azurite
    from shared.app import App
    from shared.settings import Settings

    azurite = stack.enter_context(Azurite(("blob", "table")))
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "STATE_TABLE_PREFIX": "bench" + uuid.uuid4().hex[:12],
        "CREDENTIALS_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    app = App(Settings.from_environ(env))
    stack.callback(app.close)
    return app
