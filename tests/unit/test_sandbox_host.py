"""The sandbox's function host routes like the Functions host: route templates from function.json, literal
segments before parameters, and the function-key check before any function runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.host import FunctionHost, compile_route, load_routes

ROOT = Path(__file__).resolve().parents[2]


def test_route_templates_match_as_the_host_reads_them() -> None:
    page = compile_route("AdminPage", "{page:regex(^admin$)}/{asset?}", ["get"], "anonymous")
    assert page.match("GET", "/api/admin") == {"page": "admin"}
    assert page.match("GET", "/api/Admin/admin.js") == {"page": "Admin", "asset": "admin.js"}
    assert page.match("GET", "/api/administration") is None
    assert page.match("POST", "/api/admin") is None
    numbered = compile_route("Pull", "orgs/{orgId}/webinars/{webinarId:int}/pull", None, "function")
    assert numbered.match("DELETE", "/api/orgs/ä-org/webinars/42/pull") == {"orgId": "ä-org", "webinarId": "42"}
    assert numbered.match("POST", "/api/orgs/o/webinars/x42/pull") is None
    rest = compile_route("Files", "files/{*path}", ["get"], "function")
    assert rest.match("GET", "/api/files/a/b/c.txt") == {"path": "a/b/c.txt"}


def test_every_http_function_folder_is_routed_literal_routes_first() -> None:
    routes = load_routes(ROOT)
    folders = {path.parent.name for path in ROOT.glob("*/function.json") if '"httpTrigger"' in path.read_text()}
    assert {route.function for route in routes} == folders
    assert routes[-1].function == "AdminPage", "a route starting with a parameter is tried last"

    def routed(method: str, path: str) -> str | None:
        return next((route.function for route in routes if route.match(method, path) is not None), None)

    assert routed("GET", "/api/orgs/o1/webinar/status") == "WebinarStatus"
    assert routed("PUT", "/api/orgs/o1/webinar/credentials") == "StoreCredentials"
    assert routed("GET", "/api/admin") == "AdminPage"
    assert routed("GET", "/api/orgs") is None


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-functions-key": "not-the-key"}, {"x-functions-key": ""}, {"code": "not-the-key"}],
)
def test_a_function_level_route_without_the_right_key_is_refused_before_it_runs(
    headers: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The host's own key check, for a function that asks for it (the product's admin routes are anonymous at the
    host and guarded by the app: ``tests/e2e/test_function_host_http.py``)."""
    folder = tmp_path / "Secret"
    folder.mkdir()
    binding = {"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "function", "route": "secret"}
    (folder / "function.json").write_text(json.dumps({"bindings": [binding, {"type": "http", "direction": "out"}]}))
    ran: list[str] = []
    monkeypatch.setattr("importlib.import_module", lambda name: ran.append(name))
    host = FunctionHost(tmp_path, function_key="Schlüssel-0001")
    try:
        query = {k: v for k, v in headers.items() if k == "code"}
        target = "/api/secret" + (f"?code={query['code']}" if query else "")
        sent = {k: v for k, v in headers.items() if k != "code"}
        assert host.dispatch("GET", target, sent, b"") == (401, {}, b"")
    finally:
        host.server.server_close()
    assert ran == []
