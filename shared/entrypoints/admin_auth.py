"""Who may call the admin routes: the one gate, in the app, in front of every admin route.

The admin routes are ``authLevel: anonymous`` in ``function.json``: the Functions host checks no key, because
with App Service authentication on, a signed-in browser session or an Entra token is the credential, and a host
that also demanded a function key would make the admin page ask for one (the pattern the Functions host team
describes: Easy Auth in front, ``anonymous`` routes). So this module decides, in this order:

1. **App Service authentication on** (``WEBSITE_AUTH_ENABLED``, set by the platform, which also sets and strips the
   ``X-MS-CLIENT-PRINCIPAL*`` headers): a principal holding ``ADMIN_ROLE`` (every org) or, with
   ``ADMIN_ORG_SCOPE``, ``<ADMIN_ROLE>.<orgId>``. No key is needed or accepted in its place. A change made with
   the session cookie alone must show it comes from the admin page (``_refuse_cross_site``).
2. **Off, with ``ADMIN_API_KEY``**: the key in ``x-functions-key`` (or ``?code=``), the header and query a
   Functions client already sends; compared in constant time; it acts on every org.
3. **Off, no key, not in Azure** (a developer's machine: ``func start`` checks no keys either): open, with a
   warning in the log once per process.
4. **Off, no key, in Azure**: closed. Every admin route answers ``500 configuration_error`` naming the two ways to
   open it; nothing is read or changed. An anonymous admin API is never the result of a missing setting.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from shared.entrypoints.http_errors import ApiError
from shared.errors import ConfigError
from shared.ids import canonical_org_id
from shared.settings import Settings

_log = logging.getLogger(__name__)

KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"
SAFE_METHODS = frozenset({"GET", "HEAD"})  # reads: another site cannot read their answers (no CORS is granted)
_ROLE_CLAIMS = frozenset({"roles", "role", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"})
_warned_open = False


@dataclass(frozen=True)
class Caller:
    """Who is calling: a verified App Service principal, the holder of the admin key, or a local developer."""

    name: str
    roles: frozenset[str]


def authorize(
    method: str, headers: Mapping[str, str], params: Mapping[str, str], settings: Settings, org_id: str
) -> Caller:
    """The caller of an admin route on ``org_id``, or the ``ApiError``/``ConfigError`` that refuses it."""
    if settings.app_service_auth_enabled:
        if not headers.get("x-ms-client-principal"):
            raise ApiError(401, "unauthenticated", "sign in: App Service authentication is on and sent no principal")
        _refuse_cross_site(method, headers)
        return _principal(headers, settings, org_id)
    if settings.admin_org_scope:
        raise ConfigError(
            "setting ADMIN_ORG_SCOPE=true needs App Service authentication (WEBSITE_AUTH_ENABLED=true): "
            "without it the caller's roles cannot be trusted"
        )
    key = settings.admin_api_key
    if key is not None:
        offered = headers.get(KEY_HEADER) or params.get(KEY_QUERY) or ""
        if not hmac.compare_digest(offered.encode("utf-8"), key.get_secret_value().encode("utf-8")):
            what = "a wrong admin key was sent" if offered else "no admin key was sent"
            raise ApiError(401, "unauthenticated", f"{what}: send ADMIN_API_KEY in {KEY_HEADER}", KEY_HEADER)
        return Caller("admin-key holder", frozenset())
    if settings.running_in_azure:
        raise ConfigError(
            "the admin routes are closed: turn on App Service authentication (WEBSITE_AUTH_ENABLED) or set "
            "ADMIN_API_KEY; see docs/deploy.md, 'Who can use the admin routes'"
        )
    _warn_open_once()
    return Caller("local developer", frozenset())


def _refuse_cross_site(method: str, headers: Mapping[str, str]) -> None:
    """A signed-in browser carries its session cookie on requests another site makes it send (cross-site request
    forgery): a form can POST ``text/plain`` JSON to the forget route without any CORS check. So a call that changes
    something must carry what such a form cannot: an ``Authorization`` header (a flow's Entra token) or the admin
    page's ``X-Requested-With`` (a custom header, which a cross-site page cannot add without a CORS preflight this
    app never grants); and a browser that says the request is cross-site (``Sec-Fetch-Site``) is refused."""
    if headers.get("authorization"):
        return
    cross_site = headers.get("sec-fetch-site", "").lower() == "cross-site"
    if cross_site or (method.upper() not in SAFE_METHODS and not headers.get("x-requested-with")):
        raise ApiError(
            403,
            "forbidden",
            "a signed-in browser request that changes something must come from the admin page (X-Requested-With) "
            "or carry a token (Authorization); cross-site requests are refused",
        )


def key_required(settings: Settings) -> bool:
    """Does a caller of the admin routes have to send ``ADMIN_API_KEY`` (what the admin page asks for)?"""
    return not settings.app_service_auth_enabled and settings.admin_api_key is not None


def _warn_open_once() -> None:
    global _warned_open
    if not _warned_open:
        _warned_open = True
        _log.warning(
            "admin routes are open: no App Service authentication and no ADMIN_API_KEY on a machine outside Azure "
            "(as `func start` checks no keys); set ADMIN_API_KEY to require one"
        )


def _principal(headers: Mapping[str, str], settings: Settings, org_id: str) -> Caller:
    roles = _roles(headers.get("x-ms-client-principal", ""))
    name = headers.get("x-ms-client-principal-name") or headers.get("x-ms-client-principal-id") or "unknown principal"
    caller = Caller(name[:200], roles)
    admin_role = settings.admin_role
    if admin_role in roles:
        return caller
    if settings.admin_org_scope and any(_scoped_org(role, admin_role) == org_id for role in roles):
        return caller
    required = f"{admin_role!r}" + (f" or {admin_role + '.' + org_id!r}" if settings.admin_org_scope else "")
    raise ApiError(403, "forbidden", f"the app role {required} is required")


def _roles(encoded: str) -> frozenset[str]:
    """The app roles in an ``X-MS-CLIENT-PRINCIPAL`` header (base64 JSON with ``claims`` and ``role_typ``)."""
    try:
        principal = json.loads(base64.b64decode(encoded, validate=False))
        claims = principal.get("claims") or []
        role_typ = principal.get("role_typ")
        types = _ROLE_CLAIMS | ({role_typ} if isinstance(role_typ, str) else set())
        return frozenset(
            str(c.get("val")) for c in claims if isinstance(c, dict) and c.get("typ") in types and c.get("val")
        )
    except (ValueError, binascii.Error, AttributeError, TypeError, RecursionError):
        raise ApiError(401, "unauthenticated", "the client principal header is malformed") from None


def _scoped_org(role: str, admin_role: str) -> str | None:
    prefix = admin_role + "."
    return canonical_org_id(role[len(prefix) :]) if role.startswith(prefix) else None
