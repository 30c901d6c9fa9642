"""ON24's wire models: credentials, the registrant form and the tolerant response models (``reference/on24-api.md``).

Models follow ON24's own lowercase field names so the mapping to the reference stays one-to-one. Response
models are tolerant: unknown fields are ignored, missing ones are ``None``, numbers may arrive as strings,
and timestamps become timezone-aware datetimes (a timestamp without an offset is read as US Pacific time,
which is how ON24 reads and writes them).
"""

from __future__ import annotations

import hashlib
import marshal
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr, field_validator, model_validator

from shared.ids import ACCOUNT_ID_PATTERN

_DROP_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACE_CONTROLS = re.compile(r"[\t\n\r]+")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII without spaces: safe in an HTTP header

try:
    PACIFIC: tzinfo = ZoneInfo("America/Los_Angeles")
except ZoneInfoNotFoundError:  # pragma: no cover - only on hosts without a tz database
    PACIFIC = timezone(timedelta(hours=-8), "PST")


# ---- lenient parsing helpers (response models) ---------------------------------------------------------------
def one_line(value: str) -> str:
    """ON24 text on one line: tabs/newlines become a space, other control characters go, the ends are stripped."""
    return _SPACE_CONTROLS.sub(" ", _DROP_CONTROLS.sub("", value)).strip()


def lenient_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return round(number) if math.isfinite(number) else None


def lenient_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def lenient_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"y", "yes", "true", "1"}:
            return True
        if text in {"n", "no", "false", "0"}:
            return False
    return None


