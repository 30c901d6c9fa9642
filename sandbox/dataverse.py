"""A strict Dataverse Web API stand-in (event-management tables) for the integration tests and the local demo.

It follows ``reference/dataverse-api.md``: ``/api/data/v9.2/`` routes, the OData headers, ``$select``/``$expand``,
reads of one row and of a whole (small) table, create/update/upsert/delete with
the documented statuses and headers, ``$batch`` (with and without change sets, ``Prefer: odata.continue-on-error``,
at most 1,000 operations) and service-protection throttling (429 + ``Retry-After``, code ``0x80072322``).

Strictness is deliberate: an unknown column in a body or ``$select`` is a 400 with Dataverse's message, lookups are
read as ``_<col>_value`` and written only via ``<Nav>@odata.bind``, option-set values are checked, a missing OData
header or a wrong content type is a 400. Error codes other than the ones the reference names are representative,
not verified against a real org. Where the stand-in refuses something the real service might accept (``$filter``,
paging and other query options the app never sends), the message says "stand-in".

Seeding for tests and the demo: ``add_row``, ``rows``, ``row``, ``clear``; ``writes`` counts successful
create/update/upsert operations (those inside ``$batch`` included) for "zero writes on a second run" assertions.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from sandbox.server import Request, Response, StandIn

API_PATH = "/api/data/v9.2/"
MAX_PAGE_SIZE = 5000
MAX_BATCH_OPERATIONS = 1000

# Error codes: 0x80060888 (OData: unknown property, bad query), 0x80040217 (row not found), 0x80072322 (request
# count limit) and 0x80044331 (validation) appear in the reference; 0x80040237 (duplicate key) and
# 0x80048d19 (payload) are representative.
CODE_ODATA = "0x80060888"
CODE_NOT_FOUND = "0x80040217"
CODE_DUPLICATE = "0x80040237"
CODE_VALIDATION = "0x80044331"
CODE_PAYLOAD = "0x80048d19"
CODE_THROTTLED = "0x80072322"

_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_GUID_RE = re.compile(f"^{_GUID}$")
_KEY_PATH_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\((.*)\)$")
_BIND_RE = re.compile(rf"^(?:https?://[^/]+)?(?:/api/data/v9\.2)?/?([A-Za-z_][A-Za-z0-9_]*)\(({_GUID})\)$")
_BOUNDARY_RE = re.compile(r'boundary="?([^";,\s]+)"?', re.IGNORECASE)
_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    412: "Precondition Failed",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}
_EDM = {
    "guid": "Edm.Guid",
    "string": "Edm.String",
    "memo": "Edm.String",
    "double": "Edm.Double",
    "int": "Edm.Int32",
    "decimal": "Edm.Decimal",
    "bool": "Edm.Boolean",
    "datetime": "Edm.DateTimeOffset",
    "option": "Edm.Int32",
}


# ---- schema -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A column: ``kind`` is guid, string, int, decimal, bool, datetime, option or lookup."""

    kind: str
    max_length: int | None = None
    options: frozenset[int] | None = None
    targets: Mapping[str, str] = field(default_factory=dict)  # lookups: navigation property -> entity set
    create: bool = True  # metadata IsValidForCreate
    update: bool = True  # metadata IsValidForUpdate

    def attribute_type(self, name: str) -> str:
        """The column's ``AttributeType`` as the metadata API names it."""
        if name == "statecode":
            return "State"
        if name == "statuscode":
            return "Status"
        return _ATTRIBUTE_TYPES[self.kind]


_ATTRIBUTE_TYPES = {
    "guid": "Uniqueidentifier", "string": "String", "memo": "Memo", "int": "Integer", "decimal": "Decimal",
    "double": "Double", "bool": "Boolean", "datetime": "DateTime", "option": "Picklist", "lookup": "Lookup",
}  # fmt: skip
_ATTRIBUTE_PROPERTIES = frozenset(
    {"LogicalName", "AttributeType", "IsValidForRead", "IsValidForCreate", "IsValidForUpdate", "MetadataId"}
)
_METADATA_RE = re.compile(r"^EntityDefinitions\(LogicalName='([A-Za-z0-9_]+)'\)/Attributes$")


@dataclass(frozen=True)
class Table:
    """A table: entity set, logical name, columns and defaults applied on create."""

    entity_set: str
    logical: str
    columns: Mapping[str, Column]
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.logical + "id"

    @property
    def type_name(self) -> str:
        return f"Microsoft.Dynamics.CRM.{self.logical}"

    @cached_property
    def _navs(self) -> dict[str, tuple[str, str]]:
        return {
            nav: (column_name, target)
            for column_name, column in self.columns.items()
            for nav, target in column.targets.items()
        }

    def nav(self, name: str) -> tuple[str, str] | None:
        """(lookup column, target entity set) for a navigation property name (case-sensitive)."""
        return self._navs.get(name)


def _s(n: int) -> Column:
    return Column("string", max_length=n)


def _opt(*values: int) -> Column:
    return Column("option", options=frozenset(values))


def _lookup(**targets: str) -> Column:
    return Column("lookup", targets=targets)


_STATE = {"statecode": _opt(0, 1), "statuscode": _opt(1, 2)}
_STATE_DEFAULTS = {"statecode": 0, "statuscode": 1}

