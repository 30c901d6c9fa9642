"""``POST /api/orgs/{orgId}/webinars/{webinarId}/reconcile[?repair=true][&driftIds=true]``: reconcile one webinar.

The request is recorded first (on the webinar's reconciliation row), then tried within
``ON_DEMAND_PULL_BUDGET_SECONDS``: ``200`` with the counts when it finishes; otherwise ``202`` with the ``Location``
of an operation (``operations_http``) and a ``Retry-After``, and the next PullMetrics timer run finishes it
(requests before the daily work); the operation answers ``200`` once the webinar's row says it was done. Same
authorisation, error shape and org-id rules as ``admin_http``. Audited: who asked, for which webinar, whether to
repair; the repair's own audit line says how many registrations it re-drove.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import azure.functions as func

from shared.api_models import ReconcileAccepted, ReconcileDone
from shared.app import App
from shared.entrypoints.admin_http import Caller, no_body, respond
from shared.entrypoints.http_errors import Answer, ApiError
from shared.entrypoints.operations import accepted
from shared.entrypoints.params import query_flag
from shared.errors import DecryptionError, NotConfiguredError, NotFoundError, PermanentError, TransientError
from shared.ids import is_webinar_id

_log = logging.getLogger(__name__)


def post_reconcile(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """Reconcile: record the request, try it now; 200 with the counts, or 202 and the operation to poll."""

    def run(org_id: str, caller: Caller) -> dict[str, Any] | Answer:
        webinar_id = _webinar_id(req.route_params.get("webinarId"))
        repair, with_ids = query_flag(req.params, "repair"), query_flag(req.params, "driftIds")
        no_body(req.get_body())
        from shared import reconcile

        org = app.credentials.get(org_id)
        if org is None:
            raise ApiError(409, "not_configured", "no ON24 credentials are stored for this org")
        try:
            crm = app.crm_for(org)
        except ValueError as exc:  # a Dataverse URL the app's identity may not send a token to
            raise ApiError(422, "reconcile_failed", f"the org's Dataverse URL cannot be used: {exc}"[:600]) from None
        if crm is None:
            raise ApiError(409, "no_dataverse_url", "the org has no Dataverse URL and DATAVERSE_URL is not set")
        _log.info(
            "audit: reconciliation of webinar %s for org %s asked by %s (repair: %s)",
            webinar_id, org_id, caller.name, repair,
            extra={"org_id": org_id, "on24_event_id": webinar_id, "actor": caller.name, "repair": repair,
                   "audit": "reconcile.requested"},
        )  # fmt: skip
        ports = app.reconcile_ports()
        reconcile.request(ports, org_id, webinar_id, repair=repair, actor=caller.name)
        deadline = time.monotonic() + app.settings.on_demand_pull_budget_seconds
        try:
            result = reconcile.reconcile_webinar(
                ports, org_id, webinar_id, repair=repair, actor=caller.name, deadline=deadline
            )
        except reconcile.OverBudget as exc:
            return _accepted(app, org_id, webinar_id, repair, caller.name, str(exc))
        except NotConfiguredError:
            raise ApiError(409, "not_configured", "no ON24 credentials are stored for this org") from None
        except DecryptionError as exc:
            raise ApiError(409, "credentials_unreadable", str(exc)) from None
        except NotFoundError as exc:
            raise ApiError(404, "webinar_not_found", f"webinar {webinar_id}: {exc}"[:600]) from None
        except TransientError as exc:
            raise ApiError(503, "unavailable", f"{exc}; the next PullMetrics run tries it again"[:600]) from None
        except PermanentError as exc:
            raise ApiError(422, "reconcile_failed", str(exc)[:600]) from None
        if result.status == "partial":
            return _accepted(app, org_id, webinar_id, repair, caller.name, "the repair ran out of time")
        return reconcile.reconciliation_view(result, with_ids=with_ids)

    return respond(req, app, "POST", run, {200: ReconcileDone, 202: ReconcileAccepted})


def _accepted(app: App, org_id: str, webinar_id: str, repair: bool, actor: str, why: str) -> Answer:
    """202 with an operation the timer's reconciliation answers (its id is the webinar row's open request)."""
    from shared import reconcile

    payload = {
        "orgId": org_id,
        "webinarId": webinar_id,
        "status": "in_progress",
        "repair": repair,
        "message": f"{why}: the next PullMetrics run reconciles it",
    }
    answer = accepted(app, org_id, payload, "reconcile", webinar_id)
    operation_id = answer.payload["operation"]["id"]
    reconcile.request(app.reconcile_ports(), org_id, webinar_id, repair=repair, actor=actor, request_id=operation_id)
    return answer


def _webinar_id(raw: str | None) -> str:
    value = (raw or "").strip()
    if not is_webinar_id(value):
        raise ApiError(400, "invalid_webinar_id", "webinarId must be a positive ON24 event id", "webinarId")
    return str(int(value))
