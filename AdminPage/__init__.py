"""GET /api/admin: the admin page (static files from ./static; its data calls go through the admin routes).

Anonymous on purpose: the page holds no data and no secret; each call it makes to an admin route carries the
caller's own authorisation. The route is written ``{page:regex(^admin$)}`` because the Functions host refuses
routes that start with the literal ``admin`` (its own management API lives under /admin), yet the page's address
is /api/admin.
"""

from pathlib import Path

import azure.functions as func

from shared.app import get_app
from shared.entrypoints import admin_page

STATIC = Path(__file__).resolve().parent / "static"


def main(req: func.HttpRequest) -> func.HttpResponse:
    return admin_page.serve_page(req, STATIC, lambda: get_app().settings)