SCHEMA: dict[str, Table] = {
    t.entity_set: t
    for t in (
        Table(
            "contacts",
            "contact",
            {
                "contactid": Column("guid"),
                "firstname": _s(50),
                "lastname": _s(50),
                "fullname": Column("string", max_length=160, create=False, update=False),
                "emailaddress1": _s(100),
                "jobtitle": _s(100),
                "address1_country": _s(80),
                "company": _s(50),  # the company PHONE number, despite the name
                "parentcustomerid": _lookup(parentcustomerid_account="accounts", parentcustomerid_contact="contacts"),
                **_STATE,
            },
            _STATE_DEFAULTS,
        ),
        Table("accounts", "account", {"accountid": Column("guid"), "name": _s(160), **_STATE}, _STATE_DEFAULTS),
        Table(
            "msevtmgt_events",
            "msevtmgt_event",
            {
                "msevtmgt_eventid": Column("guid"),
                "msevtmgt_name": _s(100),
                "msevtmgt_webinarid": _s(100),
                "msevtmgt_webinarurl": _s(200),
                "msevtmgt_eventstartdate": Column("datetime"),
                "msevtmgt_eventenddate": Column("datetime"),
                "msevtmgt_eventformat": _opt(100000001, 100000002, 100000003),
                "msevtmgt_streamingprovider": _opt(*range(100000001, 100000007)),
                **_STATE,
            },
            _STATE_DEFAULTS,
        ),
        Table(
            "msevtmgt_eventregistrations",
            "msevtmgt_eventregistration",
            {
                "msevtmgt_eventregistrationid": Column("guid"),
                "msevtmgt_name": _s(100),
                "msevtmgt_eventid": _lookup(msevtmgt_EventId="msevtmgt_events"),
                "msevtmgt_contactid": _lookup(msevtmgt_ContactId="contacts"),
                "msevtmgt_webinarregistrationid": _s(100),
                "msevtmgt_syncedwithprovider": _opt(100000001, 100000002),
                "msevtmgt_publishingstate": _opt(*range(100000000, 100000005)),
                "msevtmgt_iscanceled": Column("bool"),
                "msevtmgt_createdfromapi": Column("bool"),
                "modifiedon": Column("datetime"),
                **_STATE,
            },
            {**_STATE_DEFAULTS, "msevtmgt_syncedwithprovider": 100000001, "msevtmgt_iscanceled": False},
        ),
        Table(
            "msevtmgt_checkins",
            "msevtmgt_checkin",
            {
                "msevtmgt_checkinid": Column("guid"),
                "msevtmgt_name": _s(100),
                "msevtmgt_checkintype": _opt(100000000, 100000001),
                "msevtmgt_viewingdurationinmins": Column("int"),
                "msevtmgt_numberofquestionsasked": Column("int"),
                "msdynmkt_attendancepercentage": Column("decimal"),
                "msevtmgt_checkintime": Column("datetime"),
                "msevtmgt_checkouttime": Column("datetime"),
                "msevtmgt_registrationid": _lookup(msevtmgt_RegistrationId="msevtmgt_eventregistrations"),
                "msevtmgt_event": _lookup(msevtmgt_Event="msevtmgt_events"),
                "msevtmgt_contact": _lookup(msevtmgt_Contact="contacts"),
                **_STATE,
            },
            {**_STATE_DEFAULTS, "msevtmgt_checkintype": 100000000},
        ),
    )
}


# ---- errors and small types ---------------------------------------------------------------------------------------


class ODataError(Exception):
    """An error answer in Dataverse's shape; raised inside the stand-in and turned into a response."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> Response:
        return Response.json(
            self.status,
            {"error": {"code": self.code, "message": self.message}},
            {"OData-Version": "4.0", **self.headers},
        )


@dataclass(frozen=True)
class _Ref:
    """A lookup value: the target entity set and row id."""

    entity_set: str
    id: str


_Undo = tuple[str, str, "dict[str, Any] | None", bool]  # entity set, id, previous row, counted in ``writes``


@dataclass
class _Op:
    """One operation inside ``$batch``."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None = None


def _unknown_property(table: Table, name: str) -> ODataError:
    return ODataError(400, CODE_ODATA, f"Could not find a property named '{name}' on type '{table.type_name}'.")


def _not_found(table: Table, row_id: str) -> ODataError:
    return ODataError(404, CODE_NOT_FOUND, f"Entity '{table.logical}' With Id = {row_id} Does Not Exist")


def _utc_text(value: str) -> str | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the stand-in -------------------------------------------------------------------------------------------------


