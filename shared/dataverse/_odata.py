"""The shape of OData requests: headers, argument checks (before any I/O) and JSON bodies for Dataverse."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Final
from urllib.parse import quote

import httpx

from shared.errors import TransientError

_GUID_RE: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_QUERY_SAFE: Final = "$',()=/:@*;"

BASE_HEADERS: Final[Mapping[str, str]] = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
}
READ_HEADERS: Final[Mapping[str, str]] = {**BASE_HEADERS, "If-None-Match": "null"}
WRITE_HEADERS: Final[Mapping[str, str]] = {**BASE_HEADERS, "Content-Type": "application/json"}


def check_set(entity_set: str) -> None:
    if not isinstance(entity_set, str) or not _NAME_RE.match(entity_set):
        raise ValueError(f"malformed entity set name {entity_set!r:.60}")


ATTRIBUTES_QUERY = "?$select=LogicalName,AttributeType,IsValidForRead,IsValidForCreate,IsValidForUpdate"
_LOGICAL_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def check_logical_name(value: str) -> str:
    """A table's logical name (e.g. ``msevtmgt_checkin``), checked before it goes into a URL."""
    if not _LOGICAL_NAME.fullmatch(value):
        raise ValueError("not a Dataverse table logical name")
    return value


def check_guid(value: str) -> str:
    if not isinstance(value, str) or not _GUID_RE.match(value):
        raise ValueError(f"malformed GUID {value!r:.60}")
    return value.lower()


def select_clause(select: Sequence[str]) -> str:
    if isinstance(select, str):
        raise ValueError("select must be a sequence of column names, not a string")
    if not select:
        raise ValueError("select at least one column")
    for column in select:
        if not isinstance(column, str) or not _NAME_RE.match(column):
            raise ValueError(f"malformed column name {column!r:.60}")
    return ",".join(select)


def check_expand(expand: str) -> str:
    if any(ch in expand for ch in "&#?\r\n"):
        raise ValueError("malformed $expand clause")
    return expand


def query_string(params: list[tuple[str, str]]) -> str:
    # Spaces as %20 (not '+'); OData punctuation left readable.
    return "?" + "&".join(f"{name}={quote(value, safe=_QUERY_SAFE)}" for name, value in params)


def json_default(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware (UTC) datetime to Dataverse")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} for Dataverse")


def dumps(fields: Mapping[str, Any]) -> bytes:
    if not isinstance(fields, Mapping):
        raise ValueError("fields must be a mapping of column names to values")
    try:
        return json.dumps(dict(fields), default=json_default, separators=(",", ":")).encode("utf-8")
    except TypeError as exc:
        raise ValueError(str(exc)) from exc


def decode_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError as exc:
        raise TransientError(f"Dataverse {what}: unreadable JSON response (HTTP {response.status_code})") from exc
    if not isinstance(payload, dict):
        raise TransientError(f"Dataverse {what}: expected a JSON object (HTTP {response.status_code})")
    return payload


def ignore_body(response: httpx.Response, what: str) -> None:
    return None
