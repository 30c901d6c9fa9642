"""The admin HTTP surface: request checks, caller identity, and error-to-status mapping.

Routes (function-level keys; with App Service authentication on, also the ``ADMIN_ROLE`` app role):

    PUT    /api/orgs/{orgId}/webinar/credentials   StoreCredentials
    GET    /api/orgs/{orgId}/webinar/credentials   CredentialsStatus
    DELETE /api/orgs/{orgId}/webinar/credentials   RemoveCredentials

Every answer is JSON; none echoes a secret (pydantic errors are rendered without input values).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from pydantic import ValidationError as PydanticValidationError

from shared import admin
from shared.app import App
from shared.errors import (
    ConfigError,
    CredentialsRejectedError,
    IntegrationError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from shared.ids import is_org_id

_log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024
_ROLE_CLAIMS = {"roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}


@dataclass(frozen=True)
class Caller:
    """Who is calling: a verified App Service principal, or the holder of a function key."""

    name: str
    roles: frozenset[str]


class ApiError(Exception):
    """An answer other than 2xx, with a machine-readable code and the field at fault if any."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.field = status, code, field


def put_credentials(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """StoreCredentials: validate, check with ON24, seal and save."""

    def run(org_id: str, caller: Caller) -> dict[str, Any]:
        body = _parse_body(req.get_body())
        return admin.store_credentials(
            org_id,
            body,
            store=app.credentials,
            cipher=app.cipher,
            verify=app.verify_on24_credentials,
            actor=caller.name,
        )

    return _respond(req, app, "PUT", run)


def get_credentials_status(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """CredentialsStatus: the non-secret status of an org's integration."""
    return _respond(req, app, "GET", lambda org_id, _caller: admin.status_view(org_id, app.credentials.get(org_id)))


def delete_credentials(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """RemoveCredentials: disable the integration for the org (idempotent)."""
    return _respond(
        req,
        app,
        "DELETE",
        lambda org_id, caller: admin.remove_credentials(org_id, store=app.credentials, actor=caller.name),
    )


def _respond(
    req: func.HttpRequest, app: App, method: str, operation: Callable[[str, Caller], dict[str, Any]]
) -> func.HttpResponse:
    org_id = req.route_params.get("orgId", "")
    try:
        if req.method.upper() != method:
            raise ApiError(405, "method_not_allowed", f"use {method} on this route")
        if not is_org_id(org_id):
            raise ApiError(400, "invalid_org_id", "orgId must be 1-64 letters, digits, '.', '_' or '-'", "orgId")
        caller = _authorize(req.headers, app.settings.app_service_auth_enabled, app.settings.admin_role)
        return _json(200, operation(org_id, caller))
    except ApiError as exc:
        return _error(exc)
    except CredentialsRejectedError as exc:
        return _error(ApiError(422, "on24_rejected_credentials", f"ON24 rejected the credentials: {exc}"))
    except NotFoundError as exc:
        return _error(ApiError(422, "on24_account_not_found", f"ON24 does not know this client: {exc}"))
    except TransientError as exc:
        _log.warning("admin %s for org %s failed transiently: %s", method, org_id, exc, extra={"org_id": org_id})
        return _error(ApiError(503, "unavailable", f"a dependency is unavailable, nothing was changed: {exc}"))
    except ConfigError as exc:
        _log.error("admin %s for org %s: configuration error: %s", method, org_id, exc, extra={"org_id": org_id})
        return _error(ApiError(500, "configuration_error", str(exc)))
    except (PermanentError, IntegrationError) as exc:
        return _error(ApiError(422, "rejected", str(exc)))


def _parse_body(raw: bytes | None) -> admin.CredentialsInput:
    if not raw:
        raise ApiError(400, "invalid_body", "a JSON body is required", "body")
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(400, "invalid_body", f"body is larger than {MAX_BODY_BYTES} bytes", "body")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(400, "invalid_body", "body is not valid UTF-8 JSON", "body") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "body must be a JSON object", "body")
    try:
        return admin.CredentialsInput.model_validate(data)
    except PydanticValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        message = first["msg"] if first["type"] != "extra_forbidden" else "unknown field"
        raise ApiError(400, "invalid_field", f"{field}: {message}", field) from None


def _authorize(headers: Mapping[str, str], auth_enabled: bool, admin_role: str) -> Caller:
    """With App Service authentication on, require a principal holding ``admin_role``.

    Without it the platform does not set (or strip) the ``X-MS-CLIENT-PRINCIPAL*`` headers, so they are
    not trusted: the function key is the only credential and the caller is recorded as such.
    """
    if not auth_enabled:
        return Caller("function-key holder", frozenset())
    encoded = headers.get("x-ms-client-principal")
    if not encoded:
        raise ApiError(401, "unauthenticated", "sign in: App Service authentication is on and no principal was sent")
    try:
        principal = json.loads(base64.b64decode(encoded, validate=False))
        claims = principal.get("claims") or []
        roles = frozenset(str(c.get("val")) for c in claims if isinstance(c, dict) and c.get("typ") in _ROLE_CLAIMS)
    except (ValueError, binascii.Error, AttributeError, TypeError):
        raise ApiError(401, "unauthenticated", "the client principal header is malformed") from None
    name = headers.get("x-ms-client-principal-name") or headers.get("x-ms-client-principal-id") or "unknown principal"
    if admin_role not in roles:
        raise ApiError(403, "forbidden", f"the app role {admin_role!r} is required")
    return Caller(name, roles)


def _json(status: int, payload: dict[str, Any]) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(payload), status_code=status, mimetype="application/json")


def _error(exc: ApiError) -> func.HttpResponse:
    error: dict[str, Any] = {"code": exc.code, "message": str(exc)}
    if exc.field:
        error["field"] = exc.field
    return _json(exc.status, {"error": error})
