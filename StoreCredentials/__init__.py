"""PUT /api/orgs/{orgId}/webinar/credentials: check an org's ON24 credentials, seal and store them."""

import azure.functions as func

from shared import admin_api
from shared.app import get_app


def main(req: func.HttpRequest) -> func.HttpResponse:
    return admin_api.put_credentials(req, get_app())
