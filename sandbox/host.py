"""A small local stand-in for the Functions host's HTTP side: ``/api/<route>`` to each HTTP function's ``main``.

Generic over the repository: every folder with a ``function.json`` whose trigger is ``httpTrigger`` is routed by
its ``route`` and ``methods`` (route templates as the host reads them: ``{name}``, ``{name?}``, ``{*name}``,
``{name:int}``, ``{name:alpha}``, ``{name:regex(...)}``; literal segments win over parameters), so a function
folder added later is served without changes here. Requests become ``func.HttpRequest`` objects the way the
worker builds them (method, full URL, headers, query parameters, route parameters, body) and the
``func.HttpResponse`` goes back as is. ``authLevel`` ``function`` or ``admin`` needs the host's key in
``x-functions-key`` or ``?code=`` (else ``401`` with an empty body, as the host answers); ``anonymous`` needs none.
With ``principal`` the host also plays App Service authentication's front end for a signed-in user (it sets the
``X-MS-CLIENT-PRINCIPAL*`` headers, replacing any the client sent).

Not simulated: the host's own ``/admin`` API, proxies, CORS, and ``routePrefix`` other than ``api``.
"""

from __future__ import annotations

import base64
import hmac
import importlib
import json
import re
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

DEFAULT_PORT = 7072  # beside func start's 7071, so both can run against the same sandbox
ROUTE_PREFIX = "api"
PAGE_PATH = "/api/admin"
_PARAM = re.compile(r"^\{(?P<star>\*)?(?P<name>\w+)(?P<constraints>(?::[^?}]+)*)(?P<optional>\?)?\}$")


def page_url(port: int = DEFAULT_PORT) -> str:
    """Where ``python -m sandbox serve`` shows the admin page."""
    return f"http://127.0.0.1:{port}{PAGE_PATH}"


@dataclass
class Route:
    """One HTTP function: its name, methods (empty: all), authLevel and the compiled route template."""

    function: str
    methods: frozenset[str]
    auth_level: str
    pattern: re.Pattern[str]
    checks: dict[str, Callable[[str], bool]]
    precedence: tuple[int, ...]

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.methods and method.lower() not in self.methods:
            return None
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        params = {name: value for name, value in found.groupdict().items() if value is not None}
        if not all(check(params[name]) for name, check in self.checks.items() if name in params):
            return None
        return params


def compile_route(function: str, template: str, methods: list[str] | None, auth_level: str) -> Route:
    """A route template (as in function.json, without the ``api/`` prefix) as a regular expression."""
    parts = [segment for segment in template.strip("/").split("/") if segment]
    regex = "/" + ROUTE_PREFIX
    checks: dict[str, Callable[[str], bool]] = {}
    precedence: list[int] = []
    for segment in parts:
        param = _PARAM.match(segment)
        if param is None:
            regex += "/" + re.escape(segment)
            precedence.append(0)
            continue
        name = param.group("name")
        if param.group("star"):
            regex += f"(?:/(?P<{name}>.*))?"
            precedence.append(3)
            continue
        constraints = [c for c in (param.group("constraints") or "").split(":") if c]
        if constraints:
            checks[name] = _constraint(constraints)
        body = f"/(?P<{name}>[^/]+)"
        regex += f"(?:{body})?" if param.group("optional") else body
        precedence.append(1 if constraints else 2)
    return Route(
        function,
        frozenset(m.lower() for m in methods or []),
        auth_level,
        re.compile(regex + "/?", re.IGNORECASE),
        checks,
        tuple(precedence),
    )


def _constraint(constraints: list[str]) -> Callable[[str], bool]:
    tests: list[Callable[[str], bool]] = []
    for constraint in constraints:
        regex = re.fullmatch(r"regex\((.*)\)", constraint)
        if regex:
            compiled = re.compile(regex.group(1), re.IGNORECASE)
            tests.append(lambda value, c=compiled: c.search(value) is not None)
        elif constraint == "int":
            tests.append(lambda value: re.fullmatch(r"-?\d+", value) is not None)
        elif constraint == "alpha":
            tests.append(lambda value: re.fullmatch(r"[A-Za-z]+", value) is not None)
    return lambda value: all(test(value) for test in tests)


