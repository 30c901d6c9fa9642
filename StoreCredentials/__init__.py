"""PUT /api/orgs/{orgId}/webinar/credentials: check an org's ON24 credentials, seal and store them."""

import azure.functions as func

from shared.app import get_app
from shared.entrypoints import admin_http


def main(req: func.HttpRequest) -> func.HttpResponse:
    return admin_http.put_credentials(req, get_app())