def lenient_str(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    return text or None


def _required_id(value: Any) -> Any:
    """Numbers become strings; anything else is left for pydantic to accept or refuse."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(int(value))
    return value.strip() if isinstance(value, str) else value


def lenient_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=PACIFIC)


_Int = Annotated[int | None, BeforeValidator(lenient_int)]
_Float = Annotated[float | None, BeforeValidator(lenient_float)]
_Bool = Annotated[bool | None, BeforeValidator(lenient_bool)]
_Str = Annotated[str | None, BeforeValidator(lenient_str)]
_Time = Annotated[datetime | None, BeforeValidator(lenient_datetime)]
_Id = Annotated[str, BeforeValidator(_required_id)]


class On24Model(BaseModel):
    """Base of the response models: frozen, extra fields ignored, keys matched case-insensitively."""

    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _lowercase_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {str(key).lower(): value for key, value in data.items()}
        return data


M = TypeVar("M", bound=On24Model)


# ---- public models ---------------------------------------------------------------------------------------------
class On24Credentials(BaseModel):
    """One org's ON24 API credentials. ``repr``/``str`` never show the token key or secret.

    Attributes:
        client_id: ON24's numeric account id (digits only).
        access_token_key: the API token key.
        access_token_secret: the API token secret.
        region: ``"na"`` (api.on24.com) or ``"eu"`` (api.eu.on24.com).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True, coerce_numbers_to_str=True)

    client_id: str
    access_token_key: SecretStr
    access_token_secret: SecretStr
    region: Literal["na", "eu"] = "na"

    @field_validator("client_id")
    @classmethod
    def _check_client_id(cls, value: str) -> str:
        value = value.strip()
        if not ACCOUNT_ID_PATTERN.fullmatch(value):
            raise ValueError("client_id must be ON24's numeric account id")
        return value

    @field_validator("access_token_key", "access_token_secret")
    @classmethod
    def _check_token(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        if not _TOKEN.fullmatch(text):  # message never includes the value
            raise ValueError("ON24 access tokens must be non-empty printable ASCII without spaces")
        return SecretStr(text)

    @field_validator("region", mode="before")
    @classmethod
    def _lower_region(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class RegistrantFields(BaseModel):
    """What to send ON24 for one registrant, under ON24's own form field names (DOC-reg).

    ``None`` or an empty string means "do not send" (an update leaves ON24's value unchanged). Values are
    cleaned of control characters and truncated to ``FIELD_MAX_LENGTHS`` when sent; an email longer than 100
    characters is refused. ``exteventusercd`` carries the CRM registration id so metrics match on an id.
    ``jobtitle`` and ``country`` must match an option of the event's registration page (read ``regfield``).
    Phone numbers with fewer than 7 digits are left out rather than failing the registration.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)

    email: str
    firstname: str | None = None
    lastname: str | None = None
    company: str | None = None
    jobtitle: str | None = None
    jobfunction: str | None = None
    addressstreet1: str | None = None
    addressstreet2: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    workphone: str | None = None
    homephone: str | None = None
    fax: str | None = None
    companyindustry: str | None = None
    companysize: str | None = None
    username: str | None = None
    exteventusercd: str | None = None
    partnerref: str | None = None
    other: str | None = None
    notes: str | None = None
    emailformat: str | None = None
    std1: str | None = None
    std2: str | None = None
    std3: str | None = None
    std4: str | None = None
    std5: str | None = None
    std6: str | None = None
    std7: str | None = None
    std8: str | None = None
    std9: str | None = None
    std10: str | None = None
    eventemail: bool | None = None
    marketingemail: bool | None = None


class Registrant(On24Model):
    """ON24's answer to a registrant create or update (a flat object, lowercase keys).

    Only ``eventuserid`` (ON24's registrant id, kept as a string) is required; ON24 sends no join URL here.
    """

    eventuserid: _Id
    eventid: _Int = None
    email: _Str = None
    exteventusercd: _Str = None
    firstname: _Str = None
    lastname: _Str = None
    isblocked: _Bool = None
    userprofileurl: _Str = None


class On24Event(On24Model):
    """Event metadata from ``GET /event/{id}``; everything but ``eventid`` is optional.

    ``title`` is ON24's ``eventname`` when present, else ``description`` (which of the two carries the title is
    uncertain, reference §7.7). ``audienceurl`` is the join link for everyone (no personal link exists).
    """

    eventid: int
    title: _Str = None
    description: _Str = None
    goodafter: _Time = None
    goodtill: _Time = None
    livestart: _Time = None
    liveend: _Time = None
    archivestart: _Time = None
    archiveend: _Time = None
    lastupdated: _Time = None
    isactive: _Bool = None
    audienceurl: _Str = None
    displaytimezonecd: _Str = None

    @model_validator(mode="before")
    @classmethod
    def _pick_title(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = {str(key).lower(): value for key, value in data.items()}
            title = lenient_str(data.get("eventname")) or lenient_str(data.get("title"))
            data["title"] = title or lenient_str(data.get("description"))
        return data


class Attendee(On24Model):
    """One attendee row from ``GET /event/{id}/attendee``. Every field is optional (ON24 often omits them).

    Minutes and counts are ints (ON24 rounds minutes; strings are accepted), ``engagementscore`` a float
    0-10, activity timestamps aware datetimes. Values that cannot be read become ``None``.
    """

    email: _Str = None
    eventuserid: _Str = None
    exteventusercd: _Str = None
    userstatus: _Str = None
    liveminutes: _Int = None
    archiveminutes: _Int = None
    cumulativeliveminutes: _Int = None
    cumulativearchiveminutes: _Int = None
    askedquestions: _Int = None
    answeredpolls: _Int = None
    answeredsurveys: _Int = None
    resourcesdownloaded: _Int = None
    engagementscore: _Float = None
    firstliveactivity: _Time = None
    lastliveactivity: _Time = None
    firstarchiveactivity: _Time = None
    lastarchiveactivity: _Time = None


def attendees_of(rows: list[dict[str, Any]]) -> list[Attendee]:
    """The attendee objects of one page, validated."""
    return [Attendee.model_validate(row) for row in rows]


def fingerprint(rows: list[dict[str, Any]]) -> str:
    """A cheap hash of a page's attendee objects as ON24 sent them: equal fingerprints, equal attendees.

    ``marshal`` serialises the decoded JSON (dicts, lists, strings, numbers) five times faster than
    ``json.dumps``. Different content always gives different bytes; the same content decoded the same way
    gives the same bytes (another Python version may not, which only costs one full read of each page).
    """
    return hashlib.blake2b(marshal.dumps(rows), digest_size=16).hexdigest()
