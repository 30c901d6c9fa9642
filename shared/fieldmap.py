"""An org's field mapping, both ways: CRM columns (or constants) into the provider's registration fields, and
attendance values into CRM columns, plus the no-show mark (issue 21).

Stored with the org's settings (``fieldMapping`` in the credentials PUT body; not a secret: the credentials GET
and the status route show it). Shape, by JSON name::

    {"toProvider": [{"field": "std1", "source": "contact", "column": "new_segment"},
                {"field": "partnerref", "source": "constant", "value": "dynamics"}],
     "toCrm": [{"value": "engagementScore", "table": "msevtmgt_checkin", "column": "new_engagementscore"}],
     "noShow": {"column": "new_noshow", "value": true}}

The body's own rules are checked here (``FieldMapping``); the columns are checked against the org's Dataverse
metadata when the mapping is saved (``shared.fieldmap_check``). Columns the app already writes cannot be mapped:
the standard check-in columns keep their meaning. The ``fingerprint`` goes into the metrics hash, so check-ins
are rewritten once under a changed mapping, and never again while it stays the same.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from shared.errors import ConfigError
from shared.webinars import AttendanceRow

CHECKIN: Final = "msevtmgt_checkin"
REGISTRATION: Final = "msevtmgt_eventregistration"
CONTACT: Final = "contact"
ENTITY_SETS: Final = {CHECKIN: "msevtmgt_checkins", REGISTRATION: "msevtmgt_eventregistrations", CONTACT: "contacts"}

ValueKind = Literal["int", "decimal", "text", "datetime", "bool", "option"]
ATTENDANCE_VALUES: Final[dict[str, ValueKind]] = {
    "liveMinutes": "int",
    "onDemandMinutes": "int",
    "attendanceStatus": "text",
    "engagementScore": "decimal",
    "questions": "int",
    "polls": "int",
    "surveys": "int",
    "resources": "int",
    "firstActivity": "datetime",
    "lastActivity": "datetime",
}
"""What attendance can be written to CRM, and its kind (which column types fit it, see ``FITS``)."""
AttendanceValue = Literal[
    "liveMinutes", "onDemandMinutes", "attendanceStatus", "engagementScore", "questions", "polls", "surveys",
    "resources", "firstActivity", "lastActivity",
]  # fmt: skip
FITS: Final[dict[ValueKind, frozenset[str]]] = {
    "int": frozenset({"Integer", "BigInt", "Decimal", "Double"}),
    "decimal": frozenset({"Decimal", "Double"}),
    "text": frozenset({"String", "Memo"}),
    "datetime": frozenset({"DateTime"}),
    "bool": frozenset({"Boolean"}),
    "option": frozenset({"Picklist", "Integer", "BigInt"}),
}
"""Dataverse ``AttributeType``s a value of each kind may be written to."""
SENDABLE: Final = frozenset(
    {"String", "Memo", "Integer", "BigInt", "Decimal", "Double", "Money", "Boolean", "DateTime"}
)
"""Column types whose value can be sent to the provider as text (not lookups, option sets, files, ...)."""
RESERVED: Final[dict[str, frozenset[str]]] = {
    CHECKIN: frozenset({
        "msevtmgt_checkinid", "msevtmgt_name", "msevtmgt_checkintype", "msevtmgt_viewingdurationinmins",
        "msevtmgt_numberofquestionsasked", "msevtmgt_checkintime", "msevtmgt_checkouttime",
        "msevtmgt_registrationid", "msevtmgt_event", "msevtmgt_contact", "statecode", "statuscode",
    }),
    REGISTRATION: frozenset({
        "msevtmgt_eventregistrationid", "msevtmgt_webinarregistrationid", "msevtmgt_syncedwithprovider",
        "msevtmgt_publishingstate", "msevtmgt_eventid", "msevtmgt_contactid", "msevtmgt_iscanceled",
        "statecode", "statuscode",
    }),
}  # fmt: skip
"""Columns the app writes (or relies on) itself: never a mapping's target."""
MAX_ENTRIES: Final = 25
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
_Column = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,99}$")]


