"""DELETE /api/orgs/{orgId}/webinar/credentials: the off switch, disabling the integration for an org."""

import azure.functions as func

from shared import admin_api
from shared.app import get_app


def main(req: func.HttpRequest) -> func.HttpResponse:
    return admin_api.delete_credentials(req, get_app())
