"""The admin routes about work over time: the org's status, an on-demand pull, the operations a ``202`` points at,
and the API's own OpenAPI description. Same authorisation, error shape and org-id rules as ``admin_http``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import azure.functions as func

from shared.api_models import OperationView, PullAccepted, PullDone, StatusView
from shared.app import App
from shared.entrypoints.admin_http import Caller, no_body, respond
from shared.entrypoints.http_errors import Answer, ApiError, json_response
from shared.entrypoints.operations import accepted, operation_ports
from shared.entrypoints.params import query_flag
from shared.errors import (
    CredentialsRejectedError,
    DecryptionError,
    NotConfiguredError,
    PermanentError,
    TransientError,
)
from shared.ids import is_webinar_id
from shared.operations import POLL_SECONDS, current, href, view
from shared.store.operations import OPERATION_ID

if TYPE_CHECKING:
    from shared.metrics import WebinarReport

_log = logging.getLogger(__name__)


def get_operation(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """OperationStatus: ``202`` (and ``Retry-After``) while the operation runs, ``200`` with its outcome when done."""

    def run(org_id: str, _caller: Caller) -> Answer:
        operation_id = (req.route_params.get("operationId") or "").strip().lower()
        if not OPERATION_ID.match(operation_id):
            raise ApiError(400, "invalid_operation_id", "operationId must be 32 hex digits", "operationId")
        no_body(req.get_body())
        operation = current(operation_ports(app), org_id, operation_id)
        if operation is None:
            raise ApiError(404, "operation_not_found", f"org {org_id} has no operation {operation_id}")
        if operation.status == "running":
            return Answer(202, view(operation), {"Retry-After": str(POLL_SECONDS), "Location": href(operation)})
        return Answer(200, view(operation))

    return respond(req, app, "GET", run, {200: OperationView, 202: OperationView})


def get_openapi(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """OpenApi: the admin API's OpenAPI 3.1 description (the same document as ``docs/openapi.json``)."""
    from shared.openapi import openapi_document

    if req.method.upper() != "GET":
        return json_response(405, {"error": {"code": "method_not_allowed", "message": "use GET on this route"}})
    return json_response(200, openapi_document(app.credentials_fields))


# ---- health and on-demand pull (issue 11) -------------------------------------------------------------------
def get_webinar_status(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """WebinarStatus: the org's health (credentials, token use, webinars, registrations, rejected messages)."""

    def run(org_id: str, _caller: Caller) -> dict[str, Any]:
        no_body(req.get_body())
        from shared import health

        return health.org_status(org_id, app.status_ports(), drift_ids=query_flag(req.params, "driftIds"))

    return respond(req, app, "GET", run, {200: StatusView})


def post_webinar_pull(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """PullWebinar: pull one webinar's metrics now; 200 with the counts, or 202 and the operation to poll."""

    def run(org_id: str, caller: Caller) -> dict[str, Any] | Answer:
        webinar_id = _webinar_id(req.route_params.get("webinarId"))
        no_body(req.get_body())
        _log.info(
            "audit: on-demand pull of webinar %s for org %s by %s",
            webinar_id,
            org_id,
            caller.name,
            extra={"org_id": org_id, "on24_event_id": webinar_id, "actor": caller.name, "audit": "metrics.pulled"},
        )
        from shared.metrics import pull_webinar

        try:
            report = pull_webinar(
                app.metrics_ports(),
                app.metrics_options(),
                org_id,
                webinar_id,
                budget_seconds=app.settings.on_demand_pull_budget_seconds,
            )
        except NotConfiguredError:
            raise ApiError(409, "not_configured", "no ON24 credentials are stored for this org") from None
        except CredentialsRejectedError:
            raise ApiError(
                409, "stored_credentials_rejected", "ON24 refused the org's stored credentials: PUT working ones"
            ) from None
        except DecryptionError as exc:
            raise ApiError(409, "credentials_unreadable", str(exc)) from None
        except TransientError as exc:
            message = f"{exc}; nothing more was pulled, the next run or call continues"
            raise ApiError(503, "unavailable", message[:600]) from None
        except PermanentError as exc:
            raise ApiError(422, "pull_failed", str(exc)[:600]) from None
        return _pull_answer(app, org_id, webinar_id, report)

    return respond(req, app, "POST", run, {200: PullDone, 202: PullAccepted})


def _pull_answer(app: App, org_id: str, webinar_id: str, report: WebinarReport) -> dict[str, Any] | Answer:
    payload: dict[str, Any] = {"orgId": org_id, "webinarId": webinar_id, "status": report.status}
    if report.status == "ok":
        return payload | {"counts": report.counts}
    if report.status in ("partial", "busy"):
        message = (
            "the pull did not finish within this request: it continues in the next PullMetrics run (or POST again)"
            if report.status == "partial"
            else "a PullMetrics run is pulling this webinar now"
        )
        payload |= {"status": "in_progress", "counts": report.counts, "message": message}
        return accepted(app, org_id, payload, "pull", webinar_id)
    if report.status == "not found":
        raise ApiError(404, "webinar_not_found", f"ON24 has no webinar {webinar_id} for this org's account")
    raise ApiError(409, "no_dataverse_url", report.error or "the org has no Dataverse URL")


def _webinar_id(raw: str | None) -> str:
    value = (raw or "").strip()
    if not is_webinar_id(value):
        raise ApiError(400, "invalid_webinar_id", "webinarId must be a positive ON24 event id", "webinarId")
    return str(int(value))
