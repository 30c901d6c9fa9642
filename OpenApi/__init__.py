"""GET /api/openapi.json: the admin API's OpenAPI 3.1 description (the same document as docs/openapi.json)."""

import azure.functions as func

from shared.app import get_app
from shared.entrypoints import operations_http


def main(req: func.HttpRequest) -> func.HttpResponse:
    return operations_http.get_openapi(req, get_app())