class MappingError(ValueError):
    """A mapping that does not fit the org's Dataverse; ``field`` is the JSON path at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


class ToProvider(_Strict):
    """One provider registration field, filled from a registration or contact column, or a constant."""

    field: str
    source: Literal["registration", "contact", "constant"]
    column: _Column | None = None
    value: Annotated[str, Field(min_length=1, max_length=100)] | None = None

    @field_validator("field")
    @classmethod
    def _known_field(cls, value: str, info: ValidationInfo) -> str:
        targets: Mapping[str, int] | None = (info.context or {}).get("targets")
        if targets is not None and value not in targets:  # no context: a stored mapping, checked when saved
            raise ValueError(f"is not a registration field this app may fill ({', '.join(sorted(targets))})")
        return value

    @field_validator("value")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and (_CONTROLS.search(value) or value.strip() != value):
            raise ValueError("must be one line without control characters or spaces at the ends")
        return value

    @model_validator(mode="after")
    def _source_fits(self, info: ValidationInfo) -> ToProvider:
        if self.source == "constant":
            if self.value is None or self.column is not None:
                raise ValueError("a constant takes 'value' and no 'column'")
            limit = ((info.context or {}).get("targets") or {}).get(self.field)
            if limit is not None and len(self.value) > limit:
                raise ValueError(f"value is longer than the provider's {limit}-character limit for {self.field}")
        elif self.column is None or self.value is not None:
            raise ValueError(f"a {self.source} column takes 'column' and no 'value'")
        return self

    @property
    def table(self) -> str:
        return REGISTRATION if self.source == "registration" else CONTACT


class ToCrm(_Strict):
    """One attendance value written to a column of the check-in or of the registration."""

    value: AttendanceValue
    table: Literal["msevtmgt_checkin", "msevtmgt_eventregistration"]
    column: _Column

    @model_validator(mode="after")
    def _not_reserved(self) -> ToCrm:
        if self.column in RESERVED[self.table]:
            raise ValueError(f"{self.column} is written by the app itself and keeps its meaning")
        return self


class NoShow(_Strict):
    """The registration column set, once the webinar's pull window closed, on registrants who never attended."""

    column: _Column
    value: bool | int | Annotated[str, Field(min_length=1, max_length=100)] = True

    @model_validator(mode="after")
    def _not_reserved(self) -> NoShow:
        if self.column in RESERVED[REGISTRATION]:
            raise ValueError(f"{self.column} is written by the app itself and keeps its meaning")
        return self

    @property
    def kind(self) -> ValueKind:
        if isinstance(self.value, bool):
            return "bool"
        return "option" if isinstance(self.value, int) else "text"


