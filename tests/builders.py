"""Builders for realistic inputs: Dataverse RemoteExecutionContext bodies, canonical messages, CRM rows."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"


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


def canonical_body(
    *,
    org_id: str,
    registration_id: str,
    event_id: str,
    action: str = "register",
    on24_event_id: str | None = None,
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
    if on24_event_id is not None:
        body["on24EventId"] = on24_event_id
    if attendee is not None:
        body["attendee"] = attendee
    if occurred_at is not None:
        body["occurredAt"] = occurred_at.isoformat()
    return body


class CrmOrg:
    """Seeds the Dataverse stand-in with an org's event, accounts, contacts and registrations."""

    def __init__(self, dataverse: Any, *, webinar_id: str | None) -> None:
        self.dataverse = dataverse
        self.account_id = dataverse.add_row("accounts", {"name": "Fabrikam Ltd"})
        self.event_id = dataverse.add_row(
            "msevtmgt_events",
            {
                "msevtmgt_name": "Quarterly product webinar",
                "msevtmgt_webinarid": webinar_id,
                "msevtmgt_eventformat": 100000002,
            },
        )

    def contact(self, first: str, last: str, email: str | None, **extra: Any) -> str:
        row: dict[str, Any] = {
            "firstname": first,
            "lastname": last,
            "fullname": f"{first} {last}",
            "emailaddress1": email,
            "jobtitle": "Engineer",
            "address1_country": "Germany",
            "company": "+49 30 1234567",
            "parentcustomerid": self.account_id,
        }
        row.update(extra)
        return str(self.dataverse.add_row("contacts", row))

    def registration(self, contact_id: str, **extra: Any) -> str:
        row: dict[str, Any] = {
            "msevtmgt_name": f"REG-{uuid.uuid4().hex[:8]}",
            "msevtmgt_eventid": self.event_id,
            "msevtmgt_contactid": contact_id,
            "msevtmgt_iscanceled": False,
            "statecode": 0,
        }
        row.update(extra)
        return str(self.dataverse.add_row("msevtmgt_eventregistrations", row))
