"""Trigger inputs built the way the Functions host builds them, shared by the tests, the demo and benchmarks.

``service_bus_message`` goes through the ``azure.functions`` library's own converter with the PascalCase
trigger metadata the host sends; ``dataverse_body`` is a RemoteExecutionContext as Dataverse posts it to
Service Bus (DataContractJsonSerializer: compact, ``\\/`` escapes, ``\\/Date(ms)\\/`` dates).
"""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import azure.functions as func
from azure.functions import meta
from azure.functions.servicebus import ServiceBusMessageInConverter

_SEQUENCE = itertools.count(1)  # Service Bus numbers the messages of an entity uniquely and in order
CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"


def http_request(
    method: str,
    org_id: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> func.HttpRequest:
    """An admin request on the credentials route; ``body`` is JSON-encoded unless ``raw`` is given."""
    return admin_request(method, "orgs/{orgId}/webinar/credentials", {"orgId": org_id}, body, raw=raw, headers=headers)


def admin_request(
    method: str,
    route: str,
    route_params: dict[str, str],
    body: Any = None,
    *,
    params: dict[str, str] | None = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> func.HttpRequest:
    """A request on any admin route, e.g. ``admin_request("POST", "orgs/{orgId}/webinars/{webinarId}/pull",
    {"orgId": org, "webinarId": "4471234"})``, with query ``params``; ``body`` is JSON-encoded unless ``raw``
    is given."""
    if raw is None:
        raw = b"" if body is None else json.dumps(body).encode("utf-8")
    query = "?" + urlencode(params) if params else ""
    return func.HttpRequest(
        method=method,
        url="http://localhost:7071/api/" + route.format(**route_params) + query,
        headers={"Content-Type": "application/json", **(headers or {})},
        params=dict(params or {}),
        route_params=dict(route_params),
        body=raw,
    )


def service_bus_message(
    body: bytes | str | dict[str, Any],
    *,
    message_id: str | None = None,
    delivery_count: int = 1,
    enqueued_time: datetime | None = None,
    content_type: str | None = "application/json",
    application_properties: dict[str, Any] | None = None,
    sequence_number: int | None = None,
) -> func.ServiceBusMessage:
    """A Service Bus message exactly as the worker builds it: ``ServiceBusMessageInConverter.decode``
    over a body ``Datum`` and the PascalCase trigger metadata the host sends."""
    if isinstance(body, dict):
        body = json.dumps(body)
    raw = body.encode("utf-8") if isinstance(body, str) else body
    enqueued = enqueued_time or datetime.now(UTC)
    metadata: dict[str, meta.Datum] = {
        "MessageId": meta.Datum(uuid.uuid4().hex if message_id is None else message_id, "string"),
        "DeliveryCount": meta.Datum(delivery_count, "int"),
        "EnqueuedTimeUtc": meta.Datum(enqueued.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z", "string"),
        "SequenceNumber": meta.Datum(next(_SEQUENCE) if sequence_number is None else sequence_number, "int"),
        "LockToken": meta.Datum(str(uuid.uuid4()), "string"),
        "UserProperties": meta.Datum(json.dumps(application_properties or {}), "json"),
        "ApplicationProperties": meta.Datum(json.dumps(application_properties or {}), "json"),
    }
    if content_type is not None:
        metadata["ContentType"] = meta.Datum(content_type, "string")
    message = ServiceBusMessageInConverter.decode(meta.Datum(raw, "bytes"), trigger_metadata=metadata)
    assert isinstance(message, func.ServiceBusMessage)
    return message


def dataverse_properties(request_name: str, *, organization: str = "contoso.crm.dynamics.com") -> dict[str, Any]:
    """The application properties Dataverse sets on a RemoteExecutionContext message."""
    claims = "http://schemas.microsoft.com/xrm/2011/Claims/"
    return {
        f"{claims}Organization": organization,
        f"{claims}User": "8d3f0c36-55ad-4f0e-8a0a-4a1b3f9a2b10",
        f"{claims}InitiatingUser": "8d3f0c36-55ad-4f0e-8a0a-4a1b3f9a2b10",
        f"{claims}EntityLogicalName": "msevtmgt_eventregistration",
        f"{claims}RequestName": request_name,
        f"{claims}InitiatingUserAgent": "Mozilla/5.0",
    }


def _date(moment: datetime) -> str:
    return f"/Date({int(moment.timestamp() * 1000)})/"


def _ref(logical_name: str, row_id: str) -> dict[str, Any]:
    return {
        "__type": f"EntityReference:{CONTRACTS}",
        "Id": row_id,
        "KeyAttributes": [],
        "LogicalName": logical_name,
        "Name": None,
        "RowVersion": None,
    }


def dataverse_body(
    *,
    org_id: str,
    registration_id: str,
    message: str = "Create",
    event_id: str | None = None,
    contact_id: str | None = None,
    canceled: bool | None = None,
    statecode: int | None = None,
    at: datetime | None = None,
) -> bytes:
    """A compact RemoteExecutionContext for msevtmgt_eventregistration, with DataContractJsonSerializer's
    ``\\/`` escapes and ``\\/Date(ms)\\/`` dates, as Dataverse posts it to Service Bus."""
    at = at or datetime.now(UTC)
    attributes: list[dict[str, Any]] = []
    if event_id:
        attributes.append({"key": "msevtmgt_eventid", "value": _ref("msevtmgt_event", event_id)})
    if contact_id:
        attributes.append({"key": "msevtmgt_contactid", "value": _ref("contact", contact_id)})
    if canceled is not None:
        attributes.append({"key": "msevtmgt_iscanceled", "value": canceled})
    if statecode is not None:
        attributes.append({"key": "statecode", "value": {"__type": f"OptionSetValue:{CONTRACTS}", "Value": statecode}})
    attributes.append({"key": "msevtmgt_eventregistrationid", "value": registration_id})
    attributes.append({"key": "modifiedon", "value": _date(at)})
    target = {
        "__type": f"Entity:{CONTRACTS}",
        "Attributes": attributes,
        "EntityState": None,
        "FormattedValues": [],
        "Id": registration_id,
        "KeyAttributes": [],
        "LogicalName": "msevtmgt_eventregistration",
        "RelatedEntities": [],
        "RowVersion": "1234567",
    }
    context = {
        "BusinessUnitId": str(uuid.uuid4()),
        "CorrelationId": str(uuid.uuid4()),
        "Depth": 1,
        "InitiatingUserId": str(uuid.uuid4()),
        "InputParameters": [{"key": "Target", "value": target}],
        "IsExecutingOffline": False,
        "IsInTransaction": False,
        "IsOfflinePlayback": False,
        "IsolationMode": 1,
        "MessageName": message,
        "Mode": 1,
        "OperationCreatedOn": _date(at)[:-2] + "+0000)/",
        "OperationId": str(uuid.uuid4()),
        "OrganizationId": org_id,
        "OrganizationName": "unqcontoso",
        "OutputParameters": [{"key": "id", "value": registration_id}] if message == "Create" else [],
        "OwningExtension": {
            "Id": str(uuid.uuid4()),
            "KeyAttributes": [],
            "LogicalName": "sdkmessageprocessingstep",
            "Name": "ON24 registration push",
            "RowVersion": None,
        },
        "ParentContext": None,
        "PostEntityImages": [],
        "PreEntityImages": [],
        "PrimaryEntityId": registration_id,
        "PrimaryEntityName": "msevtmgt_eventregistration",
        "RequestId": str(uuid.uuid4()),
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "Stage": 40,
        "UserId": str(uuid.uuid4()),
    }
    return json.dumps(context, separators=(",", ":")).replace("/", "\\/").encode("utf-8")


def dataverse_delete_body(
    *, org_id: str, entity: str, row_id: str, at: datetime | None = None, email: str | None = None
) -> bytes:
    """A RemoteExecutionContext for the Delete of a registration or a contact (Target is an EntityReference);
    ``email`` adds a pre-image with the contact's ``emailaddress1``, as a step registered with one sends."""
    at = at or datetime.now(UTC)
    pre = []
    if email is not None:
        image = {"Attributes": [{"key": "emailaddress1", "value": email}], "Id": row_id, "LogicalName": entity}
        pre = [{"key": "PreImage", "value": image}]
    context = {
        "BusinessUnitId": str(uuid.uuid4()),
        "CorrelationId": str(uuid.uuid4()),
        "Depth": 1,
        "InputParameters": [{"key": "Target", "value": _ref(entity, row_id)}],
        "MessageName": "Delete",
        "Mode": 1,
        "OperationCreatedOn": _date(at)[:-2] + "+0000)/",
        "OrganizationId": org_id,
        "PostEntityImages": [],
        "PreEntityImages": pre,
        "PrimaryEntityId": row_id,
        "PrimaryEntityName": entity,
        "Stage": 40,
    }
    return json.dumps(context, separators=(",", ":")).replace("/", "\\/").encode("utf-8")


def canonical_body(
    *,
    org_id: str,
    registration_id: str,
    event_id: str,
    action: str = "register",
    webinar_id: str | None = None,
    attendee: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schema": "webinar-registration/1",
        "orgId": org_id,
        "action": action,
        "registrationId": registration_id,
        "eventId": event_id,
    }
    if webinar_id is not None:
        body["on24EventId"] = webinar_id
    if attendee is not None:
        body["attendee"] = attendee
    if occurred_at is not None:
        body["occurredAt"] = occurred_at.isoformat()
    return body
