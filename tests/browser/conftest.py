"""A real browser (Playwright driving Chromium) on the admin page, served by the sandbox's function host.

Chromium is Debian's package (``/usr/bin/chromium``, installed by scripts/bootstrap.sh): ``playwright install``
cannot download browsers on these machines. Without any Chromium the browser tests skip, saying so loudly.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from sandbox.host import FunctionHost

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_KEY = "sandbox-function-key-0001"
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def chromium_path() -> str | None:
    configured = os.environ.get("CHROMIUM")
    for candidate in (configured, *CANDIDATES, shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        message = (
            "NO CHROMIUM: the admin page's browser tests did not run. Install it: 'sudo apt-get install chromium' "
            "(or run scripts/bootstrap.sh as root), or point CHROMIUM= at a Chromium/Chrome binary."
        )
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: scripts/bootstrap.sh")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def host(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[FunctionHost]:
    """Every HTTP function of the repository over HTTP on 127.0.0.1, the app wired to the stand-ins and wanting
    ``FUNCTION_KEY`` as its admin key (``ADMIN_API_KEY``), as ``python -m sandbox serve`` runs it."""
    from shared.app import reset_app

    monkeypatch.setenv("ADMIN_API_KEY", FUNCTION_KEY)
    reset_app()
    with FunctionHost(ROOT, function_key=FUNCTION_KEY) as running:
        yield running


class PageWatch:
    """What the page did that a test checks: console errors, uncaught exceptions, every request's host."""

    def __init__(self, page: Any) -> None:
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.hosts: set[str] = set()
        page.on("console", lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("request", lambda request: self.hosts.add(urlsplit(request.url).hostname or request.url))

    def assert_clean(self, *, expected_statuses: tuple[int, ...] = ()) -> None:
        """No uncaught exception, no console error (except Chromium's own line for an expected error answer),
        and no request to any host but 127.0.0.1."""
        assert self.page_errors == []
        unexpected = [
            line
            for line in self.console_errors
            if not any(f"status of {status} " in line for status in expected_statuses)
        ]
        assert unexpected == []
        assert self.hosts == {"127.0.0.1"}


class AdminPage:
    """The page in a fresh browser context, what it did (``watch``) and screenshots of its states."""

    def __init__(self, page: Any, host: FunctionHost, shots: Path) -> None:
        self.page, self.host, self.shots = page, host, shots
        self.watch = PageWatch(page)

    def open(self) -> Any:
        self.page.goto(self.host.page_url)
        self.page.wait_for_selector("body[data-ready=true]")
        return self.page

    def screenshot(self, name: str) -> Path:
        """A full-page PNG, in ADMIN_PAGE_SCREENSHOTS if set (to look at), else the test's temporary folder."""
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def admin(browser: Any, host: FunctionHost, tmp_path: Path) -> Iterator[AdminPage]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB", timezone_id="Europe/Berlin")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield AdminPage(page, host, Path(os.environ.get("ADMIN_PAGE_SCREENSHOTS") or tmp_path / "screenshots"))
    context.close()
