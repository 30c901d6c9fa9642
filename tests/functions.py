"""Build trigger objects with the ``azure.functions`` library's own types and converters, as the worker does."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.servicebus import ServiceBusMessageInConverter

CREDENTIALS_ROUTE = "http://localhost:7071/api/orgs/{org}/webinar/credentials"


def http_request(
    method: str,
    org_id: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> func.HttpRequest:
    """An admin request on the credentials route; ``body`` is JSON-encoded unless ``raw`` is given."""
    if raw is None:
        raw = b"" if body is None else json.dumps(body).encode("utf-8")
    return func.HttpRequest(
        method=method,
        url=CREDENTIALS_ROUTE.format(org=org_id),
        headers={"Content-Type": "application/json", **(headers or {})},
        params={},
        route_params={"orgId": org_id},
        body=raw,
    )


def principal_headers(name: str, roles: list[str]) -> dict[str, str]:
    """App Service authentication headers for a signed-in principal with app roles."""
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
    }


def json_body(response: func.HttpResponse) -> Any:
    assert response.mimetype == "application/json"
    return json.loads(response.get_body())


def service_bus_message(
    body: bytes | str | dict[str, Any],
    *,
    message_id: str | None = None,
    delivery_count: int = 1,
    enqueued_time: datetime | None = None,
    content_type: str | None = "application/json",
    application_properties: dict[str, Any] | None = None,
) -> func.ServiceBusMessage:
    """A Service Bus message exactly as the worker builds it: ``ServiceBusMessageInConverter.decode``
    over a body ``Datum`` and the PascalCase trigger metadata the host sends."""
    if isinstance(body, dict):
        body = json.dumps(body)
    raw = body.encode("utf-8") if isinstance(body, str) else body
    enqueued = enqueued_time or datetime.now(UTC)
    metadata: dict[str, meta.Datum] = {
        "MessageId": meta.Datum(message_id or uuid.uuid4().hex, "string"),
        "DeliveryCount": meta.Datum(delivery_count, "int"),
        "EnqueuedTimeUtc": meta.Datum(enqueued.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z", "string"),
        "SequenceNumber": meta.Datum(int(enqueued.timestamp() * 1000), "int"),
        "LockToken": meta.Datum(str(uuid.uuid4()), "string"),
        "UserProperties": meta.Datum(json.dumps(application_properties or {}), "json"),
        "ApplicationProperties": meta.Datum(json.dumps(application_properties or {}), "json"),
    }
    if content_type is not None:
        metadata["ContentType"] = meta.Datum(content_type, "string")
    message = ServiceBusMessageInConverter.decode(meta.Datum(raw, "bytes"), trigger_metadata=metadata)
    assert isinstance(message, func.ServiceBusMessage)
    return message


def dataverse_properties(request_name: str) -> dict[str, Any]:
    """The application properties Dataverse sets on a RemoteExecutionContext message."""
    claims = "http://schemas.microsoft.com/xrm/2011/Claims/"
    return {
        f"{claims}Organization": "contoso.crm.dynamics.com",
        f"{claims}User": "8d3f0c36-55ad-4f0e-8a0a-4a1b3f9a2b10",
        f"{claims}InitiatingUser": "8d3f0c36-55ad-4f0e-8a0a-4a1b3f9a2b10",
        f"{claims}EntityLogicalName": "msevtmgt_eventregistration",
        f"{claims}RequestName": request_name,
        f"{claims}InitiatingUserAgent": "Mozilla/5.0",
    }
