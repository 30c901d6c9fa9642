"""The admin API's OpenAPI 3.1 description, generated from the models the routes answer with
(``shared.api_models``), the model the credentials route parses (``shared.admin.OrgFields`` and the provider's
fields), and the error table (``shared.entrypoints.http_errors.ERROR_CODES``).

``GET /api/openapi.json`` serves it; ``docs/openapi.json`` is the same document (``python -m tools.openapi``
writes it, a test fails when they differ). ``shared.openapi_swagger`` derives the Swagger 2.0 file a Power
Platform custom connector imports.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from shared import api_models as m
from shared.admin import OrgFields
from shared.entrypoints.http_errors import ERROR_CODES

API_VERSION = "1.1.0"
REF = "#/components/schemas/{model}"
COMMON_ERRORS = ("invalid_org_id", "unauthenticated", "forbidden", "method_not_allowed", "rejected", "throttled")
SERVER_ERRORS = ("configuration_error", "internal_error", "unavailable")
PUT_ERRORS = ("invalid_body", "invalid_field", "purge_in_progress", "on24_rejected_credentials")
PUT_ERRORS_DATAVERSE = ("dataverse_org_mismatch", "dataverse_unverified")
PULL_ERRORS = (
    "invalid_webinar_id",
    "invalid_body",
    "webinar_not_found",
    "not_configured",
    "stored_credentials_rejected",
    "credentials_unreadable",
    "no_dataverse_url",
    "pull_failed",
)


class ForgetBody(m.Model):
    """The body of ``POST .../webinar/forget``: the person's email, nothing else."""

    email: str = Field(max_length=320, description="the person's email (any case); never echoed or logged")


# operationId -> (method, path, summary, request model, {status: answer model}, error codes, path parameters)
ROUTES: dict[str, tuple[str, str, str, Any, dict[int, type[BaseModel]], tuple[str, ...]]] = {
    "StoreCredentials": (
        "put",
        "/orgs/{orgId}/webinar/credentials",
        "Connect an org: check its ON24 credentials, seal and store them (a repeat rotates them)",
        "credentials",
        {200: m.CredentialsView},
        PUT_ERRORS + PUT_ERRORS_DATAVERSE,
    ),
    "CredentialsStatus": (
        "get",
        "/orgs/{orgId}/webinar/credentials",
        "Whether the integration is on for an org (no secrets; a running purge shows here)",
        None,
        {200: m.CredentialsView},
        (),
    ),
    "RemoveCredentials": (
        "delete",
        "/orgs/{orgId}/webinar/credentials",
        "Switch the integration off for an org; with purge=true also delete all its data",
        None,
        {200: m.RemovedView, 202: m.RemovedView},
        ("invalid_parameter",),
    ),
    "WebinarStatus": (
        "get",
        "/orgs/{orgId}/webinar/status",
        "The org's health: credentials, token, webinars, registrations, rejected messages, warnings",
        None,
        {200: m.StatusView},
        ("invalid_body", "invalid_parameter"),
    ),
    "PullWebinar": (
        "post",
        "/orgs/{orgId}/webinars/{webinarId}/pull",
        "Pull one webinar's attendance into CRM now",
        None,
        {200: m.PullDone, 202: m.PullAccepted},
        PULL_ERRORS,
    ),
    "ForgetAttendee": (
        "post",
        "/orgs/{orgId}/webinar/forget",
        "Erase one person (by email) from the org's state and from ON24",
        ForgetBody,
        {200: m.ForgetView},
        ("invalid_body", "invalid_field", "erasure_incomplete"),
    ),
    "Reconcile": (
        "post",
        "/orgs/{orgId}/webinars/{webinarId}/reconcile",
        "Compare CRM, the ledger and ON24 for one webinar; with repair=true also repair the drift",
        None,
        {200: m.ReconcileDone, 202: m.ReconcileAccepted},
        ("invalid_webinar_id", "invalid_parameter", "invalid_body", "webinar_not_found", "not_configured",
         "credentials_unreadable", "no_dataverse_url", "reconcile_failed"),
    ),
    "OperationStatus": (
        "get",
        "/orgs/{orgId}/operations/{operationId}",
        "A long operation (pull, purge, reconcile): 202 while it runs, 200 with its outcome",
        None,
        {200: m.OperationView, 202: m.OperationView},
        ("invalid_operation_id", "invalid_body", "operation_not_found"),
    ),
}
PARAMETERS = {
    "orgId": "the org's id in CRM (a GUID in any case, or 1-64 letters, digits, '.', '_', '-')",
    "webinarId": "the ON24 event id (positive digits)",
    "operationId": "the id in the Location of a 202 (32 hex digits)",
}


def route_codes(operation_id: str) -> tuple[str, ...]:
    """Every error code the route can answer, in the table's order."""
    own = ROUTES[operation_id][5]
    wanted = set(own) | set(COMMON_ERRORS) | set(SERVER_ERRORS)
    return tuple(code for code in ERROR_CODES if code in wanted)


