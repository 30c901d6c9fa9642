"""DELETE /api/orgs/{orgId}/webinar/credentials: the off switch, disabling the integration for an org."""

import azure.functions as func

from shared.app import get_app
from shared.entrypoints import admin_http


def main(req: func.HttpRequest) -> func.HttpResponse:
    return admin_http.delete_credentials(req, get_app())
