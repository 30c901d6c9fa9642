"""``python -m sandbox serve``'s function host over real HTTP: the page anonymously with its security headers, the
admin routes with the function key (header or ``?code=``), as the Functions host serves them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sandbox.host import FunctionHost

ROOT = Path(__file__).resolve().parents[2]
KEY = "sandbox-key-0001"


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - 127.0.0.1 only
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_page_is_served_without_a_key_and_the_routes_need_one(app_env: dict[str, str]) -> None:
    with FunctionHost(ROOT, function_key=KEY) as host:
        status, headers, body = fetch(host.page_url)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
        assert b"<script src=\"/api/admin/admin.js\"" in body and b"<script>" not in body
        for asset, kind in (("admin.js", "text/javascript"), ("admin.css", "text/css"), ("icon.svg", "image/svg")):
            status, headers, _ = fetch(f"{host.page_url}/{asset}")
            assert status == 200 and headers["Content-Type"].startswith(kind), asset
        assert fetch(f"{host.page_url}/index.html")[0] == 404, "only the page's own files are served"
        assert fetch(f"{host.page_url}/..%2F__init__.py")[0] == 404
        status, _, body = fetch(f"{host.page_url}/config.json")
        assert status == 200 and json.loads(body) == {"appServiceAuth": False}

        route = f"{host.url}/api/orgs/%C3%85sa-%C3%98deg%C3%A5rd/webinar/credentials"
        assert fetch(route)[:3:2] == (401, b"")
        assert fetch(route, {"x-functions-key": KEY + "x"})[0] == 401
        status, _, body = fetch(route, {"x-functions-key": KEY})
        assert status == 400 and json.loads(body)["error"]["code"] == "invalid_org_id", "the route itself answered"
        status, _, body = fetch(f"{host.url}/api/orgs/org-1/webinar/credentials?code={KEY}")
        assert status == 200 and json.loads(body) == {"orgId": "org-1", "configured": False}
        assert fetch(f"{host.url}/api/nothing-here", {"x-functions-key": KEY})[0] == 404


def test_with_app_service_authentication_the_page_asks_for_no_key(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.app import reset_app

    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")
    reset_app()
    with FunctionHost(ROOT, function_key=KEY) as host:
        status, _, body = fetch(f"{host.page_url}/config.json")
    assert status == 200 and json.loads(body) == {"appServiceAuth": True}
