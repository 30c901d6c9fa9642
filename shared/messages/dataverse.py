"""Dataverse's RemoteExecutionContext JSON (a service endpoint's message on Create, Update or Delete of
``msevtmgt_eventregistration``, or Delete of ``contact``; reference/dataverse-service-bus-message.md).

The registration id is ``PrimaryEntityId``, the org ``OrganizationId``; the contact, the event and the cancellation
state come from the row's images when Dataverse sent them, else the caller re-reads the registration.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic_core import PydanticCustomError

from shared.messages._commands import (
    NIL_GUID,
    ContactErasure,
    MessageError,
    RegistrationCommand,
    json_type,
    normalise_guid,
)
from shared.messages._text import email_address, iso_datetime

REGISTRATION_ENTITY = "msevtmgt_eventregistration"
"""The Dataverse table whose Create, Update and Delete messages are handled."""

CONTACT_ENTITY = "contact"
"""The Dataverse table whose Delete messages are handled (erasure of a person)."""

_SIZE_EXCEEDED_PROPERTY = "messagemaxsizeexceeded"
_FALSY_STRINGS = frozenset({"", "0", "false", "no", "off", "none", "null"})
_DOTNET_DATE_RE = re.compile(r"/Date\((-?[0-9]{1,15})(?:[+-][0-9]{4})?\)/")


def size_exceeded(properties: Mapping[str, object] | None) -> bool:
    """True when an application property ``MessageMaxSizeExceeded`` (bare or prefixed) is truthy."""
    if not properties:
        return False
    for key, value in properties.items():
        if not isinstance(key, str):
            continue
        name = key.rstrip("/").rsplit("/", 1)[-1].lower()
        if name == _SIZE_EXCEEDED_PROPERTY and _truthy(value):
            return True
    return False


def _truthy(value: object) -> bool:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        return value.strip().lower() not in _FALSY_STRINGS
    return bool(value)


def parse_dataverse(data: dict[str, Any], *, size_exceeded: bool) -> RegistrationCommand | ContactErasure:
    message_name = _dv_string(data, "MessageName")
    entity_name = _dv_string(data, "PrimaryEntityName")
    if message_name.lower() == "delete" and entity_name.lower() in {REGISTRATION_ENTITY, CONTACT_ENTITY}:
        return _parse_dataverse_delete(data, entity_name.lower())
    if entity_name.lower() != REGISTRATION_ENTITY or message_name.lower() not in {"create", "update"}:
        raise MessageError(
            "this Dataverse message (MessageName on PrimaryEntityName) is not handled: "
            f"only Create, Update and Delete of {REGISTRATION_ENTITY}, and Delete of {CONTACT_ENTITY}"
        )
    is_create = message_name.lower() == "create"
    org_id = _dv_guid(data.get("OrganizationId"), "OrganizationId")
    if org_id is None:
        raise MessageError("is required (a GUID)", field="OrganizationId")

    inputs = _key_values(data.get("InputParameters"), "InputParameters")
    target = inputs.get("Target")
    target_attrs: dict[str, Any] = {}
    target_id = None
    if target is not None:
        if not isinstance(target, dict):
            raise MessageError(
                f"must be an Entity object, not a JSON {json_type(target)}", field="InputParameters.Target"
            )
        logical_name = target.get("LogicalName")
        if logical_name is not None and (
            not isinstance(logical_name, str) or logical_name.lower() != entity_name.lower()
        ):
            raise MessageError(
                f"must be {REGISTRATION_ENTITY}", field="InputParameters.Target.LogicalName"
            )
        target_id = _dv_guid(target.get("Id"), "InputParameters.Target.Id", allow_nil=True)
        target_attrs = _key_values(target.get("Attributes"), "InputParameters.Target.Attributes")
    else:
        size_exceeded = True  # nothing tells us the row's state: the caller must re-read it

    registration_id = _row_id(data, target_id, "the registration's GUID")

    columns: dict[str, Any] = {}
    columns.update(_image_attributes(data.get("PreEntityImages"), "PreEntityImages"))
    columns.update(_image_attributes(data.get("PostEntityImages"), "PostEntityImages"))
    columns.update(target_attrs)

    cancelled = _is_cancelled(columns)
    if is_create:
        action: Literal["register", "update", "cancel"] = "cancel" if cancelled else "register"
    else:
        action = "cancel" if cancelled else "update"

    occurred_at = _dv_date(data.get("OperationCreatedOn"), "OperationCreatedOn")
    for column in ("modifiedon", "createdon"):
        if occurred_at is None:
            occurred_at = _dv_date(columns.get(column), f"Attributes.{column}")

    return RegistrationCommand(
        org_id=org_id,
        action=action,
        registration_id=registration_id,
        crm_event_id=_dv_reference_id(columns.get("msevtmgt_eventid"), "Attributes.msevtmgt_eventid"),
        contact_id=_dv_reference_id(columns.get("msevtmgt_contactid"), "Attributes.msevtmgt_contactid"),
        webinar_id=None,
        person=None,
        occurred_at=occurred_at,
        source="dataverse",
        size_exceeded=size_exceeded,
    )


def _parse_dataverse_delete(data: dict[str, Any], entity: str) -> RegistrationCommand | ContactErasure:
    """A deleted registration is forgotten; a deleted contact has every registration of it forgotten.

    Delete's ``Target`` is an EntityReference (no attributes); ``PrimaryEntityId`` names the row.
    """
    org_id = _dv_guid(data.get("OrganizationId"), "OrganizationId")
    if org_id is None:
        raise MessageError("is required (a GUID)", field="OrganizationId")
    target = _key_values(data.get("InputParameters"), "InputParameters").get("Target")
    target_id = _dv_reference_id(target, "InputParameters.Target") if target is not None else None
    row_id = _row_id(data, target_id, "the deleted row's GUID")
    occurred_at = _dv_date(data.get("OperationCreatedOn"), "OperationCreatedOn")
    if entity == CONTACT_ENTITY:
        email = _image_attributes(data.get("PreEntityImages"), "PreEntityImages").get("emailaddress1")
        try:
            email = email_address(email) if isinstance(email, str) else None
        except PydanticCustomError:
            email = None  # a malformed address cannot have been registered
        return ContactErasure(org_id=org_id, contact_id=row_id, email=email, occurred_at=occurred_at)
    return RegistrationCommand(
        org_id=org_id, action="forget", registration_id=row_id, occurred_at=occurred_at, source="dataverse"
    )


def _row_id(data: Mapping[str, Any], target_id: str | None, what: str) -> str:
    """The row a message is about: ``PrimaryEntityId``, else the target's id; the two must agree."""
    primary_id = _dv_guid(data.get("PrimaryEntityId"), "PrimaryEntityId", allow_nil=True)
    if primary_id is not None and target_id is not None and primary_id != target_id:
        raise MessageError("names a different row than InputParameters.Target.Id", field="PrimaryEntityId")
    row_id = primary_id or target_id
    if row_id is None:
        raise MessageError(f"is required ({what})", field="PrimaryEntityId")
    return row_id