class FieldMapping(_Strict):
    """An org's field mapping (see the module docstring). The empty mapping changes nothing."""

    to_provider: list[ToProvider] = Field(default_factory=list, alias="toProvider", max_length=MAX_ENTRIES)
    to_crm: list[ToCrm] = Field(default_factory=list, alias="toCrm", max_length=MAX_ENTRIES)
    no_show: NoShow | None = Field(default=None, alias="noShow")

    @model_validator(mode="after")
    def _distinct(self) -> FieldMapping:
        fields = [entry.field for entry in self.to_provider]
        for index, name in enumerate(fields):
            if name in fields[:index]:
                raise ValueError(f"toProvider.{index}: {name} is mapped twice")
        targets = [(entry.table, entry.column) for entry in self.to_crm]
        if self.no_show is not None:
            targets.append((REGISTRATION, self.no_show.column))
        for index, target in enumerate(targets):
            if target in targets[:index]:
                raise ValueError(f"{target[0]}.{target[1]} is written by two entries")
        return self

    # ---- stored form ----------------------------------------------------------------------------------------
    def to_json(self) -> str:
        """The stored (and fingerprinted) form: camelCase, sorted, compact; the empty mapping is ``""``."""
        if not self:
            return ""
        return json.dumps(self.model_dump(by_alias=True, exclude_none=True), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> FieldMapping:
        """The stored mapping (validated when it was saved); ``""``/None is the empty mapping.

        Raises:
            ConfigError: the stored text is not a mapping (edited by hand, or damaged): the org's work waits
                until the admin saves its settings again; other orgs are not affected.
        """
        if not text:
            return EMPTY
        try:
            return cls.model_validate_json(text)
        except ValueError:
            raise ConfigError("the org's stored field mapping cannot be read: PUT its credentials again") from None

    def view(self) -> dict[str, Any]:
        """What the admin routes show (the body's own shape)."""
        return self.model_dump(by_alias=True, exclude_none=True)

    def __bool__(self) -> bool:
        return bool(self.to_provider or self.to_crm or self.no_show)

    @property
    def fingerprint(self) -> str:
        """A short hash of the mapping ("" without one): part of the metrics hash and the match index version."""
        text = self.to_json()
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12] if text else ""

    @property
    def no_show_fingerprint(self) -> str:
        """A short hash of the ``noShow`` entry alone ("" without one): a webinar's no-shows are written again only
        when it changes, not when other entries do."""
        if self.no_show is None:
            return ""
        text = json.dumps(self.no_show.model_dump(by_alias=True), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]

    # ---- to the provider ----------------------------------------------------------------------------------
    def columns_of(self, table: str) -> list[str]:
        """The CRM columns to add to the ``$select`` of the read already made of ``table``."""
        return list(dict.fromkeys(e.column for e in self.to_provider if e.column and e.table == table))

    def provider_fields(
        self, registration: Mapping[str, Any] | None, contact: Mapping[str, Any] | None
    ) -> tuple[tuple[str, str], ...]:
        """(provider field, text) for ``Person.extra``: constants always; columns of the rows read (a row not
        read, or an empty column, sends nothing, so an update leaves the provider's value as it is)."""
        out: list[tuple[str, str]] = []
        for entry in self.to_provider:
            if entry.source == "constant":
                value: str | None = entry.value
            else:
                row = registration if entry.source == "registration" else contact
                value = as_text(row.get(entry.column or "")) if row is not None else None
            if value:
                out.append((entry.field, value))
        return tuple(out)

    # ---- to CRM -------------------------------------------------------------------------------------------
    def crm_values(self, row: AttendanceRow) -> tuple[dict[str, Any], dict[str, Any]]:
        """(check-in columns, registration columns) the mapping writes for one attendee."""
        checkin: dict[str, Any] = {}
        registration: dict[str, Any] = {}
        for entry in self.to_crm:
            (checkin if entry.table == CHECKIN else registration)[entry.column] = attendance_value(row, entry.value)
        return checkin, registration


EMPTY: Final = FieldMapping()


def attendance_value(row: AttendanceRow, name: str) -> Any:
    """One attendance value as written to CRM (times in UTC; a score the provider did not send is null)."""
    values: dict[str, Any] = {
        "liveMinutes": row.live_minutes,
        "onDemandMinutes": row.on_demand_minutes,
        "attendanceStatus": row.attendance,
        "engagementScore": row.engagement_score,
        "questions": row.questions,
        "polls": row.polls,
        "surveys": row.surveys,
        "resources": row.resources,
        "firstActivity": row.first_activity.astimezone(UTC) if row.first_activity else None,
        "lastActivity": row.last_activity.astimezone(UTC) if row.last_activity else None,
    }
    return values[name]


def as_text(value: Any) -> str | None:
    """A CRM column's value as provider text: one line, control characters dropped; None when empty."""
    if value is None:
        return None
    if isinstance(value, bool):
        text = "Yes" if value else "No"
    elif isinstance(value, float):
        text = format(value, "f").rstrip("0").rstrip(".")
    elif isinstance(value, datetime):
        text = value.isoformat()
    else:
        text = str(value)
    text = " ".join(_CONTROLS.sub(" ", text).split())
    return text or None
