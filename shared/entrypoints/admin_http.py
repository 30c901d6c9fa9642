"""The admin HTTP surface: request checks, caller identity, and error-to-status mapping.

Routes (who may call them: ``admin_auth``, the one gate; the host checks no key):

    PUT    /api/orgs/{orgId}/webinar/credentials   StoreCredentials
    GET    /api/orgs/{orgId}/webinar/credentials   CredentialsStatus
    DELETE /api/orgs/{orgId}/webinar/credentials   RemoveCredentials (``?purge=true``: also delete the org's state)
    GET    /api/orgs/{orgId}/webinar/status        WebinarStatus (health: token, webinars, registrations)
    POST   /api/orgs/{orgId}/webinars/{webinarId}/pull   PullWebinar (on-demand metrics pull of one webinar)
    POST   /api/orgs/{orgId}/webinar/forget        ForgetAttendee (erase one person, by email)
    GET    /api/orgs/{orgId}/operations/{operationId}   OperationStatus (a 202's Location; ``operations_http``)
    GET    /api/openapi.json                       OpenApi (this API's OpenAPI 3.1 description)

Errors: one shape and one status per code (``http_errors``).

``orgId`` is normalised here, once (``shared.ids.canonical_org_id``: GUIDs lower-case), and every use case
gets the canonical id. Every answer is JSON; none echoes a secret (pydantic errors are rendered without
input values) or what ON24 said about a credential check (a fixed message; the detail is logged).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import azure.functions as func
from pydantic import BaseModel, ValidationError

from shared import admin
from shared.api_models import CredentialsView, ForgetView, Model, RemovedView, shape
from shared.app import App
from shared.emails import EmailError, address_to_forget
from shared.entrypoints.admin_auth import Caller, authorize
from shared.entrypoints.http_errors import Answer, ApiError, error_response, json_response
from shared.entrypoints.params import FlagError, query_flag
from shared.errors import (
    ConfigError,
    IntegrationError,
    ThrottledError,
    TransientError,
)
from shared.ids import canonical_org_id, is_field_name

if TYPE_CHECKING:  # each route imports the use case it runs when first called (a shorter cold start)
    from shared import privacy

_log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024


def put_credentials(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """StoreCredentials: validate, check with ON24, seal and save."""

    def run(org_id: str, caller: Caller) -> dict[str, Any]:
        body = _parse_body(req.get_body(), app.credentials_fields, sandbox=app.settings.dataverse_auth == "none")
        _refuse_during_purge(app, org_id)
        return admin.store_credentials(
            org_id, body, store=app.credentials, cipher=app.cipher, verify=app.verify_credentials, actor=caller.name,
            org_behind=lambda url: app.dataverse(url).who_am_i(), default_dataverse_url=app.settings.dataverse_url,
            now=app.registration_ports().clock(), attributes=app.dataverse_attributes,
        )  # fmt: skip

    return _respond(req, app, "PUT", run, {200: CredentialsView})


def get_credentials_status(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """CredentialsStatus: the non-secret status of an org's integration (and its purge, while one runs)."""

    def run(org_id: str, _caller: Caller) -> dict[str, Any]:
        return _with_purge(app, org_id, admin.credentials_status(org_id, store=app.credentials))

    return _respond(req, app, "GET", run, {200: CredentialsView})


