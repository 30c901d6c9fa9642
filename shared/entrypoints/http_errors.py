"""The admin API's one error shape: the Microsoft REST API guidelines' error object, one HTTP status per code.

Body: ``{"error": {"code": "<stable code>", "message": "<what to do>", "target": "<request field>"}}``, JSON.
``target`` names the request field at fault (only when one is); ``field`` carries the same value for callers
written before ``target`` existed (deprecated). Every ``503`` and ``429`` carries ``Retry-After`` (seconds).

Why not RFC 9457 ``application/problem+json``: the routes already answered ``{"error": {"code", "message"}}``, so
existing flows keep working, and it is the shape Dataverse, Microsoft Graph and Power Automate's own actions
answer, so a flow reads ``body('…')?['error']?['code']`` the same way for this API as for theirs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import azure.functions as func

# code -> (HTTP status, when it is answered). The one place a code gets its status; the README's table and the
# OpenAPI description are checked against it.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "invalid_body": (
        400,
        "the body is missing, not UTF-8 JSON, not an object, over 8 KB, or sent to a route that takes none",
    ),
    "invalid_field": (400, "a body field breaks its rules (target names it)"),
    "invalid_parameter": (400, "a query parameter breaks its rules (target names it)"),
    "invalid_org_id": (400, "orgId is not 1-64 letters, digits, '.', '_' or '-'"),
    "invalid_webinar_id": (400, "webinarId is not a positive ON24 event id"),
    "invalid_operation_id": (400, "operationId is not an id this API hands out"),
    "unauthenticated": (401, "no signed-in principal (App Service authentication), or no or a wrong admin key"),
    "forbidden": (403, "the principal lacks the app role for this org, or a signed-in browser change is cross-site"),
    "webinar_not_found": (404, "ON24 has no such webinar for the org's account"),
    "operation_not_found": (404, "no such operation for this org (kept 30 days; a pull's goes when the org leaves)"),
    "method_not_allowed": (405, "another method is needed on this route"),
    "not_configured": (409, "no ON24 credentials are stored for the org: PUT them first"),
    "stored_credentials_rejected": (409, "ON24 refused the org's stored credentials: PUT working ones"),
    "credentials_unreadable": (
        409,
        "the stored credentials cannot be decrypted (key gone or changed): PUT them again",
    ),
    "no_dataverse_url": (409, "the org has no Dataverse URL and DATAVERSE_URL is not set"),
    "purge_in_progress": (409, "the org's data is being purged: wait for the purge to finish"),
    "on24_rejected_credentials": (422, "ON24 did not accept the credentials offered in the PUT; nothing was stored"),
    "dataverse_org_mismatch": (422, "the Dataverse URL answers for another org than orgId; nothing was stored"),
    "dataverse_unverified": (422, "the Dataverse URL could not be verified (WhoAmI); nothing was stored"),
    "pull_failed": (422, "ON24 or Dataverse refused the pull for a reason retrying cannot fix"),
    "reconcile_failed": (422, "ON24 or Dataverse refused the reconciliation for a reason retrying cannot fix"),
    "rejected": (422, "the request could not be carried out; nothing was changed"),
    "throttled": (429, "ON24 or storage asked the app to slow down: retry after Retry-After"),
    "configuration_error": (500, "the app is misconfigured (the message names the setting)"),
    "internal_error": (500, "an unexpected error; nothing was changed"),
    "unavailable": (503, "ON24, Dataverse, Key Vault or storage is unreachable: retry after Retry-After"),
    "erasure_incomplete": (503, "an erasure stopped part-way: send the same request again"),
}
RETRY_AFTER_SECONDS = 30  # a 503/429 without a hint from the service: long enough for one retry budget to pass


@dataclass(frozen=True)
class Answer:
    """A 2xx answer other than a plain 200 (e.g. 202 with a ``Location`` to follow)."""

    status: int
    payload: dict[str, Any]
    headers: dict[str, str] | None = None


class ApiError(Exception):
    """An answer other than 2xx, with a machine-readable code and the request field at fault if any."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.field = status, code, field
        self.retry_after = retry_after


def json_response(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(payload), status_code=status, mimetype="application/json", headers=headers)


def error_body(code: str, message: str, target: str | None = None) -> dict[str, Any]:
    """The error object; ``field`` repeats ``target`` for callers of earlier releases (deprecated)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if target:
        error |= {"target": target, "field": target}
    return {"error": error}


def error_response(exc: ApiError) -> func.HttpResponse:
    headers = None
    if exc.status in (429, 503):
        seconds = exc.retry_after if exc.retry_after is not None else RETRY_AFTER_SECONDS
        headers = {"Retry-After": str(max(1, min(3600, round(seconds))))}
    return json_response(exc.status, error_body(exc.code, str(exc), exc.field), headers)