def load_routes(root: Path) -> list[Route]:
    """Every HTTP-triggered function folder under ``root``, most specific route first."""
    routes = []
    for path in sorted(root.glob("*/function.json")):
        spec = json.loads(path.read_text(encoding="utf-8"))
        for binding in spec.get("bindings", []):
            if binding.get("type") == "httpTrigger" and not spec.get("disabled"):
                template = binding.get("route") or path.parent.name
                auth = str(binding.get("authLevel", "function")).lower()
                routes.append(compile_route(path.parent.name, template, binding.get("methods"), auth))
    return sorted(routes, key=lambda route: route.precedence)


class FunctionHost:
    """The HTTP side of the Functions host on 127.0.0.1 (see the module docstring); ``start()``/``close()``."""

    def __init__(
        self, root: Path, *, function_key: str, port: int = 0, principal: dict[str, Any] | None = None
    ) -> None:
        self.root = root
        self.function_key = function_key
        self.principal = principal
        self.routes = load_routes(root)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="function-host", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def page_url(self) -> str:
        return self.url + PAGE_PATH

    def start(self) -> FunctionHost:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FunctionHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def authorised(self, route: Route, headers: dict[str, str], query: dict[str, str]) -> bool:
        if route.auth_level == "anonymous":
            return True
        offered = headers.get("x-functions-key") or query.get("code") or ""
        return hmac.compare_digest(offered.encode("utf-8"), self.function_key.encode("utf-8"))

    def dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """One request: (status, headers, body)."""
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = self._front_end(headers)
        for route in self.routes:
            params = route.match(method, parts.path)
            if params is None:
                continue
            if not self.authorised(route, headers, query):
                return 401, {}, b""
            request = func.HttpRequest(
                method.upper(),
                f"{self.url}{target}",
                headers=headers,
                params=query,
                route_params=params,
                body=body,
            )
            try:
                main = importlib.import_module(route.function).main
                response = main(request)
            except Exception:  # the host answers 500 and logs the exception
                traceback.print_exc(file=sys.stderr)
                return 500, {}, b""
            return response.status_code, _response_headers(response), response.get_body()
        return 404, {}, b""


    def _front_end(self, headers: dict[str, str]) -> dict[str, str]:
        """With a signed-in ``principal`` (``{"name", "id", "claims"}``), what App Service authentication's front
        end does: replace any client-sent principal headers with its own. Without, headers pass as they came (as
        on an app without App Service authentication, where the code does not trust them)."""
        if self.principal is None:
            return headers
        kept = {name: value for name, value in headers.items() if not name.lower().startswith("x-ms-client-principal")}
        encoded = base64.b64encode(json.dumps({"auth_typ": "aad", "claims": self.principal.get("claims", [])}).encode())
        return kept | {
            "x-ms-client-principal": encoded.decode("ascii"),
            "x-ms-client-principal-name": str(self.principal.get("name", "")),
            "x-ms-client-principal-id": str(self.principal.get("id", "")),
        }


def _response_headers(response: func.HttpResponse) -> dict[str, str]:
    headers = dict(response.headers.items())
    if not any(name.lower() == "content-type" for name in headers) and response.mimetype:
        charset = f"; charset={response.charset}" if response.charset else ""
        headers["Content-Type"] = response.mimetype + charset
    return headers


def _handler(host: FunctionHost) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sandbox-function-host"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            return

        def _do(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, reply_headers, payload = host.dispatch(self.command, self.path, headers, body)
            self.send_response(status)
            for name, value in reply_headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _do

    return Handler
