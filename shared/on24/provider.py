"""ON24 as the app's webinar provider: ``shared.webinars`` mapped to and from ON24's API.

A ``Person`` becomes ON24's registrant form (``firstname``, ..., ``exteventusercd`` = the CRM registration id), an
attendee row becomes an ``AttendanceRow`` (cumulative minutes when ON24 sends them), an event's ``livestart`` /
``archiveend`` a ``WebinarSchedule``. The admin body's ON24 part (client id, token key and secret, region) is
``CredentialsBody``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from shared.ids import ACCOUNT_ID_PATTERN
from shared.on24._client import On24Client
from shared.on24._forms import FIELD_MAX_LENGTHS
from shared.on24._models import Attendee, On24Credentials, On24Event, RegistrantFields, attendees_of
from shared.webinars import AttendancePage, AttendanceRow, Person, RegistrantRow, WebinarSchedule

NAME = "ON24"
_Token = Annotated[SecretStr, Field(min_length=1, max_length=512)]


class On24Provider:
    """One org's ON24 account as a ``shared.webinars.WebinarProvider``."""

    def __init__(self, client: On24Client, *, date_filter_mode: str | None = "lastActivity") -> None:
        self._client = client
        self._date_filter_mode = date_filter_mode  # ON24_ATTENDEE_DATE_FILTER: see shared.settings

    def __repr__(self) -> str:
        return f"On24Provider({self._client!r})"

    @property
    def last_unanswered_at(self) -> float | None:
        return self._client.last_unanswered_at

    def register(self, webinar_id: str, person: Person, *, registration_id: str) -> str:
        return self._client.create_registrant(webinar_id, registrant_fields(person, registration_id)).eventuserid

    def update(self, webinar_id: str, person: Person, *, registration_id: str) -> str:
        return self._client.update_registrant(webinar_id, registrant_fields(person, registration_id)).eventuserid

    def remove(self, webinar_id: str, email: str) -> None:
        self._client.delete_registrant(webinar_id, email)

    def forget(self, webinar_id: str, email: str) -> None:
        self._client.forget_registrant(webinar_id, email)

    def schedule(self, webinar_id: str) -> WebinarSchedule:
        return schedule_of(self._client.get_event(webinar_id))

    def attendance_pages(
        self, webinar_id: str, *, start: datetime | None, end: datetime | None, first_page: int = 0
    ) -> Iterator[AttendancePage]:
        pages = self._client.iter_attendee_pages(
            webinar_id, start=start, end=end, first_page=first_page, date_filter_mode=self._date_filter_mode
        )
        for index, rows, digest in pages:
            yield AttendancePage(index, digest, len(rows), partial(_attendance_rows, rows))

    def registrant_pages(self, webinar_id: str) -> Iterator[Sequence[RegistrantRow]]:
        for rows in self._client.iter_registrant_pages(webinar_id):
            yield [row for raw in rows if (row := registrant_row(raw)) is not None]

    def check_credentials(self) -> None:
        self._client.check_credentials()


def registrant_row(raw: dict[str, Any]) -> RegistrantRow | None:
    """A registrant-list object as a ``RegistrantRow``; None without an ``eventuserid`` (nothing to name it by)."""
    attendee = Attendee.model_validate(raw)  # the tolerant model: the same identity fields, all optional
    if attendee.eventuserid is None:
        return None
    return RegistrantRow(attendee.eventuserid, attendee.email, attendee.exteventusercd)


def _attendance_rows(rows: list[dict[str, Any]]) -> list[AttendanceRow]:
    return [attendance_of(attendee) for attendee in attendees_of(rows)]


def registrant_fields(person: Person, registration_id: str) -> RegistrantFields:
    """ON24's registrant form for a person; ``exteventusercd`` carries the CRM registration id. Fields the org's
    mapping sets (``Person.extra``) override the standard ones; ON24's length limits apply when sent."""
    fields: dict[str, str | None] = {
        "email": person.email,
        "firstname": person.first_name or None,
        "lastname": person.last_name or None,
        "company": person.company,
        "jobtitle": person.job_title,
        "country": person.country,
        "workphone": person.work_phone,
        "city": person.city,
        "state": person.state,
        "zip": person.zip,
        "addressstreet1": person.address_street1,
    }
    fields.update((name, value) for name, value in person.extra if name in MAPPABLE_FIELDS)
    return RegistrantFields(**fields, exteventusercd=registration_id)


MAPPABLE_FIELDS: dict[str, int] = {
    name: FIELD_MAX_LENGTHS[name]
    for name in (
        "company", "jobtitle", "jobfunction", "addressstreet1", "addressstreet2", "city", "state", "zip", "country",
        "workphone", "homephone", "fax", "companyindustry", "companysize", "partnerref", "other", "notes",
        *(f"std{n}" for n in range(1, 11)),
    )
}  # fmt: skip
"""ON24 registration fields an org's field mapping may fill, with ON24's length limits (reference §2). Never the
email (the registrant's key), the names, ``exteventusercd`` (the CRM registration id metrics match on) or the
e-mail flags."""


