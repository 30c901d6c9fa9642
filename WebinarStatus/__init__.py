"""GET /api/orgs/{orgId}/webinar/status: is the integration working for this org? (credentials, token, webinars,
registrations, rejected messages; no secrets)."""

import azure.functions as func

from shared import admin_api
from shared.app import get_app


def main(req: func.HttpRequest) -> func.HttpResponse:
    return admin_api.get_webinar_status(req, get_app())