class DataverseStandIn(StandIn):
    """Dataverse Web API stand-in.

    Args:
        expected_token: when set, every request needs ``Authorization: Bearer <expected_token>`` (else 401); the
            attribute may be changed at run time to emulate a rotated/revoked token. None: no auth check.
        organization_id: the org behind ``url``, as ``WhoAmI`` answers it (strictly: the app refuses to store
            another org's URL); random when omitted. ``url_for(org)`` serves the same rows for another org.
        host, port, ssl_context: as for ``StandIn``.
    """

    name = "dataverse-stand-in"

    def __init__(
        self,
        *,
        expected_token: str | None = None,
        organization_id: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: Any = None,
    ) -> None:
        super().__init__(host=host, port=port, ssl_context=ssl_context)
        self.expected_token = expected_token
        self.organization_id = organization_id or str(uuid.uuid4())
        self.user_id = str(uuid.uuid4())
        self.writes = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._stats_lock = threading.Lock()
        self._data_lock = threading.RLock()
        self._schema: dict[str, Table] = dict(SCHEMA)
        self._tables: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in SCHEMA}
        self._version = 1000
        self._limit: tuple[int, float] | None = None
        self._window: deque[float] = deque()
        self._aliases: dict[str, _OrgAlias] = {}
        self._serving_for = threading.local()

    # ---- test and demo controls --------------------------------------------------------------------------------

    def url_for(self, organization_id: str) -> str:
        """A URL of this stand-in whose ``WhoAmI`` answers ``organization_id``: the same rows, faults and request
        log, on a port of its own (a real org has one URL; tests that store several orgs give each its own)."""
        key = organization_id.lower()
        if key == self.organization_id.lower():
            return self.url
        with self._stats_lock:
            alias = self._aliases.get(key)
            if alias is None:
                alias = _OrgAlias(self, organization_id, host=self._host, ssl_context=self._ssl_context)
                alias.start()
                self._aliases[key] = alias
        return alias.url

    def close(self) -> None:
        for alias in self._aliases.values():
            alias.close()
        self._aliases.clear()
        super().close()

    def set_limit(self, requests_per_window: int | None, window_seconds: float = 300.0) -> None:
        """Emulate the request-count limit: beyond ``requests_per_window`` in a sliding window, answer 429.

        A ``$batch`` counts as one request. ``None`` removes the limit.
        """
        with self._stats_lock:
            self._limit = None if requests_per_window is None else (requests_per_window, window_seconds)
            self._window.clear()

    def add_column(self, entity_set: str, name: str, column: Column) -> None:
        """Define a custom column (e.g. ``new_engagementscore``) on one table of this stand-in: it is then served
        by the metadata API, accepted in ``$select`` and writes, and type-checked like any other column."""
        with self._data_lock:
            table = self._table(entity_set)
            self._schema[entity_set] = Table(
                table.entity_set, table.logical, {**table.columns, name: column}, table.defaults
            )

    def add_row(self, entity_set: str, row: Mapping[str, Any]) -> str:
        """Seed a row (not counted in ``writes``; lookup targets need not exist yet). Returns its id.

        Lookups may be given as ``<col>`` (GUID; the first target table), ``_<col>_value`` or ``<Nav>@odata.bind``.
        """
        table = self._table(entity_set)
        body: dict[str, Any] = {}
        for name, value in row.items():
            lookup_name = name[1:-6] if name.startswith("_") and name.endswith("_value") else name
            column = table.columns.get(lookup_name)
            if column is not None and column.kind == "lookup":
                nav = next(iter(column.targets))
                body[f"{nav}@odata.bind"] = None if value is None else f"/{column.targets[nav]}({value})"
            else:
                body[name] = value
        row_id = str(body.get(table.key) or uuid.uuid4()).lower()
        body[table.key] = row_id
        with self._data_lock:
            current = self._tables[entity_set].get(row_id)
            self._tables[entity_set][row_id] = self._apply(table, current, body, row_id, check_targets=False)
        return row_id

    def delete_row(self, entity_set: str, row_id: str) -> None:
        """Remove a row, as a CRM user deleting it would."""
        with self._data_lock:
            self._tables[entity_set].pop(row_id.lower(), None)

    def rows(self, entity_set: str) -> list[dict[str, Any]]:
        """All rows of a table in read form (lookups as ``_<col>_value``)."""
        table = self._table(entity_set)
        with self._data_lock:
            return [self._project(table, row, None) for row in self._tables[entity_set].values()]

    def row(self, entity_set: str, row_id: str) -> dict[str, Any] | None:
        """One row in read form, or None."""
        table = self._table(entity_set)
        with self._data_lock:
            stored = self._tables[entity_set].get(row_id.lower())
            return None if stored is None else self._project(table, stored, None)

    def clear(self) -> None:
        """Remove every row and every custom column (``add_column``), and reset ``writes``."""
        with self._data_lock:
            for rows in self._tables.values():
                rows.clear()
            self._schema = dict(SCHEMA)
            self.writes = 0

    def _table(self, entity_set: str) -> Table:
        if entity_set not in self._schema:
            raise KeyError(f"no table {entity_set!r} in the stand-in schema")
        return self._schema[entity_set]

    # ---- serving -----------------------------------------------------------------------------------------------

    def _serve_for(self, request: Request, organization_id: str) -> Response | None:
        """Serve a request that came in on the URL of another org (``url_for``)."""
        self._serving_for.org = organization_id
        try:
            return self._serve(request)
        finally:
            self._serving_for.org = None

    def _serve(self, request: Request) -> Response | None:
        with self._stats_lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return super()._serve(request)
        finally:
            with self._stats_lock:
                self._in_flight -= 1

    def handle(self, request: Request) -> Response:
        try:
            self._check_auth(request)
            self._check_limit()
            if not request.path.startswith(API_PATH):
                raise ODataError(404, "", f"Resource not found for the segment '{request.path}'.")
            self._check_headers(request)
            resource = request.path[len(API_PATH) :]
            if resource == "$batch":
                if request.method != "POST":
                    raise ODataError(405, "", "The $batch endpoint accepts POST only.")
                return self._batch(request)
            with self._data_lock:
                return self._route(request.method, resource, request.query, request.headers, request.body, None)
        except ODataError as error:
            return error.response()

    def _check_auth(self, request: Request) -> None:
        expected = self.expected_token
        if expected is None:
            return
        if request.header("authorization") != f"Bearer {expected}":
            raise ODataError(
                401, "", "", {"WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/"'}
            )

    def _check_limit(self) -> None:
        with self._stats_lock:
            if self._limit is None:
                return
            limit, window = self._limit
            now = time.monotonic()
            while self._window and self._window[0] <= now - window:
                self._window.popleft()
            if len(self._window) >= limit:
                wait = max(1, math.ceil(self._window[0] + window - now))
                raise ODataError(
                    429,
                    CODE_THROTTLED,
                    f"Number of requests exceeded the limit of {limit} over time window of {window:g} seconds.",
                    {"Retry-After": str(wait)},
                )
            self._window.append(now)

    @staticmethod
    def _check_headers(request: Request) -> None:
        if request.header("odata-maxversion") != "4.0" or request.header("odata-version") != "4.0":
            raise ODataError(
                400, CODE_ODATA, "The request needs the headers 'OData-MaxVersion: 4.0' and 'OData-Version: 4.0'."
            )
        accept = (request.header("accept") or "").lower()
        if "application/json" not in accept:
            raise ODataError(400, CODE_ODATA, "The request needs the header 'Accept: application/json'.")

    # ---- routing -----------------------------------------------------------------------------------------------

    def _route(
        self,
        method: str,
        resource: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        undo: list[_Undo] | None,
    ) -> Response:
        """Serve one operation (top level or inside ``$batch``); the caller holds the data lock."""
        if resource == "WhoAmI" and method == "GET":
            return self._json(
                200,
                {
                    "@odata.context": f"{self._base()}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                    "BusinessUnitId": str(uuid.UUID(int=1)),
                    "UserId": self.user_id,
                    "OrganizationId": getattr(self._serving_for, "org", None) or self.organization_id,
                },
            )
        metadata = _METADATA_RE.match(resource.replace("%27", "'"))
        if metadata is not None:
            return self._attributes(method, metadata.group(1), query)
        if "/" in resource:
            raise ODataError(501, "", f"The stand-in does not implement the path '{resource}'.")
        keyed = _KEY_PATH_RE.match(resource)
        entity_set = keyed.group(1) if keyed else resource
        table = self._schema.get(entity_set)
        if table is None:
            raise ODataError(404, CODE_ODATA, f"Resource not found for the segment '{entity_set}'.")
        if keyed is None:
            if method == "GET":
                return self._get_collection(table, query, headers)
            if method == "POST":
                return self._create(table, query, headers, body, undo)
            raise ODataError(405, "", f"The HTTP method '{method}' is not allowed on '{entity_set}'.")
        row_id = keyed.group(2)
        if not _GUID_RE.match(row_id):
            raise ODataError(
                400, CODE_ODATA, f"The key in the request URI is not valid for resource '{table.type_name}'."
            )
        row_id = row_id.lower()
        if method == "GET":
            return self._get_row(table, row_id, query)
        if method == "PATCH":
            return self._patch(table, row_id, query, headers, body, undo)
        if method == "DELETE":
            if row_id not in self._tables[entity_set]:
                raise _not_found(table, row_id)
            if undo is not None:
                undo.append((entity_set, row_id, self._tables[entity_set][row_id], False))
            del self._tables[entity_set][row_id]
            return Response(204, b"", {"OData-Version": "4.0"})
        raise ODataError(405, "", f"The HTTP method '{method}' is not allowed on '{resource}'.")

    def _attributes(self, method: str, logical: str, query: Mapping[str, str]) -> Response:
        """``EntityDefinitions(LogicalName='…')/Attributes``: a table's columns, strictly (``$select`` of known
        properties only, names case-sensitive, an unknown table 404 as Dataverse answers it)."""
        if method != "GET":
            raise ODataError(405, "", "The HTTP method is not allowed on the metadata API.")
        self._check_options(query, allowed={"$select"})
        wanted = [p.strip() for p in (query.get("$select") or ",".join(sorted(_ATTRIBUTE_PROPERTIES))).split(",")]
        for name in wanted:
            if name not in _ATTRIBUTE_PROPERTIES:
                raise ODataError(
                    400, CODE_ODATA, f"Could not find a property named '{name}' on type "
                    "'Microsoft.Dynamics.CRM.AttributeMetadata'."
                )  # fmt: skip
        table = next((t for t in self._schema.values() if t.logical == logical), None)
        if table is None:
            raise ODataError(404, CODE_NOT_FOUND, f"Could not find an entity with name '{logical}'.")
        values = []
        for name, column in table.columns.items():
            primary = name == table.key
            full = {
                "LogicalName": name,
                "AttributeType": column.attribute_type(name),
                "IsValidForRead": True,
                "IsValidForCreate": column.create,
                "IsValidForUpdate": column.update and not primary,
                "MetadataId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{logical}.{name}")),
            }
            values.append({key: full[key] for key in wanted})
        return self._json(200, {"@odata.context": f"{self._base()}$metadata#EntityDefinitions('{logical}')/Attributes",
                                "value": values})  # fmt: skip

    def _base(self) -> str:
        return f"{self.url}{API_PATH}"

    @staticmethod
    def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
        return Response.json(
            status,
            payload,
            {"OData-Version": "4.0", "Content-Type": "application/json; odata.metadata=minimal", **(headers or {})},
        )

    # ---- reads -------------------------------------------------------------------------------------------------

    def _get_row(self, table: Table, row_id: str, query: Mapping[str, str]) -> Response:
        self._check_options(query, allowed={"$select", "$expand"})
        select = self._parse_select(table, query.get("$select"))
        expand = self._parse_expand(table, query.get("$expand"))
        stored = self._tables[table.entity_set].get(row_id)
        if stored is None:
            raise _not_found(table, row_id)
        payload = {"@odata.context": f"{self._base()}$metadata#{table.entity_set}/$entity"}
        payload.update(self._project(table, stored, select, expand))
        return self._json(200, payload)

    def _get_collection(self, table: Table, query: Mapping[str, str], headers: Mapping[str, str]) -> Response:
        """Rows of a table in key order: ``$select``, ``$expand``, a ``$filter`` of ``<column> eq <value>`` clauses
        joined by ``or`` (or by ``and``, not both), and paging by ``Prefer: odata.maxpagesize=N`` with an opaque
        ``$skiptoken`` in ``@odata.nextLink`` (no ``$skip``; the documented maximum page is 5,000 rows)."""
        self._check_options(query, allowed={"$select", "$expand", "$filter", "$skiptoken"})
        select = self._parse_select(table, query.get("$select"))
        expand = self._parse_expand(table, query.get("$expand"))
        keep = _filter_of(table, query.get("$filter"))
        size = _page_size(headers.get("prefer", ""))
        rows = self._tables[table.entity_set]
        keys = [k for k in sorted(rows) if keep(rows[k])]
        after = query.get("$skiptoken")
        if after is not None:
            if not _GUID_RE.match(after):
                raise ODataError(400, CODE_ODATA, "The $skiptoken is not valid.")
            keys = [k for k in keys if k > after.lower()]
        if size is None and len(keys) > MAX_PAGE_SIZE:
            size = MAX_PAGE_SIZE
        page = keys if size is None else keys[:size]
        payload: dict[str, Any] = {
            "@odata.context": f"{self._base()}$metadata#{table.entity_set}"
            + (f"({query['$select']})" if query.get("$select") else ""),
            "value": [self._project(table, rows[k], select, expand) for k in page],
        }
        extra: dict[str, str] = {}
        if size is not None and "odata.maxpagesize" in headers.get("prefer", ""):
            extra["Preference-Applied"] = f"odata.maxpagesize={size}"
        if size is not None and len(keys) > size:
            rest = {n: v for n, v in query.items() if n != "$skiptoken"}
            rest["$skiptoken"] = page[-1]
            payload["@odata.nextLink"] = f"{self._base()}{table.entity_set}?" + urlencode(rest, quote_via=quote)
        return self._json(200, payload, extra)

    @staticmethod
    def _check_options(query: Mapping[str, str], *, allowed: set[str]) -> None:
        for name in query:
            if name.startswith("$") and name not in allowed:
                if name == "$skip":
                    raise ODataError(400, CODE_ODATA, "The query parameter $skip is not supported.")
                raise ODataError(501, "", f"stand-in: the query option '{name}' is not implemented here.")

    @staticmethod
    def _parse_select(table: Table, clause: str | None) -> list[str] | None:
        if clause is None:
            return None
        names = [name.strip() for name in clause.split(",") if name.strip()]
        for name in names:
            column = table.columns.get(name)
            if column is not None and column.kind != "lookup":
                continue
            if name.startswith("_") and name.endswith("_value"):
                lookup = table.columns.get(name[1:-6])
                if lookup is not None and lookup.kind == "lookup":
                    continue
            raise _unknown_property(table, name)
        return names

    def _parse_expand(self, table: Table, clause: str | None) -> list[tuple[str, str, str, list[str] | None]]:
        """[(nav, lookup column, target set, select)] from ``nav($select=a,b),nav2``."""
        if not clause:
            return []
        items: list[str] = []
        depth, start = 0, 0
        for index, char in enumerate(clause):
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
            elif char == "," and depth == 0:
                items.append(clause[start:index])
                start = index + 1
        items.append(clause[start:])
        result = []
        for item in items:
            item = item.strip()
            match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\((.*)\))?$", item)
            if match is None:
                raise ODataError(400, CODE_ODATA, f"Syntax error in $expand '{item}'.")
            nav_name, options = match.group(1), match.group(2)
            nav = table.nav(nav_name)
            if nav is None:
                raise _unknown_property(table, nav_name)
            target = self._schema[nav[1]]
            select: list[str] | None = None
            if options:
                for option in options.split(";"):
                    name, _, value = option.partition("=")
                    if name.strip() != "$select":
                        raise ODataError(501, "", f"stand-in: '{name.strip()}' inside $expand is not implemented.")
                    select = self._parse_select(target, value)
            result.append((nav_name, nav[0], nav[1], select))
        return result

    def _project(
        self,
        table: Table,
        row: Mapping[str, Any],
        select: list[str] | None,
        expand: Iterable[tuple[str, str, str, list[str] | None]] = (),
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.etag": f'W/"{row["@v"]}"'}
        names = select if select is not None else list(table.columns)
        for name in names:
            column = table.columns.get(name)
            if column is not None and column.kind == "lookup":
                name = f"_{name}_value"
            if name.startswith("_") and name.endswith("_value"):
                ref = row.get(name[1:-6])
                out[name] = ref.id if isinstance(ref, _Ref) else None
            else:
                out[name] = row.get(name)
        out[table.key] = row[table.key]
        for nav_name, column_name, target_set, target_select in expand:
            ref = row.get(column_name)
            target_row = (
                self._tables[target_set].get(ref.id) if isinstance(ref, _Ref) and ref.entity_set == target_set else None
            )
            target_table = self._schema[target_set]
            out[nav_name] = None if target_row is None else self._project(target_table, target_row, target_select)
        return out

    # ---- writes ------------------------------------------------------------------------------------------------

    def _create(
        self,
        table: Table,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        undo: list[_Undo] | None,
    ) -> Response:
        fields = self._body(table, headers, body)
        raw_id = fields.get(table.key)
        if raw_id is not None and (not isinstance(raw_id, str) or not _GUID_RE.match(raw_id)):
            raise ODataError(400, CODE_ODATA, f"Cannot convert the literal '{raw_id}' to the expected type 'Edm.Guid'.")
        row_id = str(raw_id or uuid.uuid4()).lower()
        rows = self._tables[table.entity_set]
        if row_id in rows:
            raise ODataError(412, CODE_DUPLICATE, "A record with matching key values already exists.")
        rows[row_id] = self._apply(table, None, fields, row_id, check_targets=True)
        self._wrote(table.entity_set, row_id, None, undo)
        return self._write_response(table, row_id, query, headers, created=True)

    def _patch(
        self,
        table: Table,
        row_id: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        undo: list[_Undo] | None,
    ) -> Response:
        fields = self._body(table, headers, body)
        rows = self._tables[table.entity_set]
        current = rows.get(row_id)
        if_match = headers.get("if-match")
        if_none_match = headers.get("if-none-match")
        if if_match is not None:
            if current is None:
                raise _not_found(table, row_id)
            if if_match.strip() != "*" and if_match.strip() != f'W/"{current["@v"]}"':
                raise ODataError(
                    412,
                    CODE_ODATA,
                    "The version of the existing record doesn't match the RowVersion property provided.",
                )
        if if_none_match is not None and if_none_match.strip() == "*" and current is not None:
            raise ODataError(412, CODE_DUPLICATE, "A record with matching key values already exists.")
        key_in_body = fields.get(table.key)
        if key_in_body is not None and str(key_in_body).lower() != row_id:
            raise ODataError(400, CODE_PAYLOAD, "The primary key in the body does not match the key in the URL.")
        rows[row_id] = self._apply(table, current, fields, row_id, check_targets=True)
        self._wrote(table.entity_set, row_id, current, undo)
        return self._write_response(table, row_id, query, headers, created=current is None)

    def _wrote(
        self,
        entity_set: str,
        row_id: str,
        previous: dict[str, Any] | None,
        undo: list[_Undo] | None,
    ) -> None:
        self.writes += 1
        if undo is not None:
            undo.append((entity_set, row_id, previous, True))

    def _write_response(
        self, table: Table, row_id: str, query: Mapping[str, str], headers: Mapping[str, str], *, created: bool
    ) -> Response:
        entity_url = f"{self._base()}{table.entity_set}({row_id})"
        if _prefer_has(headers.get("prefer", ""), "return=representation"):
            select = self._parse_select(table, query.get("$select"))
            payload = {"@odata.context": f"{self._base()}$metadata#{table.entity_set}/$entity"}
            payload.update(self._project(table, self._tables[table.entity_set][row_id], select))
            return self._json(201 if created else 200, payload)
        return Response(204, b"", {"OData-Version": "4.0", "OData-EntityId": entity_url})

    @staticmethod
    def _body(table: Table, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        content_type = (headers.get("content-type") or "").lower()
        if not content_type.startswith("application/json"):
            raise ODataError(400, CODE_PAYLOAD, "The request body needs the header 'Content-Type: application/json'.")
        try:
            fields = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ODataError(400, CODE_PAYLOAD, "Error in the request payload: the body is not valid JSON.") from None
        if not isinstance(fields, dict):
            raise ODataError(400, CODE_PAYLOAD, "Error in the request payload: expected a JSON object.")
        odata_type = fields.get("@odata.type")
        if odata_type is not None and str(odata_type).lstrip("#") != table.type_name:
            raise ODataError(400, CODE_ODATA, f"Type '{odata_type}' is not '{table.type_name}'.")
        return fields

    def _apply(
        self,
        table: Table,
        current: Mapping[str, Any] | None,
        fields: Mapping[str, Any],
        row_id: str,
        *,
        check_targets: bool,
    ) -> dict[str, Any]:
        """A new stored row: ``current`` (or defaults) with ``fields`` validated and applied."""
        row: dict[str, Any] = dict(current) if current is not None else dict(table.defaults)
        for name, value in fields.items():
            if name.endswith("@odata.bind"):
                nav_name = name[: -len("@odata.bind")]
                nav = table.nav(nav_name)
                if nav is None:
                    raise ODataError(
                        400,
                        CODE_ODATA,
                        f"An undeclared property '{nav_name}' which only has property annotations in the payload but "
                        "no property value was found in the payload. In OData, only declared navigation properties "
                        "and declared named streams can be represented as properties without values.",
                    )
                row[nav[0]] = self._bind(table, nav[1], value, check_targets)
                continue
            if name.startswith("@") or "@" in name:
                continue  # annotations (@odata.type checked earlier, @odata.etag, formatted values) are ignored
            if name.startswith("_") and name.endswith("_value") and name[1:-6] in table.columns:
                raise ODataError(
                    400,
                    CODE_ODATA,
                    "CRM do not support direct update of Entity Reference properties, Use Navigation properties "
                    "instead.",
                )
            column = table.columns.get(name)
            if column is None or column.kind == "lookup":
                raise _unknown_property(table, name)
            row[name] = _coerce(table, name, column, value)
        row[table.key] = row_id
        if table.entity_set == "contacts":
            row["fullname"] = " ".join(p for p in (row.get("firstname"), row.get("lastname")) if p) or None
        self._version += 1
        row["@v"] = self._version
        if "modifiedon" in table.columns and "modifiedon" not in fields:
            row["modifiedon"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # set by the server, as in Dataverse
        return row

    def _bind(self, table: Table, target_set: str, value: Any, check_targets: bool) -> _Ref | None:
        if value is None:
            return None
        match = _BIND_RE.match(value) if isinstance(value, str) else None
        if match is None:
            raise ODataError(400, CODE_ODATA, f"The @odata.bind value '{value}' is not a valid entity reference.")
        bound_set, bound_id = match.group(1), match.group(2).lower()
        if bound_set != target_set:
            raise ODataError(
                400,
                CODE_ODATA,
                f"The entity set '{bound_set}' does not match the navigation property's type "
                f"'{self._schema[target_set].type_name if target_set in self._schema else target_set}'.",
            )
        if check_targets and bound_id not in self._tables[target_set]:
            raise _not_found(self._schema[target_set], bound_id)
        return _Ref(target_set, bound_id)

    # ---- $batch ------------------------------------------------------------------------------------------------

    def _batch(self, request: Request) -> Response:
        content_type = request.header("content-type") or ""
        match = _BOUNDARY_RE.search(content_type)
        if not content_type.lower().startswith("multipart/mixed") or match is None:
            raise ODataError(400, CODE_PAYLOAD, "A $batch request needs 'Content-Type: multipart/mixed; boundary=...'.")
        items = _parse_batch(request.body, match.group(1))
        operations = sum(len(item) if isinstance(item, list) else 1 for item in items)
        if operations > MAX_BATCH_OPERATIONS:
            raise ODataError(
                400,
                CODE_PAYLOAD,
                f"Number of requests in a batch exceeded the limit of {MAX_BATCH_OPERATIONS}.",  # uncertain wording
            )
        continue_on_error = _prefer_has(request.header("prefer") or "", "odata.continue-on-error")
        boundary = f"batchresponse_{uuid.uuid4()}"
        parts: list[bytes] = []
        with self._data_lock:
            for item in items:
                if isinstance(item, list):
                    part, failed_status = self._run_changeset(item)
                else:
                    response = self._run_op(item, None, {})
                    part = _http_part(response)
                    failed_status = response.status if response.status >= 400 else 0
                if failed_status and not continue_on_error:
                    # Uncertain (reference §2): without continue-on-error the documented example answers the
                    # whole batch with the failing status and a single part holding that error.
                    return _multipart_response(failed_status, boundary, [part])
                parts.append(part)
        return _multipart_response(200, boundary, parts)

    def _run_op(self, op: _Op, undo: list[_Undo] | None, ids: Mapping[str, str]) -> Response:
        try:
            url = op.url
            if url.startswith("$"):
                ref, _, rest = url[1:].partition("/")
                if ref not in ids:
                    raise ODataError(400, CODE_PAYLOAD, f"Content-ID reference '${ref}' is not defined (yet).")
                url = ids[ref] + (f"/{rest}" if rest else "")
            if url.startswith(API_PATH) and "?" not in url:
                return self._route(op.method, url[len(API_PATH) :], {}, op.headers, op.body, undo)
            parts = urlsplit(url)
            path = parts.path
            if path.startswith(API_PATH):
                resource = path[len(API_PATH) :]
            elif path.startswith("/"):
                raise ODataError(404, "", f"Resource not found for the segment '{path}'.")
            else:
                resource = path
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            return self._route(op.method, resource, query, op.headers, op.body, undo)
        except ODataError as error:
            return error.response()

    def _run_changeset(self, ops: list[_Op]) -> tuple[bytes, int]:
        undo: list[_Undo] = []
        ids: dict[str, str] = {}
        answered: list[tuple[_Op, Response]] = []
        for op in ops:
            if op.method == "GET":
                response = ODataError(400, CODE_PAYLOAD, "GET is not allowed inside a change set.").response()
            else:
                response = self._run_op(op, undo, ids)
            if response.status >= 400:
                for entity_set, row_id, previous, counted in reversed(undo):
                    if previous is None:
                        self._tables[entity_set].pop(row_id, None)
                    else:
                        self._tables[entity_set][row_id] = previous
                    self.writes -= 1 if counted else 0
                return _http_part(response), response.status
            entity_id = response.headers.get("OData-EntityId")
            if op.content_id and entity_id:
                ids[op.content_id] = entity_id
            answered.append((op, response))
        boundary = f"changesetresponse_{uuid.uuid4()}"
        inner = [_http_part(response, content_id=op.content_id) for op, response in answered]
        head = f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n".encode()
        return head + _multipart_body(boundary, inner), 0


# ---- helpers ------------------------------------------------------------------------------------------------------


class _OrgAlias(StandIn):
    """Another org's URL of a ``DataverseStandIn``: every request is served by it, ``WhoAmI`` for this org."""

    name = "dataverse-stand-in-alias"

    def __init__(self, main: DataverseStandIn, organization_id: str, **where: Any) -> None:
        super().__init__(**where)
        self.main, self.organization_id = main, organization_id

    def _serve(self, request: Request) -> Response | None:
        return self.main._serve_for(request, self.organization_id)

    def handle(self, request: Request) -> Response:  # pragma: no cover - _serve hands every request to the main one
        return self.main.handle(request)


def _coerce(table: Table, name: str, column: Column, value: Any) -> Any:
    if value is None:
        return None

    def wrong() -> ODataError:
        literal = json.dumps(value) if not isinstance(value, str) else value
        return ODataError(
            400, CODE_ODATA, f"Cannot convert the literal '{literal[:100]}' to the expected type '{_EDM[column.kind]}'."
        )

    kind = column.kind
    if kind in ("string", "memo"):
        if not isinstance(value, str):
            raise wrong()
        if column.max_length is not None and len(value) > column.max_length:
            raise ODataError(
                400,
                CODE_VALIDATION,
                f"A validation error occurred. The length of the '{name}' attribute of the '{table.logical}' entity "
                f"exceeded the maximum allowed length of '{column.max_length}'.",
            )
        return value
    if kind == "guid":
        if not isinstance(value, str) or not _GUID_RE.match(value):
            raise wrong()
        return value.lower()
    if kind in ("int", "option"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise wrong()
        if kind == "option" and column.options is not None and value not in column.options:
            raise ODataError(
                400,
                CODE_VALIDATION,
                f"A validation error occurred. The value {value} of '{name}' on record of type '{table.logical}' is "
                f"outside the valid range. Accepted Values: {','.join(str(v) for v in sorted(column.options))}",
            )
        return value
    if kind in ("decimal", "double"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise wrong()
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong()
        return value
    if kind == "datetime":
        text = _utc_text(value) if isinstance(value, str) else None
        if text is None:
            raise wrong()
        return text
    raise wrong()


_FILTER_CLAUSE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s+eq\s+('(?:[^']|'')*'|[0-9A-Za-z-]+|null)\s*$")


def _filter_of(table: Table, clause: str | None) -> Any:
    """A row predicate for ``a eq 'x' or b eq <guid> ...`` (one of ``or``/``and``); other filters are refused."""
    if clause is None:
        return lambda row: True
    joiner = " or " if " or " in clause else " and "
    if " or " in clause and " and " in clause:
        raise ODataError(501, "", "stand-in: a $filter mixing 'and' and 'or' is not implemented here.")
    tests: list[tuple[str, Any]] = []
    for part in clause.split(joiner):
        match = _FILTER_CLAUSE.match(part)
        if match is None:
            raise ODataError(501, "", f"stand-in: the $filter clause '{part.strip()}' is not implemented here.")
        name, raw = match.group(1), match.group(2)
        column_name = name[1:-6] if name.startswith("_") and name.endswith("_value") else name
        column = table.columns.get(column_name)
        if column is None or (column.kind == "lookup") != (column_name != name):
            raise _unknown_property(table, name)
        value: Any = None if raw == "null" else raw[1:-1].replace("''", "'") if raw.startswith("'") else raw.lower()
        tests.append((column_name, value))

    def matches(row: Mapping[str, Any], name: str, value: Any) -> bool:
        stored = row.get(name)
        if isinstance(stored, _Ref):
            stored = stored.id
        if isinstance(stored, bool) and isinstance(value, str):
            return str(stored).lower() == value
        return stored == value or (stored is not None and value is not None and str(stored) == str(value))

    if joiner == " or ":
        return lambda row: any(matches(row, n, v) for n, v in tests)
    return lambda row: all(matches(row, n, v) for n, v in tests)


def _page_size(prefer: str) -> int | None:
    match = re.search(r"odata\.maxpagesize=(\d+)", prefer)
    if match is None:
        return None
    return max(1, min(int(match.group(1)), MAX_PAGE_SIZE))


def _prefer_has(prefer: str, token: str) -> bool:
    return any(item.strip().lower() == token for item in prefer.split(","))


# The $batch parsing below is the stand-in's own, on purpose: a stand-in must not share code with the client it
# checks (shared/dataverse/_batch.py), or a bug in one would hide in both.
def _split_head(blob: bytes) -> tuple[bytes, bytes]:
    crlf, lf = blob.find(b"\r\n\r\n"), blob.find(b"\n\n")
    if crlf != -1 and (lf == -1 or crlf < lf):
        return blob[:crlf], blob[crlf + 4 :]
    if lf != -1:
        return blob[:lf], blob[lf + 2 :]
    return blob, b""


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.splitlines():
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _split_multipart(body: bytes, boundary: str) -> list[bytes]:
    delimiter = b"\n--" + boundary.encode("latin-1")
    segments = (b"\r\n" + body).split(delimiter)
    if len(segments) < 2:
        raise ODataError(400, CODE_PAYLOAD, "The batch body does not contain the boundary from the Content-Type.")
    out: list[bytes] = []
    for segment in segments[1:]:
        if segment.startswith(b"--"):
            return out
        out.append(segment.removesuffix(b"\r").lstrip(b" \t").removeprefix(b"\r\n").removeprefix(b"\n"))
    raise ODataError(400, CODE_PAYLOAD, "The batch body is missing its closing boundary.")


def _parse_op(segment: bytes, mime: Mapping[str, str], rest: bytes) -> _Op:
    if not mime.get("content-type", "").lower().startswith("application/http"):
        raise ODataError(400, CODE_PAYLOAD, "Each batch part needs 'Content-Type: application/http'.")
    head, body = _split_head(rest)
    lines = head.splitlines()
    request_line = lines[0].decode("latin-1").split() if lines else []
    if len(request_line) != 3 or not request_line[2].startswith("HTTP/"):
        raise ODataError(400, CODE_PAYLOAD, "A batch part has no valid request line.")
    return _Op(
        method=request_line[0].upper(),
        url=request_line[1],
        headers=_headers(b"\n".join(lines[1:])),
        body=body.rstrip(b"\r\n"),
        content_id=mime.get("content-id"),
    )


def _parse_batch(body: bytes, boundary: str) -> list[_Op | list[_Op]]:
    items: list[_Op | list[_Op]] = []
    for segment in _split_multipart(body, boundary):
        head, rest = _split_head(segment)
        mime = _headers(head)
        content_type = mime.get("content-type", "")
        if content_type.lower().startswith("multipart/mixed"):
            inner = _BOUNDARY_RE.search(content_type)
            if inner is None:
                raise ODataError(400, CODE_PAYLOAD, "A change set part needs a boundary.")
            members = []
            for member in _split_multipart(rest, inner.group(1)):
                member_head, member_rest = _split_head(member)
                member_mime = _headers(member_head)
                if member_mime.get("content-type", "").lower().startswith("multipart/"):
                    raise ODataError(400, CODE_PAYLOAD, "Change sets cannot be nested.")
                members.append(_parse_op(member, member_mime, member_rest))
            items.append(members)
        else:
            items.append(_parse_op(segment, mime, rest))
    return items


def _http_part(response: Response, content_id: str | None = None) -> bytes:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}".rstrip()]
    for name, value in response.headers.items():
        lines.append(f"{name}: {value}")
        if name == "OData-EntityId":
            lines.append(f"Location: {value}")
    lines += ["", ""]
    return "\r\n".join(lines).encode("utf-8") + response.body


def _multipart_body(boundary: str, parts: list[bytes]) -> bytes:
    marker = f"--{boundary}\r\n".encode()
    chunks: list[bytes] = []
    for part in parts:
        chunks += (marker, part, b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


def _multipart_response(status: int, boundary: str, parts: list[bytes]) -> Response:
    return Response(
        status,
        _multipart_body(boundary, parts),
        {"Content-Type": f"multipart/mixed; boundary={boundary}", "OData-Version": "4.0"},
    )


__all__ = ["API_PATH", "SCHEMA", "Column", "DataverseStandIn", "ODataError", "Table"]