def schedule_of(event: On24Event) -> WebinarSchedule:
    """Live start (else ``goodafter``) to the end of the on-demand window (``archiveend``, else ``goodtill``, else
    the live end, else the start)."""
    start = event.livestart or event.goodafter
    return WebinarSchedule(starts_at=start, ends_at=event.archiveend or event.goodtill or event.liveend or start)


def attendance_of(attendee: Attendee) -> AttendanceRow:
    """An attendee row: ON24's cumulative minutes when present, else the session's; the earliest and latest activity.

    Field by field (``reference/on24-api.md`` §3): ``cumulativeliveminutes``/``liveminutes`` and
    ``cumulativearchiveminutes``/``archiveminutes`` (live and on demand, kept apart), ``askedquestions``,
    ``answeredpolls``, ``answeredsurveys``, ``resourcesdownloaded`` (counts), ``engagementscore`` (decimal 0-10;
    uncertain: ON24 caches it 3-24 h, so it may lag the minutes, and how it is computed is not documented),
    ``first``/``lastliveactivity`` and ``first``/``lastarchiveactivity`` (the earliest and latest of either).
    """
    firsts = [t for t in (attendee.firstliveactivity, attendee.firstarchiveactivity) if t is not None]
    lasts = [t for t in (attendee.lastliveactivity, attendee.lastarchiveactivity) if t is not None]
    return AttendanceRow(
        registrant_id=attendee.eventuserid,
        email=attendee.email,
        registration_id=attendee.exteventusercd,
        live_minutes=_first(attendee.cumulativeliveminutes, attendee.liveminutes),
        on_demand_minutes=_first(attendee.cumulativearchiveminutes, attendee.archiveminutes),
        questions=_first(attendee.askedquestions),
        polls=_first(attendee.answeredpolls),
        surveys=_first(attendee.answeredsurveys),
        resources=_first(attendee.resourcesdownloaded),
        engagement_score=attendee.engagementscore,
        first_activity=min(firsts) if firsts else None,
        last_activity=max(lasts) if lasts else None,
        attended_live=_attended(attendee.cumulativeliveminutes, attendee.liveminutes, attendee.firstliveactivity),
        attended_on_demand=_attended(
            attendee.cumulativearchiveminutes, attendee.archiveminutes, attendee.firstarchiveactivity
        ),
    )


def _attended(cumulative: int | None, minutes: int | None, first: datetime | None) -> bool:
    """Live (or on-demand) attendance: minutes above 0 or a first activity time on that channel.

    Uncertain (reference §3): ON24 rounds 0 < m < 1 minute up to 1, so a short visit still counts; whether an
    attendee who only answered a poll without the player running gets an activity time is not documented.
    """
    return _first(cumulative, minutes) > 0 or first is not None


def _first(*values: int | None) -> int:
    return next((value for value in values if value is not None), 0)


class CredentialsBody(BaseModel):
    """ON24's part of ``PUT /api/orgs/{orgId}/webinar/credentials``: ``clientId``, ``accessTokenKey``,
    ``accessTokenSecret``, ``region``. ``check`` applies the client's own rules (``On24Credentials``), so nothing
    the client would refuse is ever stored. Errors never carry the value."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, strict=True, populate_by_name=True, hide_input_in_errors=True
    )

    client_id: str = Field(alias="clientId", pattern=ACCOUNT_ID_PATTERN.pattern)
    access_token_key: _Token = Field(alias="accessTokenKey")
    access_token_secret: _Token = Field(alias="accessTokenSecret")
    region: Literal["na", "eu"] = "na"
    mapping_targets: ClassVar[Mapping[str, int]]  # set below: ON24 fields an org's field mapping may fill

    @field_validator("access_token_key", "access_token_secret")
    @classmethod
    def _printable(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw.strip() != raw or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
            raise ValueError("must not contain whitespace at the ends or control characters")
        return value

    @property
    def account_id(self) -> str:
        return self.client_id

    def secrets(self) -> dict[str, str]:
        return {
            "accessTokenKey": self.access_token_key.get_secret_value(),
            "accessTokenSecret": self.access_token_secret.get_secret_value(),
        }

    def check(self) -> None:
        self.credentials()

    def credentials(self) -> On24Credentials:
        return On24Credentials(
            client_id=self.client_id,
            access_token_key=self.access_token_key,
            access_token_secret=self.access_token_secret,
            region=self.region,
        )


def credentials_of(account_id: str, region: str, secrets: Mapping[str, Any]) -> On24Credentials:
    """The client credentials of an org row (its clear columns and its opened secrets)."""
    return On24Credentials(
        client_id=account_id,
        access_token_key=secrets["accessTokenKey"],
        access_token_secret=secrets["accessTokenSecret"],
        region="eu" if region == "eu" else "na",
    )


CredentialsBody.mapping_targets = MAPPABLE_FIELDS
