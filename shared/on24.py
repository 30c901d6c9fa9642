"""ON24 REST API v2 client: registration writes, event metadata and attendee analytics.

This module owns every HTTP call to ON24 (``reference/on24-api.md`` is the contract): the regional base URL,
the ``accessTokenKey``/``accessTokenSecret`` headers, form-encoded bodies, paging, throttling and the
translation of httpx outcomes into ``shared.errors`` at the edge. Nothing outside this module sees httpx.

Error mapping (``reference/on24-api.md`` §5 and §6):

    429, or 403 "maximum number of calls"   ThrottledError (Retry-After honoured when sent)
    other 401 / 403                         CredentialsRejectedError (403 "email ... not found": NotFoundError)
    404, 410                                NotFoundError
    400, 412, 422                           InvalidDataError
    408, 5xx, timeouts, connection errors   TransientError
    anything else that is not 2xx           PermanentError

Transient faults (throttling included) are retried inside the client's ``RetryPolicy`` budget, then raised.
Messages name the operation, the event id and the status, plus ON24's own ``message`` text (truncated; it
never carries a secret). They never carry a token, a request body or a raw response body.

Models follow ON24's own lowercase field names so the mapping to the reference stays one-to-one. Response
models are tolerant: unknown fields are ignored, missing ones are ``None``, numbers may arrive as strings,
and timestamps become timezone-aware datetimes (a timestamp without an offset is read as US Pacific time,
which is how ON24 reads and writes them).
"""

from __future__ import annotations

import logging
import math
import re
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Annotated, Any, Final, Literal, Self, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr, field_validator, model_validator

