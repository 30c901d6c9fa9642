"""The admin page (GET /api/admin): static HTML, CSS and JS from the AdminPage folder, and one small JSON config.

The page holds no data: every figure it shows comes from the admin routes, called by the browser with the
caller's own authorisation (the App Service session or a function key typed into the page). So the page itself
is served anonymously; nothing user-supplied is templated into it, and every answer carries a strict
Content-Security-Policy (scripts, styles and calls from this origin only, no inline script, no framing).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import azure.functions as func

from shared.entrypoints.admin_auth import key_required
from shared.settings import Settings

_log = logging.getLogger(__name__)

# asset name in the URL -> (file in the static folder, content type); nothing else is ever read from disk
ASSETS: dict[str, tuple[str, str]] = {
    "": ("index.html", "text/html; charset=utf-8"),
    "admin.js": ("admin.js", "text/javascript; charset=utf-8"),
    "admin.css": ("admin.css", "text/css; charset=utf-8"),
    "icon.svg": ("icon.svg", "image/svg+xml"),
}
CONFIG_ASSET = "config.json"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}


def serve_page(req: func.HttpRequest, static: Path, settings: Callable[[], Settings]) -> func.HttpResponse:
    """AdminPage: one of the page's files by name, or ``config.json`` (does the page need a function key?)."""
    if req.method.upper() not in ("GET", "HEAD"):
        message = {"error": {"code": "method_not_allowed", "message": "use GET"}}
        return _answer(405, json.dumps(message), "application/json")
    asset = (req.route_params.get("asset") or "").strip()
    if asset == CONFIG_ASSET:
        return _config(settings)
    known = ASSETS.get(asset)
    if known is None:
        message = {"error": {"code": "not_found", "message": "no such file on the admin page"}}
        return _answer(404, json.dumps(message), "application/json")
    name, content_type = known
    return _answer(200, (static / name).read_bytes(), content_type)


def _config(settings: Callable[[], Settings]) -> func.HttpResponse:
    """Whether App Service authentication is on (the browser's session is the credential) and whether the admin
    routes want ``ADMIN_API_KEY`` (the page asks for it as the "Function key"). A configuration error is shown on
    the page (its message names the setting, never a secret)."""
    try:
        read = settings()
        auth, key = read.app_service_auth_enabled, key_required(read)
    except Exception as exc:  # the page must still say what is wrong rather than fail blank
        _log.error("admin page: the settings cannot be read: %s", exc)
        message = {"error": {"code": "configuration_error", "message": str(exc)[:600]}}
        return _answer(500, json.dumps(message), "application/json")
    return _answer(200, json.dumps({"appServiceAuth": auth, "keyRequired": key}), "application/json")


def _answer(status: int, body: str | bytes, content_type: str) -> func.HttpResponse:
    headers = {**SECURITY_HEADERS, "Content-Type": content_type}
    return func.HttpResponse(body, status_code=status, headers=headers)
