"""GET /api/orgs/{orgId}/webinar/credentials: whether the integration is configured for an org (no secrets)."""

import azure.functions as func

from shared.app import get_app
from shared.entrypoints import admin_http


def main(req: func.HttpRequest) -> func.HttpResponse:
    return admin_http.get_credentials_status(req, get_app())
