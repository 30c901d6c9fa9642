"""GET /api/orgs/{orgId}/webinar/status: is the integration working for this org? (credentials, token, webinars,
registrations, rejected messages; no secrets)."""

import azure.functions as func

from shared.app import get_app
from shared.entrypoints import operations_http


def main(req: func.HttpRequest) -> func.HttpResponse:
    return operations_http.get_webinar_status(req, get_app())