@cache
def openapi_document(provider_fields: type[BaseModel]) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (built once per process)."""
    models: list[type[BaseModel]] = [m.ErrorResponse, ForgetBody]
    for spec in ROUTES.values():
        models.extend(spec[4].values())
    inputs = [(model, "serialization") for model in dict.fromkeys(models)]
    _, defs = models_json_schema(
        [*inputs, (provider_fields, "validation"), (OrgFields, "validation")],  # type: ignore[list-item]
        ref_template=REF,
        by_alias=True,
    )
    schemas: dict[str, Any] = dict(sorted(defs.get("$defs", {}).items()))
    schemas["CredentialsInput"] = _credentials_input(schemas.pop(provider_fields.__name__), schemas.pop("OrgFields"))
    paths: dict[str, dict[str, Any]] = {}
    for operation_id, (method, path, summary, body, answers, _codes) in ROUTES.items():
        paths.setdefault(path, {})[method] = _operation(operation_id, path, summary, body, answers)
    paths["/openapi.json"] = {"get": _openapi_operation()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ON24 webinar integration: admin API",
            "version": API_VERSION,
            "description": (
                "Connect an org, check it, pull a webinar, forget a person, switch off and leave. Errors are the "
                "Microsoft REST API guidelines' error object ({error: {code, message, target}}), one HTTP status "
                "per code; 503 and 429 carry Retry-After. Long operations answer 202 with the Location of an "
                "operation and Retry-After (the async request-reply pattern). Who may call: with App Service "
                "authentication on, a signed-in session or an Entra ID token whose principal holds the app role; "
                "without it, the app's admin key (ADMIN_API_KEY) in x-functions-key."
            ),
        },
        "servers": [{"url": "/api"}],
        "security": [{"functionKey": []}, {"functionKeyQuery": []}, {"entraId": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "functionKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "the app's ADMIN_API_KEY (deployments without App Service authentication)",
                },
                "functionKeyQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "code",
                    "description": "the same key as a query value",
                },
                "entraId": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "with App Service authentication: an Entra ID token for the app (or the signed-in "
                    "session's cookie); its principal needs the app role ADMIN_ROLE",
                },
            },
        },
    }


def _credentials_input(provider: dict[str, Any], org: dict[str, Any]) -> dict[str, Any]:
    """The ``PUT`` body: the provider's fields and the org's, no others."""
    return {
        "title": "CredentialsInput",
        "type": "object",
        "description": "the webinar provider's fields and the org's (Dataverse URL, webinars to pull)",
        "properties": {**provider["properties"], **org["properties"]},
        "required": list(provider.get("required", [])) + list(org.get("required", [])),
        "additionalProperties": False,
    }


def _operation(
    operation_id: str, path: str, summary: str, body: Any, answers: dict[int, type[BaseModel]]
) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "description": text, "schema": {"type": "string"}}
        for name, text in PARAMETERS.items()
        if "{" + name + "}" in path
    ]
    flags = {
        "repair": "also repair the drift through the normal registration path (audited)",
        "driftIds": "also list the drifting registrations' CRM ids (never an email)",
    }
    for name, text in flags.items() if operation_id == "Reconcile" else ():
        parameters.append(
            {"name": name, "in": "query", "required": False, "description": text,
             "schema": {"type": "boolean", "default": False}}
        )  # fmt: skip
    if operation_id == "WebinarStatus":
        parameters.append(
            {"name": "driftIds", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
             "description": "each webinar's reconciliation also lists the drifting registrations' CRM ids"}
        )  # fmt: skip
    if operation_id == "RemoveCredentials":
        parameters.append(
            {
                "name": "purge",
                "in": "query",
                "required": False,
                "description": "also delete every row of the org's state (200 when done, 202 while the timer goes on)",
                "schema": {"type": "boolean", "default": False},
            }
        )
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "parameters": parameters,
        "responses": {},
    }
    if body is not None:
        name = "CredentialsInput" if body == "credentials" else body.__name__
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=name)}}},
        }
    for status, model in answers.items():
        response: dict[str, Any] = {
            "description": "done" if status == 200 else "accepted: poll the operation in Location",
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}},
        }
        if status == 202:
            response["headers"] = {
                "Location": {"description": "the operation to poll", "schema": {"type": "string"}},
                "Retry-After": {"description": "seconds to wait before polling", "schema": {"type": "integer"}},
            }
        operation["responses"][str(status)] = response
    by_status: dict[int, list[str]] = {}
    for code in route_codes(operation_id):
        by_status.setdefault(ERROR_CODES[code][0], []).append(code)
    for status, codes in sorted(by_status.items()):
        operation["responses"][str(status)] = _error_response(status, codes)
    return operation


def _error_response(status: int, codes: list[str]) -> dict[str, Any]:
    lines = "; ".join(f"{code}: {ERROR_CODES[code][1]}" for code in codes)
    response: dict[str, Any] = {
        "description": lines,
        "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}},
    }
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
        }
    return response


def _openapi_operation() -> dict[str, Any]:
    return {
        "operationId": "OpenApi",
        "summary": "This description (OpenAPI 3.1)",
        "responses": {"200": {"description": "the document", "content": {"application/json": {"schema": {}}}}},
    }
