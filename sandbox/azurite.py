"""Start Azurite (the official Azure Storage emulator, from npm) on free loopback ports, in memory.

Used by the tests (tables only) and by the local demo / ``--serve`` mode (blob, queue and table, so a
Functions host started with ``func start`` finds its ``AzureWebJobsStorage``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from sandbox.server import free_port

ROOT = Path(__file__).resolve().parent.parent
ALL_SERVICES = frozenset({"blob", "queue", "table"})
# The emulator's documented, public development account (the same in every Azurite install).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_binary(name: str) -> str:
    local = ROOT / "node_modules" / ".bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(f"{name} not found: run 'npm ci' in {ROOT} (the test and demo scripts do this)")


class Azurite:
    """An Azurite child process. ``services`` is ("table",) or ("blob", "queue", "table")."""

    def __init__(self, services: tuple[str, ...] = ("table",)) -> None:
        self.services = services
        self.ports: dict[str, int] = {}
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Azurite:
        for attempt in range(3):
            self.ports = {service: free_port() for service in self.services}
            if len(self.services) == 1:
                binary = azurite_binary(f"azurite-{self.services[0]}")
            else:
                binary = azurite_binary("azurite")
            args = [
                binary,
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
                "--disableTelemetry",
            ]
            # The all-services binary starts every service: each gets a free port, or a second Azurite on the
            # machine (another test run, the demo) would collide on a default port.
            unused = () if len(self.services) == 1 else tuple(ALL_SERVICES - set(self.services))
            for service, port in (*self.ports.items(), *((name, free_port()) for name in unused)):
                args += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
            self._process = subprocess.Popen(
                args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
            )
            if self._wait_ready(timeout):
                return self
            self.stop()
            if attempt == 2:
                break
        raise RuntimeError("Azurite did not start (is Node installed and 'npm ci' done?)")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if all(_port_open(port) for port in self.ports.values()):
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, 15)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, 9)
                self._process.wait(timeout=5)
        if self._process.stderr is not None:
            self._process.stderr.close()
        self._process = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connection_string(self) -> str:
        parts = ["DefaultEndpointsProtocol=http", f"AccountName={ACCOUNT}", f"AccountKey={ACCOUNT_KEY}"]
        for service, port in self.ports.items():
            parts.append(f"{service.capitalize()}Endpoint=http://127.0.0.1:{port}/{ACCOUNT}")
        return ";".join(parts) + ";"


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
