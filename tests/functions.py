"""Test helpers around trigger objects; the builders themselves live in ``sandbox.triggers``."""

from __future__ import annotations

import base64
import json
from typing import Any

import azure.functions as func

from sandbox.triggers import admin_request, dataverse_properties, http_request, service_bus_message
from tests.logscan import allow_in_logs

__all__ = [
    "admin_request",
    "dataverse_properties",
    "http_request",
    "json_body",
    "principal_headers",
    "service_bus_message",
]


def principal_headers(name: str, roles: list[str]) -> dict[str, str]:
    """App Service authentication headers for a signed-in principal with app roles, from the admin page.

    The principal's name may be logged (audit lines say who acted), so it is allowed in the log scan.
    """
    allow_in_logs(name)
    principal = {
        "auth_typ": "aad",
        "name_typ": "name",
        "role_typ": "roles",
        "claims": [{"typ": "name", "val": name}] + [{"typ": "roles", "val": role} for role in roles],
    }
    return {
        "X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(principal).encode()).decode(),
        "X-MS-CLIENT-PRINCIPAL-NAME": name,
        "X-MS-CLIENT-PRINCIPAL-ID": "11111111-2222-3333-4444-555555555555",
        "X-Requested-With": "XMLHttpRequest",  # as the admin page sends it (a change without it is refused)
    }


def json_body(response: func.HttpResponse) -> Any:
    assert response.mimetype == "application/json"
    return json.loads(response.get_body())
