"""``python -m sandbox serve``'s function host over real HTTP, with every function folder's own ``function.json``:
the page anonymously with its security headers; the admin routes anonymous at the host and guarded by the app
(``shared.entrypoints.admin_auth``): App Service authentication's principal, else ``ADMIN_API_KEY``, else, in
Azure, closed."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sandbox.host import FunctionHost

ROOT = Path(__file__).resolve().parents[2]
KEY = "sandbox-admin-key-0001"
ORG = "7d1f4c2a-9b3e-4f5a-8c6d-2e1f0a9b8c7d"
PUBLIC = {"AdminPage", "OpenApi"}  # a static page and the API's description: no data behind them


def fetch(
    url: str, headers: dict[str, str] | None = None, method: str = "GET", body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {}, method=method, data=body)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - 127.0.0.1 only
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def admin_routes() -> list[tuple[str, str, str]]:
    """(function, method, path) for every method of every HTTP function that is not public, read from the
    folders' ``function.json`` as the host reads them (a route added later is attacked too)."""
    values = {"orgId": ORG, "webinarId": "4471234", "operationId": "op-1"}
    routes = []
    for path in sorted(ROOT.glob("*/function.json")):
        if path.parent.name in PUBLIC:
            continue
        for binding in json.loads(path.read_text())["bindings"]:
            if binding.get("type") != "httpTrigger":
                continue
            route = re.sub(r"\{(\w+)[^}]*\}", lambda m: values[m.group(1)], binding["route"])
            routes += [(path.parent.name, method.upper(), route) for method in binding["methods"]]
    return routes


def use(monkeypatch: pytest.MonkeyPatch, **settings: str) -> None:
    from shared.app import reset_app

    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    reset_app()


def test_every_admin_route_is_anonymous_at_the_host_so_a_signed_in_session_needs_no_key() -> None:
    found = admin_routes()
    assert {name for name, _, _ in found} >= {"StoreCredentials", "RemoveCredentials", "WebinarStatus", "Reconcile"}
    for name in {name for name, _, _ in found} | PUBLIC:
        levels = {b.get("authLevel") for b in json.loads((ROOT / name / "function.json").read_text())["bindings"]}
        assert levels == {"anonymous", None}, f"{name}: the app guards it, a host key would make the page ask for one"


def test_the_page_is_served_without_a_key_and_the_routes_want_the_admin_key(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, ADMIN_API_KEY=KEY)
    with FunctionHost(ROOT, function_key="not-used-by-anonymous-routes") as host:
        status, headers, body = fetch(host.page_url)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
        assert b'<script src="/api/admin/admin.js"' in body and b"<script>" not in body
        for asset, kind in (("admin.js", "text/javascript"), ("admin.css", "text/css"), ("icon.svg", "image/svg")):
            status, headers, _ = fetch(f"{host.page_url}/{asset}")
            assert status == 200 and headers["Content-Type"].startswith(kind), asset
        assert fetch(f"{host.page_url}/index.html")[0] == 404, "only the page's own files are served"
        assert fetch(f"{host.page_url}/..%2F__init__.py")[0] == 404
        status, _, body = fetch(f"{host.page_url}/config.json")
        assert status == 200 and json.loads(body) == {"appServiceAuth": False, "keyRequired": True}

        for name, method, route in admin_routes():
            for headers in ({}, {"x-functions-key": KEY + "x"}, {"x-functions-key": KEY[:-1]}):
                status, _, body = fetch(f"{host.url}/api/{route}", headers, method)
                error = json.loads(body)["error"]
                assert (status, error["code"], error["target"]) == (401, "unauthenticated", "x-functions-key"), name
                assert KEY not in body.decode()
        route = f"{host.url}/api/orgs/{ORG}/webinar/credentials"
        status, _, body = fetch(route, {"x-functions-key": KEY})
        assert status == 200 and json.loads(body) == {"orgId": ORG, "configured": False}
        status, _, body = fetch(f"{route}?code={KEY}")
        assert status == 200 and json.loads(body)["configured"] is False
        status, _, body = fetch(
            f"{host.url}/api/orgs/%C3%85sa-%C3%98deg%C3%A5rd/webinar/credentials", {"x-functions-key": KEY}
        )
        assert status == 400 and json.loads(body)["error"]["code"] == "invalid_org_id", "the route itself answered"
        assert fetch(f"{host.url}/api/nothing-here", {"x-functions-key": KEY})[0] == 404


