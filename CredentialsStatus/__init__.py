"""GET /api/orgs/{orgId}/webinar/credentials: whether the integration is configured for an org (no secrets)."""

import azure.functions as func

from shared import admin_api
from shared.app import get_app


def main(req: func.HttpRequest) -> func.HttpResponse:
    return admin_api.get_credentials_status(req, get_app())
