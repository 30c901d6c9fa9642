"""POST /api/orgs/{orgId}/webinars/{webinarId}/reconcile[?repair=true]: compare CRM, the ledger and ON24 for one
webinar (and repair the drift through the normal registration path).

200 with the counts when it finishes within the request, or 202 and where to follow it when the PullMetrics timer
finishes it.
"""

import azure.functions as func

from shared.app import get_app
from shared.entrypoints import reconcile_http


def main(req: func.HttpRequest) -> func.HttpResponse:
    return reconcile_http.post_reconcile(req, get_app())
