"""POST /api/orgs/{orgId}/webinars/{webinarId}/pull: pull one webinar's ON24 metrics into CRM now.

200 with the counts, or 202 with the operation to poll (Location) when the pull continues after the request.
"""

import azure.functions as func

from shared.app import get_app
from shared.entrypoints import operations_http


def main(req: func.HttpRequest) -> func.HttpResponse:
    return operations_http.post_webinar_pull(req, get_app())
