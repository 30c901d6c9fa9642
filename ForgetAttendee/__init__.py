"""POST /api/orgs/{orgId}/webinar/forget: erase one person (by email) from the org's state and from ON24."""

import azure.functions as func

from shared.app import get_app
from shared.entrypoints import admin_http


def main(req: func.HttpRequest) -> func.HttpResponse:
    return admin_http.post_forget(req, get_app())