def delete_credentials(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """RemoveCredentials: disable the integration for the org (idempotent); ``?purge=true`` also deletes its
    state (200 when all is gone, 202 when the timer finishes it)."""

    def run(org_id: str, caller: Caller) -> dict[str, Any] | Answer:
        purge = query_flag(req.params, "purge")
        answer = admin.remove_credentials(org_id, store=app.credentials, actor=caller.name)
        if not purge:
            return answer
        from shared import privacy

        return _purge_answer(org_id, answer, privacy.purge_org(org_id, app.privacy_ports(), actor=caller.name), app)

    return _respond(req, app, "DELETE", run, {200: RemovedView, 202: RemovedView})


def _respond(
    req: func.HttpRequest,
    app: App,
    method: str,
    operation: Callable[[str, Caller], dict[str, Any] | Answer],
    models: Mapping[int, type[Model]] | None = None,
) -> func.HttpResponse:
    """Run ``operation`` for the route's org and caller; its answer passes through its status's model in
    ``models`` (``shared.api_models``, what the OpenAPI description says); every failure becomes an error."""
    raw_org = req.route_params.get("orgId", "")
    org_id = canonical_org_id(raw_org)
    log_org = org_id or "(invalid)"
    try:
        if req.method.upper() != method:
            raise ApiError(405, "method_not_allowed", f"use {method} on this route")
        caller = authorize(method, req.headers, req.params, app.settings, org_id or "")  # who first, then what
        if org_id is None:
            raise ApiError(400, "invalid_org_id", "orgId must be 1-64 letters, digits, '.', '_' or '-'", "orgId")
        result = operation(org_id, caller)
        answer = result if isinstance(result, Answer) else Answer(200, result)
        model = (models or {}).get(answer.status)
        try:
            payload = shape(model, answer.payload) if model else answer.payload
        except ValidationError:
            _log.exception("admin %s for org %s: the answer does not match its model", method, log_org)
            message = "the answer did not match the API description (a bug); the request may have been carried out"
            raise ApiError(500, "internal_error", message) from None
        return json_response(answer.status, payload, answer.headers)
    except ApiError as exc:
        return error_response(exc)
    except admin.InputError as exc:  # e.g. a mapped column the org's Dataverse does not have
        return error_response(ApiError(400, "invalid_field", str(exc), exc.field))
    except FlagError as exc:
        return error_response(ApiError(400, "invalid_parameter", str(exc), exc.name))
    except admin.RefusedError as exc:  # ON24 refused the credentials, or the Dataverse URL is another org's
        return error_response(ApiError(422, exc.code, str(exc), exc.field))
    except ThrottledError as exc:
        _log.warning("admin %s for org %s throttled: %s", method, log_org, exc, extra={"org_id": org_id})
        return error_response(ApiError(429, "throttled", admin.UNAVAILABLE_MESSAGE, retry_after=exc.retry_after))
    except TransientError as exc:
        _log.warning("admin %s for org %s failed transiently: %s", method, log_org, exc, extra={"org_id": org_id})
        return error_response(ApiError(503, "unavailable", admin.UNAVAILABLE_MESSAGE))
    except ConfigError as exc:
        _log.error("admin %s for org %s: configuration error: %s", method, log_org, exc, extra={"org_id": org_id})
        return error_response(ApiError(500, "configuration_error", str(exc)))
    except IntegrationError as exc:
        _log.error("admin %s for org %s refused: %s", method, log_org, exc, extra={"org_id": org_id})
        return error_response(ApiError(422, "rejected", "the request could not be carried out; nothing was changed"))
    except Exception:
        _log.exception("admin %s for org %s failed unexpectedly", method, log_org, extra={"org_id": org_id})
        return error_response(ApiError(500, "internal_error", "unexpected error; nothing was changed"))


def _parse_body(raw: bytes | None, provider_fields: type[BaseModel], *, sandbox: bool) -> admin.CredentialsInput:
    data = _json_object(raw)
    try:
        return admin.parse_credentials_input(data, provider_fields, sandbox=sandbox)
    except admin.InputError as exc:
        raise ApiError(400, "invalid_field", str(exc), exc.field) from None


def _json_object(raw: bytes | None) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong with it (never quoting it)."""
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
    return data


def _no_body(raw: bytes | None) -> None:
    """These routes take no body; an empty JSON object is tolerated (clients that always send one)."""
    if raw and raw.strip() not in (b"{}", b""):
        raise ApiError(400, "invalid_body", "this route takes no body", "body")


# ---- privacy routes: erasure of one person, leaving (issue 14) --------------------------------------------------


def post_forget(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """ForgetAttendee: erase one person (by email) from the org's state and from ON24. Idempotent; audited
    without the email, which no answer or log line contains."""

    def run(org_id: str, caller: Caller) -> dict[str, Any]:
        email = _forget_email(_json_object(req.get_body()))
        from shared import privacy

        try:
            report = privacy.forget_person(org_id, email, app.privacy_ports(), actor=caller.name)
        except privacy.ErasureIncompleteError:
            raise ApiError(
                503,
                "erasure_incomplete",
                "ON24 or storage failed part-way; what was erased stays erased: send the same request again to finish",
            ) from None
        return report.view(org_id)

    return _respond(req, app, "POST", run, {200: ForgetView})


def _forget_email(data: dict[str, Any]) -> str:
    """The ``email`` of a forget body (its only field), as :func:`shared.emails.address_to_forget` reads it."""
    unknown = sorted(set(data) - {"email"})
    if unknown:
        name = unknown[0] if is_field_name(unknown[0]) else "body"  # a key is named only if it cannot be data
        raise ApiError(400, "invalid_field", f"{name}: unknown field; the only field is email", name)
    email = data.get("email")
    if not isinstance(email, str):
        raise ApiError(400, "invalid_field", "email: a string is required", "email")
    try:
        return address_to_forget(email)
    except EmailError as exc:
        raise ApiError(400, "invalid_field", f"email: {exc}", "email") from None


def _refuse_during_purge(app: App, org_id: str) -> None:
    request = app.purges.get(org_id)
    if request is not None:
        raise ApiError(
            409,
            "purge_in_progress",
            f"the org's data is being purged (requested {request.requested_at.isoformat()}); store credentials "
            "again once the purge has finished (the credentials status shows it until then)",
        )


def _with_purge(app: App, org_id: str, view: dict[str, Any]) -> dict[str, Any]:
    request = app.purges.get(org_id)
    if request is None:
        return view
    from shared import privacy

    return {**view, "purge": privacy.purge_view(request)}


def _purge_answer(org_id: str, answer: dict[str, Any], outcome: privacy.PurgeOutcome, app: App) -> Answer:
    """200 when the org's state is gone; 202 with the ``Location`` of an operation the timer finishes."""
    payload = {**answer, "purge": outcome.view()}
    if outcome.finished:
        return Answer(200, payload)
    from shared.entrypoints.operations import accepted

    return accepted(app, org_id, payload, "purge")


respond, no_body = _respond, _no_body  # for the routes in ``operations_http``
_json, _error = json_response, error_response  # the names these helpers had here before ``http_errors``
__all__ = ["Answer", "ApiError", "Caller", "no_body", "respond"]
