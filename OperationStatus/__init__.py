"""GET /api/orgs/{orgId}/operations/{operationId}: a long operation a 202 pointed at (an on-demand pull, a purge).

202 with Retry-After while it runs; 200 with its outcome (succeeded, or failed with the error object) when done.
"""

import azure.functions as func

from shared.app import get_app
from shared.entrypoints import operations_http


def main(req: func.HttpRequest) -> func.HttpResponse:
    return operations_http.get_operation(req, get_app())