from shared.errors import (
    CredentialsRejectedError,
    IntegrationError,
    InvalidDataError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from shared.ratelimit import RateLimiter
from shared.retry import RetryPolicy, call_with_retry

_log = logging.getLogger(__name__)

__all__ = [
    "BASE_URLS",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "FIELD_MAX_LENGTHS",
    "MAX_PAGE_SIZE",
    "Attendee",
    "On24Client",
    "On24Credentials",
    "On24Event",
    "Registrant",
    "RegistrantFields",
]

BASE_URLS: Final[Mapping[str, str]] = {"na": "https://api.on24.com", "eu": "https://api.eu.on24.com"}
DEFAULT_TIMEOUT: Final = 10.0
# A registration message can wait for Service Bus redelivery, so in-process retries only bridge short blips.
DEFAULT_RETRY: Final = RetryPolicy(budget=15.0, base_delay=0.5, max_delay=8.0, max_attempts=6)
MAX_PAGE_SIZE: Final = 100  # "limit of 100 per page" (DOC-catt)

# Maximum characters per registration form field (DOC-reg). Phones: DOC-phone says 1000, DOC-reg 100; the
# smaller is used. ``email`` is never truncated: a longer address is refused with InvalidDataError.
FIELD_MAX_LENGTHS: Final[Mapping[str, int]] = {
    "email": 100,
    "firstname": 50,
    "lastname": 50,
    **dict.fromkeys(
        (
            "company", "jobtitle", "jobfunction", "addressstreet1", "addressstreet2", "city", "state", "zip",
            "country", "workphone", "homephone", "fax", "companyindustry", "companysize", "username",
            "exteventusercd", "partnerref", "other", "notes", "emailformat",
            *(f"std{n}" for n in range(1, 11)),
        ),
        100,
    ),
}  # fmt: skip
_PHONE_FIELDS: Final = frozenset({"workphone", "homephone", "fax"})
# Failures that prove the request never reached ON24; after any other the request may still be applied.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_GATEWAY_GAVE_UP: Final = frozenset({502, 504})  # a gateway stopped waiting; ON24 behind it may not have
# Text sent to ON24 ends up in spreadsheet exports: a value starting with one of these would be a formula there.
_FORMULA_STARTS: Final = ("=", "+", "-", "@")
_PHONE_SHAPE = re.compile(r"\+[0-9][0-9 ()./-]*")
# Zero-width joiner and non-joiner are part of how some scripts (Persian, Indic, emoji) are written.
_KEPT_FORMAT_CHARS: Final = frozenset("\u200c\u200d")
_MIN_PHONE_DIGITS: Final = 7
_MESSAGE_LIMIT: Final = 200
_DIGITS = re.compile(r"[0-9]{1,19}")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII without spaces: safe in an HTTP header
_DROP_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACE_CONTROLS = re.compile(r"[\t\n\r]+")
_ADDRESS = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+")

try:
    _PACIFIC: tzinfo = ZoneInfo("America/Los_Angeles")
except ZoneInfoNotFoundError:  # pragma: no cover - only on hosts without a tz database
    _PACIFIC = timezone(timedelta(hours=-8), "PST")


# ---- lenient parsing helpers (response models) ---------------------------------------------------------------
def _clean_text(value: str) -> str:
    """Replace tabs/newlines by a space, drop other control characters, strip the ends."""
    return _SPACE_CONTROLS.sub(" ", _DROP_CONTROLS.sub("", value)).strip()


def _lenient_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return round(number) if math.isfinite(number) else None


def _lenient_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _lenient_bool(value: Any) -> bool | None:
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


def _lenient_str(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    return text or None


def _required_id(value: Any) -> Any:
    """Numbers become strings; anything else is left for pydantic to accept or refuse."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(int(value))
    return value.strip() if isinstance(value, str) else value


def _lenient_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_PACIFIC)


_Int = Annotated[int | None, BeforeValidator(_lenient_int)]
_Float = Annotated[float | None, BeforeValidator(_lenient_float)]
_Bool = Annotated[bool | None, BeforeValidator(_lenient_bool)]
_Str = Annotated[str | None, BeforeValidator(_lenient_str)]
_Time = Annotated[datetime | None, BeforeValidator(_lenient_datetime)]
_Id = Annotated[str, BeforeValidator(_required_id)]
# Decides from (status, ON24 message) that an error answer means the goal is already reached.
_Tolerance = Callable[[int, str], bool]


class _On24Model(BaseModel):
    """Base of the response models: frozen, extra fields ignored, keys matched case-insensitively."""

    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _lowercase_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {str(key).lower(): value for key, value in data.items()}
        return data


_M = TypeVar("_M", bound=_On24Model)


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
        if not _DIGITS.fullmatch(value):
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


class Registrant(_On24Model):
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


class On24Event(_On24Model):
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
            title = _lenient_str(data.get("eventname")) or _lenient_str(data.get("title"))
            data["title"] = title or _lenient_str(data.get("description"))
        return data


class Attendee(_On24Model):
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


# ---- client ------------------------------------------------------------------------------------------------------
@dataclass
class _CallStats:
    attempts: int = 0
    status: int | None = None


class On24Client:
    """ON24 REST API v2 client for one account (one set of credentials).

    One ``httpx.Client`` is reused for every call (connection pooling). A worker serving several orgs can pass
    one shared ``http_client`` to all its ``On24Client`` objects; such a client is then not closed here.

    Args:
        credentials: the account's client id, token key and secret, and region.
        base_url: overrides the regional URL (setting ``ON24_BASE_URL``, used for stand-ins).
        timeout: seconds for connect, read, write and pool waits of one attempt.
        transport: an httpx transport for the client this object creates (not with ``http_client``).
        retry: the in-process retry budget for transient faults and throttling.
        attendee_rate_limiter: paces attendee list calls (ON24 allows 100/minute); share one per process.
        http_client: an externally owned httpx client to use instead of creating one.

    Raises:
        ValueError: a malformed ``base_url`` or ``timeout``, or both ``transport`` and ``http_client``.
    """

    def __init__(
        self,
        credentials: On24Credentials,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        attendee_rate_limiter: RateLimiter | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        if not isinstance(credentials, On24Credentials):
            raise TypeError("credentials must be On24Credentials")
        if not timeout > 0:
            raise ValueError("timeout must be greater than 0")
        if transport is not None and http_client is not None:
            raise ValueError("pass transport= or http_client=, not both")
        root = (base_url or BASE_URLS[credentials.region]).strip().rstrip("/")
        parsed = httpx.URL(root)
        if parsed.scheme not in {"http", "https"} or not parsed.host or parsed.query:
            raise ValueError("base_url must be an http(s) URL without a query, e.g. https://api.on24.com")
        self._credentials = credentials
        self._root = root
        self._prefix = f"{root}/v2/client/{credentials.client_id}"
        self._timeout = httpx.Timeout(timeout)
        self._retry = retry
        self._attendee_limiter = attendee_rate_limiter
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(transport=transport, timeout=self._timeout, follow_redirects=False)
        self._closed = False
        self._last_unanswered_at: float | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool, unless it was passed in as ``http_client``."""
        if not self._closed:
            self._closed = True
            if self._owns_http:
                self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"On24Client(client_id={self._credentials.client_id!r}, base_url={self._root!r})"

    @property
    def client_id(self) -> str:
        """The ON24 account id these calls act for."""
        return self._credentials.client_id

    @property
    def last_unanswered_at(self) -> float | None:
        """``time.monotonic()`` when a request that may have reached ON24 last went unanswered, or None.

        A request that timed out after it was sent, lost its connection mid-answer, or got a gateway's 502/504
        may still be applied by ON24 later, even if a retry then succeeded. Whoever relies on ON24's state
        (the registration lease) waits until such a request can no longer land.
        """
        return self._last_unanswered_at

    # ---- operations -------------------------------------------------------------------------------------------
    def check_credentials(self) -> None:
        """Validate the stored credentials with one cheap authenticated call.

        Uses ``GET /event`` (the account's event list) for today only: it needs no event id, is read-only,
        answers a small body, and is authorised for any token that can use the event APIs. It counts against
        the 30/minute event-list limit, which is ample for an admin action.

        Raises:
            CredentialsRejectedError: ON24 refused the token (401/403) or does not know the client id (404).
            TransientError: ON24 could not be reached or kept throttling within the retry budget.
            PermanentError: any other refusal.
        """
        today = datetime.now(_PACIFIC).date().isoformat()
        try:
            self._call("check_credentials", "GET", "/event", None, params={"startDate": today, "endDate": today})
        except NotFoundError as error:
            raise CredentialsRejectedError(f"ON24 does not know client id {self.client_id}: {error}") from error

    def create_registrant(self, event_id: int | str, registrant: RegistrantFields) -> Registrant:
        """Register someone for an ON24 event (``POST /event/{id}/registrant``).

        The body also carries ``isDeleted=N``, a documented create field that undeletes a registrant soft
        deleted earlier (e.g. a cancelled then renewed CRM registration), so one call covers both cases.
        A repeat for the same email updates that registrant and returns its ``eventuserid`` (reference §7.1),
        which makes a retry after a lost answer safe.

        Args:
            event_id: the ON24 event id (numeric).
            registrant: the fields to send; ``exteventusercd`` should carry the CRM registration id.

        Returns:
            ON24's registrant object.

        Raises:
            ValueError: a malformed event id or an empty email (before any I/O).
            InvalidDataError: the email exceeds 100 characters, or ON24 refused the data (400/412/422).
            NotFoundError: the event or client does not exist.
            CredentialsRejectedError: the credentials were refused.
            TransientError: unreachable, 5xx, or throttled beyond the retry budget.
        """
        eid = _check_event_id(event_id)
        form = _registrant_form(registrant)
        # "isDeleted" keeps DOC-reg's spelling (every other DOC-reg field name is lowercase already); the
        # stand-in, like ON24 probably (reference §7.2), reads form names case-insensitively.
        form["isDeleted"] = "N"
        body = self._call("create_registrant", "POST", f"/event/{eid}/registrant", eid, form=form)
        return _parse(Registrant, body, f"ON24 create_registrant (event {eid})")

    def update_registrant(self, event_id: int | str, registrant: RegistrantFields) -> Registrant:
        """Update an existing registrant of one event (``PATCH /event/{id}/registrant``; email is the key).

        Args:
            event_id: the ON24 event id (numeric).
            registrant: the fields to change; ``None``/empty fields are left as they are.

        Returns:
            ON24's registrant object.

        Raises:
            ValueError: a malformed event id or an empty email (before any I/O).
            NotFoundError: the email is not registered for the event (ON24's 403), or no such event.
            InvalidDataError: the email exceeds 100 characters, or ON24 refused the data.
            CredentialsRejectedError: the credentials were refused.
            TransientError: unreachable, 5xx, or throttled beyond the retry budget.
        """
        eid = _check_event_id(event_id)
        form = _registrant_form(registrant)
        body = self._call("update_registrant", "PATCH", f"/event/{eid}/registrant", eid, form=form)
        return _parse(Registrant, body, f"ON24 update_registrant (event {eid})")

    def delete_registrant(self, event_id: int | str, email: str) -> None:
        """Soft delete a registrant (``POST`` with ``email`` and ``isDeleted=Y``). Idempotent.

        When ON24 says there is no such registrant (412 "You're trying to soft delete the registrant you're
        creating.") the registrant is already gone and this returns normally. A missing *event* still raises
        ``NotFoundError``: it may equally mean a wrong client id, which the caller should see. ON24 refuses
        soft deletes once the event has started (status undocumented; surfaces as a ``PermanentError``).

        Args:
            event_id: the ON24 event id (numeric).
            email: the registrant's email.

        Raises:
            ValueError: a malformed event id or an empty email (before any I/O).
            InvalidDataError: the email exceeds 100 characters, or ON24 refused the delete.
            NotFoundError: the event or client does not exist.
            CredentialsRejectedError: the credentials were refused.
            TransientError: unreachable, 5xx, or throttled beyond the retry budget.
        """
        eid = _check_event_id(event_id)
        address = _check_email(email)
        self._call(
            "delete_registrant",
            "POST",
            f"/event/{eid}/registrant",
            eid,
            form={"email": address, "isDeleted": "Y"},
            done_when=lambda status, message: status == 412 and "soft delete" in message.lower(),
        )

    def forget_registrant(self, event_id: int | str, email: str) -> None:
        """Erase a registrant's personal data in one event (``POST /forget`` with ``email`` and ``eventid``).

        ON24 anonymises the record: the email becomes ``{eventuserid}-deleted``, names ``deleted``, other
        personal fields null. Idempotent: a 404 (no such registrant, e.g. already forgotten) means done.

        Raises:
            ValueError: a malformed event id or an empty email (before any I/O).
            InvalidDataError: the email exceeds 100 characters, or ON24 refused the call.
            CredentialsRejectedError: the credentials were refused.
            TransientError: unreachable, 5xx, or throttled beyond the retry budget (the limit is 30 a minute).
        """
        eid = _check_event_id(event_id)
        address = _check_email(email)
        self._call(
            "forget_registrant",
            "POST",
            "/forget",
            eid,
            form={"email": address, "eventid": eid},
            done_when=lambda status, message: status == 404,
        )

    def get_event(self, event_id: int | str) -> On24Event:
        """Read an event's metadata (``GET /event/{id}``): title, schedule, audience URL.

        Args:
            event_id: the ON24 event id (numeric).

        Returns:
            The event; fields ON24 did not send are ``None``.

        Raises:
            ValueError: a malformed event id (before any I/O).
            NotFoundError: the event or client does not exist.
            CredentialsRejectedError: the credentials were refused.
            TransientError: unreachable, 5xx, or throttled beyond the retry budget.
        """
        eid = _check_event_id(event_id)
        body = self._call("get_event", "GET", f"/event/{eid}", eid)
        if isinstance(body, dict) and not any(str(key).lower() == "eventid" for key in body):
            body = {**body, "eventid": eid}
        return _parse(On24Event, body, f"ON24 get_event (event {eid})")

    def iter_attendee_pages(
        self,
        event_id: int | str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        page_size: int = MAX_PAGE_SIZE,
        first_page: int = 0,
    ) -> Iterator[tuple[int, list[Attendee]]]:
        """Like ``iter_attendees`` but page by page, as ``(page index, attendees)``, starting at ``first_page``.

        A metrics pull too large for one run records the next page index and resumes there later.
        """
        if isinstance(first_page, bool) or first_page < 0:
            raise ValueError("first_page must be 0 or more")
        eid, params = _attendee_query(event_id, start, end, page_size)
        return self._attendee_pages(eid, params, page_size, first_page)

    def _attendee_pages(
        self, eid: str, params: dict[str, str], page_size: int, first_page: int
    ) -> Iterator[tuple[int, list[Attendee]]]:
        what = f"ON24 list_attendees (event {eid})"
        offset = first_page
        base: int | None = None  # 0 or 1: how this server counts currentpage
        previous: tuple[tuple[Any, Any], ...] | None = None
        while True:
            query = {**params, "pageOffset": str(offset), "itemsPerPage": str(page_size)}
            body = self._call(
                "list_attendees", "GET", f"/event/{eid}/attendee", eid,
                params=query, limiter=self._attendee_limiter, page=offset,
            )  # fmt: skip
            if not isinstance(body, dict):
                raise TransientError(f"{what}: page {offset} is not a JSON object")
            top = {str(key).lower(): value for key, value in body.items()}
            rows = top.get("attendees")
            if not isinstance(rows, list) or not rows:
                return
            signature = tuple((row.get("eventuserid"), row.get("email")) if isinstance(row, dict) else (None, None)
                              for row in rows)  # fmt: skip
            if signature == previous:
                _log.warning("%s: page %d repeats the previous page; ON24 ignored paging, stopping", what, offset)
                return
            previous = signature
            yield offset, [Attendee.model_validate(row) for row in rows if isinstance(row, dict)]
            pagecount = _lenient_int(top.get("pagecount"))
            if pagecount is None:
                return  # unpaged answer: the whole list came at once
            current = _lenient_int(top.get("currentpage"))
            index = offset
            if current is not None:
                if base is None:
                    base = 1 if current == offset + 1 else 0
                # Never behind our own offset: a stuck currentpage must not keep us paging forever.
                index = max(current - base, offset)
            if index >= pagecount - 1:
                return
            offset += 1

    def _headers(self) -> dict[str, str]:
        return {
            "accessTokenKey": self._credentials.access_token_key.get_secret_value(),
            "accessTokenSecret": self._credentials.access_token_secret.get_secret_value(),
            "Accept": "application/json",
        }

    def _call(
        self,
        op: str,
        method: str,
        path: str,
        event_id: str | None,
        *,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        limiter: RateLimiter | None = None,
        page: int | None = None,
        done_when: _Tolerance | None = None,
    ) -> Any:
        """Make one logical call (with retries) and return the decoded JSON body, or raise a shared error."""
        if self._closed:
            raise RuntimeError("On24Client is closed")
        what = f"ON24 {op} (event {event_id})" if event_id else f"ON24 {op} (client {self.client_id})"
        url = self._prefix + path
        stats = _CallStats()

        def attempt() -> Any:
            stats.attempts += 1
            stats.status = None
            if limiter is not None:
                limiter.acquire()
            try:
                response = self._http.request(
                    method, url, params=params, data=form, headers=self._headers(), timeout=self._timeout
                )
            except httpx.RequestError as exc:  # timeouts, connection refused/reset/dropped, protocol errors
                if not isinstance(exc, _NOT_SENT):
                    self._last_unanswered_at = time.monotonic()
                kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "request failed"
                raise TransientError(f"{what}: {kind} ({type(exc).__name__})") from exc
            if response.status_code in _GATEWAY_GAVE_UP:
                self._last_unanswered_at = time.monotonic()
            stats.status = response.status_code
            return _interpret(what, response, done_when)

        started = time.monotonic()
        try:
            body = call_with_retry(attempt, policy=self._retry, what=what)
        except IntegrationError as error:
            _log.warning(
                "ON24 %s event=%s page=%s status=%s attempts=%d duration_ms=%d failed: %s",
                op, event_id, page, stats.status, stats.attempts, (time.monotonic() - started) * 1000,
                type(error).__name__,
            )  # fmt: skip
            raise
        _log.info(
            "ON24 %s event=%s page=%s status=%s attempts=%d duration_ms=%d",
            op, event_id, page, stats.status, stats.attempts, (time.monotonic() - started) * 1000,
        )  # fmt: skip
        return body


# ---- module helpers --------------------------------------------------------------------------------------------
def _attendee_query(
    event_id: int | str, start: datetime | None, end: datetime | None, page_size: int
) -> tuple[str, dict[str, str]]:
    """Validate attendee-list arguments (before any I/O) and build the date filter parameters."""
    eid = _check_event_id(event_id)
    if isinstance(page_size, bool) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    params: dict[str, str] = {}
    for name, moment in (("start", start), ("end", end)):
        if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
            raise ValueError(f"{name} must be a timezone-aware datetime")
    if start is not None and end is not None and end < start:
        raise ValueError("end must not be before start")
    if start is not None:
        params["startDate"] = start.replace(microsecond=0).isoformat()
    if end is not None:  # round up to whole seconds so the last fraction of a second stays included
        whole = end.replace(microsecond=0) + (timedelta(seconds=1) if end.microsecond else timedelta())
        params["endDate"] = whole.isoformat()
    return eid, params


def _check_event_id(event_id: int | str) -> str:
    if isinstance(event_id, bool) or not isinstance(event_id, int | str):
        raise ValueError("ON24 event id must be a positive number")
    text = str(event_id).strip()
    if not _DIGITS.fullmatch(text) or int(text) == 0:
        raise ValueError("ON24 event id must be a positive number")
    return str(int(text))


def _check_email(email: str) -> str:
    address = _clean_text(email) if isinstance(email, str) else ""
    if not address:
        raise ValueError("registrant email must not be empty")
    if len(address) > FIELD_MAX_LENGTHS["email"]:
        raise InvalidDataError(f"registrant email is longer than ON24's {FIELD_MAX_LENGTHS['email']}-character limit")
    return address


def _registrant_form(fields: RegistrantFields) -> dict[str, str]:
    """The form body for a registrant: lowercase names, cleaned and truncated values, email first."""
    form = {"email": _check_email(fields.email)}
    for name, value in fields.model_dump(exclude={"email"}, exclude_none=True).items():
        if isinstance(value, bool):
            form[name] = "Y" if value else "N"
            continue
        text = _clean_text(str(value))
        if not text:
            continue
        if name in _PHONE_FIELDS and sum(char.isdigit() for char in text) < _MIN_PHONE_DIGITS:
            _log.debug("leaving out %s: fewer than %d digits, ON24 would refuse it", name, _MIN_PHONE_DIGITS)
            continue
        if name != "exteventusercd":
            text = spreadsheet_safe(text, phone=name in _PHONE_FIELDS)
        form[name] = text[: FIELD_MAX_LENGTHS[name]].rstrip()
    return form


def spreadsheet_safe(text: str, *, phone: bool = False) -> str:
    """Free text as it may be stored in ON24, whose exports are opened in spreadsheets.

    Invisible format characters (Unicode category Cf, e.g. U+200B) are removed, except the zero-width
    joiner and non-joiner that some scripts need. A value that starts with ``=``, ``+``, ``-`` or ``@`` gets a
    leading apostrophe, so a spreadsheet shows it as text instead of evaluating it (OWASP, "CSV Injection");
    a phone number that is only ``+`` and digits is left as it is.
    """
    text = "".join(ch for ch in text if ch in _KEPT_FORMAT_CHARS or unicodedata.category(ch) != "Cf").strip()
    if text.startswith(_FORMULA_STARTS) and not (phone and _PHONE_SHAPE.fullmatch(text)):
        return "'" + text
    return text


def _safe_message(response: httpx.Response) -> str:
    """ON24's ``message`` from an error body, cleaned, with any email address masked, and truncated; empty when
    there is none. The text goes into logs and the ledger's reasons, which hold ids, never an address."""
    try:
        payload = response.json()
    except ValueError:
        return ""
    if not isinstance(payload, dict):
        return ""
    message = next((value for key, value in payload.items() if str(key).lower() == "message"), None)
    if not isinstance(message, str):
        return ""
    text = _ADDRESS.sub("<email>", _clean_text(message))
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), 3600.0)