def _dv_string(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        raise MessageError("is required", field=key)
    if not isinstance(value, str):
        raise MessageError(f"must be a string, not a JSON {json_type(value)}", field=key)
    return value.strip()


def _dv_guid(value: object, field: str, *, allow_nil: bool = False) -> str | None:
    """A Dataverse GUID (bare string) normalised to lower case; None when absent (or nil, if allowed)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageError(f"must be a GUID string, not a JSON {json_type(value)}", field=field)
    guid = normalise_guid(value.strip())
    if guid is None:
        raise MessageError("must be a GUID", field=field)
    if guid == NIL_GUID:
        if allow_nil:
            return None
        raise MessageError("must not be the nil GUID", field=field)
    return guid


def _key_values(value: object, field: str) -> dict[str, Any]:
    """A DataContract dictionary (``[{"key": k, "value": v}, ...]``) as a dict; null or absent is empty."""
    if value is None:
        return {}
    if isinstance(value, dict):  # tolerate a plain object, should a newer serializer write one
        return value
    if not isinstance(value, list):
        raise MessageError(f"must be an array of key/value pairs, not a JSON {json_type(value)}", field=field)
    result: dict[str, Any] = {}
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise MessageError('must be an object with a string "key"', field=f"{field}[{index}]")
        result[item["key"]] = item.get("value")
    return result


def _image_attributes(value: object, field: str) -> dict[str, Any]:
    """The attributes of every image in a PreEntityImages/PostEntityImages collection, merged in order."""
    merged: dict[str, Any] = {}
    for alias, image in _key_values(value, field).items():
        if image is None:
            continue
        if not isinstance(image, dict):
            raise MessageError(f"must be an Entity object, not a JSON {json_type(image)}", field=f"{field}.{alias}")
        merged.update(_key_values(image.get("Attributes"), f"{field}.{alias}.Attributes"))
    return merged


def _unwrap(value: object) -> object:
    """The plain value of an OptionSetValue/Money (``{"Value": n}``); anything else unchanged."""
    if isinstance(value, dict) and "Value" in value and "Id" not in value:
        return value["Value"]
    return value


def _is_cancelled(columns: Mapping[str, Any]) -> bool:
    if _unwrap(columns.get("msevtmgt_iscanceled")) is True:
        return True
    statecode = _unwrap(columns.get("statecode"))
    return isinstance(statecode, int) and not isinstance(statecode, bool) and statecode == 1


def _dv_reference_id(value: object, field: str) -> str | None:
    """The id of an EntityReference value (a bare GUID string is tolerated); None when absent or cleared."""
    if value is None:
        return None
    if isinstance(value, dict):
        return _dv_guid(value.get("Id"), f"{field}.Id", allow_nil=True)
    if isinstance(value, str):
        return _dv_guid(value, field, allow_nil=True)
    raise MessageError(f"must be an EntityReference, not a JSON {json_type(value)}", field=field)


def _dv_date(value: object, field: str) -> datetime | None:
    r"""A ``\/Date(ms[+-hhmm])\/`` value (or ISO-8601 with offset) as an aware UTC datetime; None when absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageError(f"must be a date string, not a JSON {json_type(value)}", field=field)
    match = _DOTNET_DATE_RE.fullmatch(value.strip())
    if match is not None:
        try:  # the +hhmm suffix only marks local kind: the milliseconds are UTC
            return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(match.group(1)))
        except OverflowError:
            raise MessageError("is out of range", field=field) from None
    try:
        return iso_datetime(value)
    except PydanticCustomError:
        raise MessageError("must be /Date(ms)/ or ISO-8601 with an offset", field=field) from None