def test_with_app_service_authentication_a_signed_in_admin_needs_no_key(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gap this closes: the host used to want a function key even from a signed-in session."""
    use(monkeypatch, WEBSITE_AUTH_ENABLED="true", ADMIN_API_KEY=KEY, WEBSITE_INSTANCE_ID="instance-1")
    admin = {"name": "Åsa Ødegård", "id": "11111111-2222-3333-4444-555555555555",
             "claims": [{"typ": "roles", "val": "Webinar.Admin"}]}  # fmt: skip
    with FunctionHost(ROOT, function_key="never-typed", principal=admin) as host:
        status, _, body = fetch(f"{host.page_url}/config.json")
        assert status == 200 and json.loads(body) == {"appServiceAuth": True, "keyRequired": False}
        status, _, body = fetch(f"{host.url}/api/orgs/{ORG}/webinar/credentials")
        assert status == 200 and json.loads(body)["configured"] is False
    with FunctionHost(ROOT, function_key="never-typed") as host:  # nobody signed in: the key is no way around it
        for headers in ({}, {"x-functions-key": KEY}):
            status, _, body = fetch(f"{host.url}/api/orgs/{ORG}/webinar/credentials", headers)
            assert status == 401 and json.loads(body)["error"]["code"] == "unauthenticated"
    reader = {"name": "Иван Петров", "id": "22222222-2222-3333-4444-555555555555",
              "claims": [{"typ": "roles", "val": "Webinar.Reader"}]}  # fmt: skip
    with FunctionHost(ROOT, function_key="never-typed", principal=reader) as host:
        status, _, body = fetch(f"{host.url}/api/orgs/{ORG}/webinar/credentials", {"x-functions-key": KEY})
        assert status == 403 and json.loads(body)["error"]["code"] == "forbidden", "a key does not stand in for a role"


def test_in_azure_without_authentication_or_key_every_admin_route_is_closed_and_changes_nothing(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, WEBSITE_INSTANCE_ID="instance-1")
    body = json.dumps({"clientId": "1001", "accessTokenKey": "k" * 16, "accessTokenSecret": "s" * 16}).encode()
    with FunctionHost(ROOT, function_key="unused") as host:
        status, _, config = fetch(f"{host.page_url}/config.json")
        assert status == 200 and json.loads(config) == {"appServiceAuth": False, "keyRequired": False}
        for name, method, route in admin_routes():
            for headers in ({}, {"x-functions-key": "anything-at-all-0001"}):
                sent = body if method in ("PUT", "POST") else None
                status, _, answer = fetch(f"{host.url}/api/{route}", {**headers, "Content-Type": "application/json"},
                                          method, sent)  # fmt: skip
                error = json.loads(answer)["error"]
                assert (status, error["code"]) == (500, "configuration_error"), name
                assert "WEBSITE_AUTH_ENABLED" in error["message"] and "ADMIN_API_KEY" in error["message"]
    use(monkeypatch, ADMIN_API_KEY=KEY)
    from shared.app import get_app

    assert get_app().credentials.get(ORG) is None, "nothing was stored while the routes were closed"


def test_outside_azure_without_a_key_the_routes_are_open_as_func_start_leaves_them(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch)
    with FunctionHost(ROOT, function_key="unused") as host:
        status, _, body = fetch(f"{host.page_url}/config.json")
        assert json.loads(body) == {"appServiceAuth": False, "keyRequired": False}
        status, _, body = fetch(f"{host.url}/api/orgs/{ORG}/webinar/credentials")
        assert status == 200 and json.loads(body)["configured"] is False


def test_a_signed_in_browser_cannot_be_made_to_change_anything_from_another_site(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cross-site request forgery: another site's form POSTs ``text/plain`` JSON with the admin's session cookie
    (the platform turns it into the principal). The app refuses every change that carries neither the admin page's
    ``X-Requested-With`` nor a token, and anything a browser marks cross-site; reads stay as they were."""
    use(monkeypatch, WEBSITE_AUTH_ENABLED="true", WEBSITE_INSTANCE_ID="instance-1")
    admin = {"name": "Jörg Müller", "id": "33333333-2222-3333-4444-555555555555",
             "claims": [{"typ": "roles", "val": "Webinar.Admin"}]}  # fmt: skip
    forget = json.dumps({"email": "jörg.müller@firma.de"}).encode()
    with FunctionHost(ROOT, function_key="never-typed", principal=admin) as host:
        base = f"{host.url}/api/orgs/{ORG}"
        forged = [
            ("POST", "webinar/forget", {"Content-Type": "text/plain"}),
            ("DELETE", "webinar/credentials?purge=true", {}),
            ("POST", "webinars/4471234/pull", {"Content-Type": "application/x-www-form-urlencoded"}),
            ("POST", "webinar/forget", {"X-Requested-With": "XMLHttpRequest", "Sec-Fetch-Site": "cross-site"}),
        ]
        for method, route, headers in forged:
            status, _, body = fetch(f"{base}/{route}", headers, method, forget if method == "POST" else None)
            error = json.loads(body)["error"]
            assert (status, error["code"]) == (403, "forbidden"), (method, route, headers)
            assert "cross-site" in error["message"]
        for headers in ({"X-Requested-With": "XMLHttpRequest", "Sec-Fetch-Site": "same-origin"},
                        {"Authorization": "Bearer a-flow's-entra-token"}):  # fmt: skip
            status, _, body = fetch(f"{base}/webinar/forget", {**headers, "Content-Type": "application/json"},
                                    "POST", forget)  # fmt: skip
            assert status == 200 and "error" not in json.loads(body), "the route itself answered (nothing to erase)"
        status, _, body = fetch(f"{base}/webinar/status", {"Sec-Fetch-Site": "same-origin"})
        assert status == 200 and json.loads(body)["configured"] is False, "a read needs no page header"