def _interpret(what: str, response: httpx.Response, done_when: _Tolerance | None) -> Any:
    status = response.status_code
    if 200 <= status < 300:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise TransientError(f"{what}: ON24 answered {status} with a body that is not JSON") from exc
    message = _safe_message(response)
    if done_when is not None and done_when(status, message):
        return None
    raise _error_for(what, status, message, response.headers)


def _error_for(what: str, status: int, message: str, headers: httpx.Headers) -> IntegrationError:
    text = f"{what}: ON24 answered {status}" + (f": {message}" if message else "")
    lowered = message.lower()
    if status == 429 or (status == 403 and "maximum number of calls" in lowered):
        return ThrottledError(text, retry_after=_retry_after(headers))
    if status == 403 and "email provided was not found" in lowered:
        return NotFoundError(text)
    if status in {401, 403}:
        return CredentialsRejectedError(text)
    if status in {404, 410}:
        return NotFoundError(text)
    if status in {400, 412, 422}:
        return InvalidDataError(text)
    if status == 408 or status >= 500:
        return TransientError(text)
    return PermanentError(text)


def _parse(model: type[_M], body: Any, what: str) -> _M:
    """Validate a 200 body: not JSON-object -> TransientError (a gateway glitch); missing ids -> PermanentError."""
    if not isinstance(body, dict):
        raise TransientError(f"{what}: ON24's answer is not a JSON object")
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        fields = ", ".join(sorted({".".join(str(part) for part in err["loc"]) for err in exc.errors()}))
        raise PermanentError(f"{what}: ON24's answer lacks or garbles {fields}") from None
