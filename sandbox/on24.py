"""A strict in-memory stand-in for the ON24 REST API v2 (registration, event metadata, attendee analytics).

It follows ``reference/on24-api.md``: the same paths, auth headers, error statuses and ``{"message"}`` bodies,
form-encoded writes with case-insensitive field names, documented field lengths, date formats and per-endpoint
throttling. Where the reference marks ON24's behaviour as uncertain, the choice made here is commented with
its section number (§7.n) so a test that relies on it is easy to find.

Not emulated: the ``regfield`` option lists (``jobtitle``/``country`` are accepted as sent), the refusal of soft
deletes after an event has started, forget/GDPR endpoints, XML answers, multipart bodies, event creation.

Sandbox-only extras (never on the real service): the Python controls (``add_client``, ``add_event``,
``set_attendee``, ``run_webinar``, ``set_limit``, ``deactivate``, ``paging``) and ``POST
/sandbox/events/{id}/run`` (no auth), which turns registrants into attendees for the local demo.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from sandbox.server import Request, Response, StandIn

PACIFIC = ZoneInfo("America/Los_Angeles")

MSG_MISSING_HEADERS = "Header must contain both accessTokenKey and accessTokenSecret."
MSG_WRONG_TOKENS = "AccessTokenKey and AccessTokenSecret are wrong or invalid."
MSG_DEACTIVATED = "AccessTokenKey and AccessTokenSecret are deactivated."
MSG_THROTTLED = "You have reached the maximum number of calls for this api."
MSG_SOFT_DELETE_UNKNOWN = "You're trying to soft delete the registrant you're creating."
MSG_EMAIL_NOT_FOUND = "The email provided was not found."
MSG_BAD_DATES = "Error, incorrect date formats."
MSG_END_BEFORE_START = "Error, end date is before start date."

# Registration form fields and their maximum lengths (DOC-reg). Phones: 100 (DOC-reg; DOC-phone says 1000, §7.9).
FIELD_MAX: dict[str, int] = {
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
YES_NO_FIELDS = frozenset({"eventemail", "marketingemail"})
PHONE_FIELDS = ("workphone", "homephone", "fax")
POST_FIELDS = {*FIELD_MAX, *YES_NO_FIELDS, "isdeleted"}
PATCH_FIELDS = {*FIELD_MAX, *YES_NO_FIELDS, "isblocked"}

PathKind = Literal["registrant", "event", "event_list", "attendee", "registrant_list", "forget"]
PATH_KINDS: tuple[str, ...] = ("registrant", "event", "event_list", "attendee", "registrant_list", "forget")
PagingMode = Literal["zero", "one", "ignore"]

_PREFIX = re.compile(r"/v2/client/([^/]+)(/.*)?")
_EVENT_PATH = re.compile(r"/event/([^/]+)(/registrant|/attendee)?/?")
_RUN_PATH = re.compile(r"/sandbox/events/([0-9]+)/run/?")
_INPUT_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})([+-]\d{2}:\d{2})?)?")
# What ON24 plausibly takes as an address (its rule is undocumented, §7.5): a local part of printable characters
# without the RFC 5322 specials, dots only between characters; a domain of two or more labels of letters (any
# script, so an IDN domain in Unicode passes as well as its ASCII form), digits and inner hyphens.
_LOCAL = re.compile(r"[^\s\"(),:;<>@\[\\\]]{1,64}")
_LABEL = re.compile(r"(?!-)[^\W_]([^\W_]|-){0,62}(?<!-)")


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response.json(status, payload, headers)


def _message(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response.json(status, {"message": message}, headers)


def on24_time(moment: datetime | None) -> str | None:
    """Render a timestamp as ON24 outputs them: US Pacific time with a numeric offset."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=PACIFIC)
    return moment.astimezone(PACIFIC).isoformat(timespec="seconds")


def _parse_input_date(text: str, *, is_end: bool) -> datetime:
    """Parse an ON24 date parameter (DOC-date); raises ValueError for anything else, DST gaps included."""
    match = _INPUT_DATE.fullmatch(text)
    if not match:
        raise ValueError(text)
    year, month, day, hour, minute, second, offset = match.groups()
    if hour is None:
        wall = datetime(int(year), int(month), int(day), 23 if is_end else 0, 59 if is_end else 0, 59 if is_end else 0)
    else:
        wall = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    if offset:
        return datetime.fromisoformat(wall.isoformat() + offset)
    local = wall.replace(tzinfo=PACIFIC)
    if local.astimezone(PACIFIC).replace(tzinfo=None) != wall:  # a wall time skipped by daylight saving
        raise ValueError(text)
    return local


@dataclass
class _Account:
    key: str
    secret: str
    active: bool = True


@dataclass
class _Limit:
    calls: int
    window: float
    style: str
    retry_after: float | None
    hits: dict[str, deque[float]] = field(default_factory=dict)
    """Each account's calls in the window: ON24 counts per account (client id)."""
    allowed: int = 0
    refused: int = 0
    let_through: list[float] = field(default_factory=list)
    """``time.monotonic()`` of every call let through: a benchmark's timeline."""


@dataclass
class _Event:
    client_id: str
    event_id: int
    meta: dict[str, Any]
    registrants: dict[str, dict[str, Any]] = field(default_factory=dict)  # lower-case email -> record
    attendees: dict[str, dict[str, Any]] = field(default_factory=dict)  # lower-case email -> metrics
    # Filtered, ordered attendee lists per (start, end, userstatus), valid while ``version`` is unchanged, so
    # paging through 100,000 attendees does not sort and filter them again for every page.
    version: int = 0
    listings: dict[tuple[Any, ...], tuple[int, list[Any]]] = field(default_factory=dict)

    def touch(self) -> None:
        self.version += 1
        self.listings.clear()


class On24StandIn(StandIn):
    """The ON24 stand-in. ``paging`` chooses how attendee lists page (§7.4, §7.7):

    - ``"zero"`` (default): honours ``pageOffset``/``itemsPerPage``, ``currentpage`` counts from 0;
    - ``"one"``: the same with ``currentpage`` counting from 1;
    - ``"ignore"``: the documented event-level shape, every attendee at once, no ``pagecount``.
    """

    name = "on24-stand-in"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._state = threading.RLock()
        self._accounts: dict[str, _Account] = {}
        self._events: dict[int, _Event] = {}
        self._limits: dict[str, _Limit] = {}
        self._ids = itertools.count(300_000_001)
        self.paging: PagingMode = "zero"
        self.ascii_emails_only = False
        """An account whose validation takes ASCII addresses only (as many mail systems do): an IDN domain must
        come in its ASCII form, and a local part with ``ö`` or ``и`` is "not valid"."""

    # ---- Python controls for tests and the demo --------------------------------------------------------------
    def add_client(self, client_id: str | int, key: str, secret: str) -> None:
        """Create (or re-key) an ON24 account with its token key and secret."""
        with self._state:
            self._accounts[str(client_id)] = _Account(key, secret)

    def deactivate(self, client_id: str | int) -> None:
        """Disable the account's token (ON24 does so after 60 days of inactivity): calls get 401 deactivated."""
        with self._state:
            self._accounts[str(client_id)].active = False

    def reactivate(self, client_id: str | int) -> None:
        """Undo ``deactivate``."""
        with self._state:
            self._accounts[str(client_id)].active = True

    def add_event(
        self,
        client_id: str | int,
        event_id: int | str,
        *,
        title: str | None = None,
        goodafter: datetime | None = None,
        goodtill: datetime | None = None,
        livestart: datetime | None = None,
        liveend: datetime | None = None,
        archivestart: datetime | None = None,
        archiveend: datetime | None = None,
        audienceurl: str | None = None,
        isactive: bool = True,
        displaytimezonecd: str = "America/Los_Angeles",
        **extra: Any,
    ) -> dict[str, Any]:
        """Create an event of an account. Defaults: live next week at 10:00 Pacific for an hour, archived 90 days.

        ``title`` is answered as ``description`` (where ON24 keeps the title is uncertain, §7.7); pass
        ``eventname=...`` in ``extra`` to answer that key too. Extra keys are answered verbatim.

        Returns:
            The event as ``GET /event/{id}`` answers it.
        """
        eid = int(event_id)
        if livestart is None:
            next_week = datetime.now(PACIFIC).date() + timedelta(days=7)
            livestart = datetime(next_week.year, next_week.month, next_week.day, 10, tzinfo=PACIFIC)
        goodafter = goodafter or livestart
        liveend = liveend or livestart + timedelta(hours=1)
        archivestart = archivestart or liveend
        archiveend = archiveend or livestart + timedelta(days=90)
        goodtill = goodtill or archiveend
        key = hashlib.sha256(f"sandbox-event-{eid}".encode()).hexdigest()[:32].upper()
        meta = {
            "eventid": eid,
            "description": title if title is not None else f"Sandbox webinar {eid}",
            "goodafter": goodafter,
            "goodtill": goodtill,
            "livestart": livestart,
            "liveend": liveend,
            "archivestart": archivestart,
            "archiveend": archiveend,
            "isactive": isactive,
            "displaytimezonecd": displaytimezonecd,
            "audienceurl": audienceurl or f"https://event.on24.com/wcc/r/{eid}/{key}",
            "lastupdated": datetime.now(PACIFIC).replace(microsecond=0),
            **extra,
        }
        with self._state:
            if str(client_id) not in self._accounts:
                raise KeyError(f"unknown client {client_id}: add_client first")
            self._events[eid] = _Event(str(client_id), eid, meta)
            return self._render_event(self._events[eid])

    def registrants(self, event_id: int | str) -> list[dict[str, Any]]:
        """Every registrant of the event in creation order, soft-deleted ones included (``isdeleted`` True)."""
        with self._state:
            event = self._events[int(event_id)]
            return [dict(record) for record in event.registrants.values()]

    def registrant(self, event_id: int | str, email: str) -> dict[str, Any] | None:
        """One registrant by email (case-insensitive), or None."""
        with self._state:
            record = self._events[int(event_id)].registrants.get(email.strip().lower())
            return dict(record) if record else None

    def add_registrant(self, event_id: int | str, email: str, /, **fields: Any) -> dict[str, Any]:
        """Register someone as ON24's own registration page (or a walk-in) would: no ``exteventusercd`` unless given."""
        with self._state:
            event = self._events[int(event_id)]
            record = self._new_registrant(event, {"email": email.strip(), **fields})
            event.touch()
            return dict(record)

    def soft_delete(self, event_id: int | str, email: str) -> None:
        """Delete a registrant by hand in ON24's console (a soft delete: ``isdeleted``)."""
        with self._state:
            event = self._events[int(event_id)]
            event.registrants[email.strip().lower()]["isdeleted"] = True
            event.touch()

    def attendees(self, event_id: int | str) -> list[dict[str, Any]]:
        """Every attendee row of the event as the attendee API renders it (deleted registrants included)."""
        with self._state:
            event = self._events[int(event_id)]
            return [self._render_attendee(event, email) for email in sorted(event.attendees, key=self._order(event))]

    def set_attendee(self, event_id: int | str, email: str, /, **metrics: Any) -> dict[str, Any]:
        """Record (or overwrite) an attendee's metrics under ON24 keys; datetimes become Pacific timestamps.

        An email that is not registered yet is registered first (with only the email). Any key overrides what the
        attendee list shows, ``email`` included (ON24 may show an address in another spelling than was sent:
        another case, an IDN domain in Unicode).

        Returns:
            The attendee row as the API renders it.
        """
        with self._state:
            event = self._events[int(event_id)]
            key = email.strip().lower()
            if key not in event.registrants:
                self._new_registrant(event, {"email": email.strip()})
            event.attendees.setdefault(key, {}).update(metrics)
            event.touch()
            return self._render_attendee(event, key)

    def run_webinar(self, event_id: int | str, seed: int = 0, *, no_show_rate: float = 0.3) -> dict[str, Any]:
        """Simulate the webinar: active registrants become attendees with deterministic pseudo-random metrics.

        The same (event, seed, registrants) always give the same result. About ``no_show_rate`` of the
        registrants stay no-shows; of the others, most watch live, some only the archive, some both. All
        activity lies in the past (an event scheduled later is treated as if it had just happened), so a
        metrics pull that filters on "until now" sees it.

        Returns:
            ``{"eventid", "attendees", "noshows"}`` counts.
        """
        rng = random.Random(f"on24-sandbox:{int(event_id)}:{seed}")
        with self._state:
            event = self._events[int(event_id)]
            start: datetime = event.meta.get("livestart") or datetime.now(PACIFIC)
            end: datetime = event.meta.get("liveend") or start + timedelta(hours=1)
            duration = max(15, int((end - start).total_seconds() // 60))
            latest_start = datetime.now(PACIFIC).replace(microsecond=0) - timedelta(minutes=duration, hours=3)
            start = min(start, latest_start)
            attended = noshows = 0
            active = [r for r in event.registrants.values() if not r["isdeleted"]]
            for record in sorted(active, key=lambda r: int(r["eventuserid"])):
                if rng.random() < no_show_rate:
                    noshows += 1
                    continue
                attended += 1
                kind = rng.choices(("live", "archive", "both"), weights=(65, 15, 20))[0]
                metrics: dict[str, Any] = {}
                if kind in ("live", "both"):
                    joined = start + timedelta(minutes=rng.randint(0, 10), seconds=rng.randint(0, 59))
                    minutes = rng.randint(1, duration)
                    metrics.update(
                        liveminutes=minutes,
                        cumulativeliveminutes=minutes + (rng.randint(1, 5) if rng.random() < 0.1 else 0),
                        liveviewed=1,
                        firstliveactivity=joined,
                        lastliveactivity=joined + timedelta(minutes=minutes),
                    )
                if kind in ("archive", "both"):
                    opened = start + timedelta(minutes=duration + rng.randint(20, 150))
                    minutes = rng.randint(1, duration)
                    metrics.update(
                        archiveminutes=minutes,
                        cumulativearchiveminutes=minutes,
                        archiveviewed=1,
                        firstarchiveactivity=opened,
                        lastarchiveactivity=opened + timedelta(minutes=min(minutes, 25)),
                    )
                metrics.update(
                    askedquestions=rng.choice((0, 0, 0, 0, 1, 1, 2, 3)),
                    answeredpolls=rng.randint(0, 3),
                    answeredsurveys=rng.choice((0, 0, 1)),
                    resourcesdownloaded=rng.randint(0, 2),
                    engagementscore=round(rng.uniform(0.5, 10.0), 1),
                )
                event.attendees[record["email"].lower()] = metrics
            event.touch()
            return {"eventid": event.event_id, "attendees": attended, "noshows": noshows}

    def set_limit(
        self,
        path_kind: PathKind,
        calls_per_minute: int,
        style: Literal["429", "403"] = "429",
        *,
        window_seconds: float = 60.0,
        retry_after: float | None = None,
    ) -> None:
        """Throttle one endpoint group per account with a sliding window (the real algorithm is unknown, §7.3).

        Args:
            path_kind: ``registrant`` (POST/PATCH registrant), ``event`` (GET /event/{id}), ``event_list``
                (GET /event), ``attendee`` (GET attendee list), ``registrant_list`` (GET registrant list).
            calls_per_minute: calls allowed per window.
            style: ``"429"`` (as DG† reports) or ``"403"`` with ON24's documented message.
            window_seconds: window length; shorter than a minute only to keep tests fast.
            retry_after: seconds to send as ``Retry-After`` with a 429 (ON24 documents none).
        """
        if path_kind not in PATH_KINDS:
            raise ValueError(f"path_kind must be one of {PATH_KINDS}")
        with self._state:
            self._limits[path_kind] = _Limit(calls_per_minute, window_seconds, style, retry_after)

    def clear_limits(self) -> None:
        """Remove every throttle."""
        with self._state:
            self._limits.clear()

    # ---- HTTP ---------------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        run = _RUN_PATH.fullmatch(request.path)
        if run:
            return self._http_run(request, int(run.group(1)))
        prefix = _PREFIX.fullmatch(request.path)
        if not prefix:
            return _message(404, "Resource not found.")
        client_id, rest = prefix.group(1), prefix.group(2) or ""
        key, secret = request.header("accessTokenKey"), request.header("accessTokenSecret")
        if not key or not secret:
            return _message(401, MSG_MISSING_HEADERS)
        with self._state:
            account = self._accounts.get(client_id)
            if account is None:
                return _message(404, f"Client with id {client_id} does not exist.")
            key_ok = hmac.compare_digest(key.encode(), account.key.encode())
            secret_ok = hmac.compare_digest(secret.encode(), account.secret.encode())
            if not (key_ok and secret_ok):
                return _message(401, MSG_WRONG_TOKENS)
            if not account.active:
                return _message(401, MSG_DEACTIVATED)
            return self._route(request, client_id, rest)

    def _route(self, request: Request, client_id: str, rest: str) -> Response:
        method = request.method
        if rest in ("/forget", "/forget/"):
            if method != "POST":
                return _message(405, "Method not allowed.")
            return self._throttled("forget", client_id) or self._forget(request, client_id)
        if rest in ("/event", "/event/"):
            if method != "GET":
                return _message(405, "Method not allowed.")
            return self._throttled("event_list", client_id) or self._event_list(request, client_id)
        match = _EVENT_PATH.fullmatch(rest)
        if not match:
            return _message(404, "Resource not found.")
        raw_id, sub = match.group(1), match.group(2)
        allowed = {None: ("GET",), "/registrant": ("GET", "POST", "PATCH"), "/attendee": ("GET",)}[sub]
        if method not in allowed:
            return _message(405, "Method not allowed.")
        event = self._events.get(int(raw_id)) if raw_id.isdigit() else None
        if event is None or event.client_id != client_id:
            return _message(404, f"Event with id {raw_id} does not exist.")
        if sub is None:
            return self._throttled("event", client_id) or _json(200, self._render_event(event))
        if sub == "/attendee":
            return self._throttled("attendee", client_id) or self._attendee_list(request, event)
        if method == "GET":
            return self._throttled("registrant_list", client_id) or self._registrant_list(request, event)
        throttled = self._throttled("registrant", client_id)
        if throttled:
            return throttled
        if not event.meta.get("isactive", True):
            return _message(403, f"Event {event.event_id} is not active.")
        form = self._form(request, POST_FIELDS if method == "POST" else PATCH_FIELDS)
        if isinstance(form, Response):
            return form
        return self._create(event, form) if method == "POST" else self._update(event, form)

    def throttle_counts(self, path_kind: PathKind) -> tuple[int, int]:
        """(calls let through, calls refused) under ``path_kind``'s limit since it was set."""
        with self._state:
            limit = self._limits.get(path_kind)
            return (limit.allowed, limit.refused) if limit is not None else (0, 0)

    def throttle_times(self, path_kind: PathKind) -> list[float]:
        """``time.monotonic()`` of each call let through under ``path_kind``'s limit since it was set."""
        with self._state:
            limit = self._limits.get(path_kind)
            return list(limit.let_through) if limit is not None else []

    def _throttled(self, kind: str, client_id: str) -> Response | None:
        limit = self._limits.get(kind)
        if limit is None:
            return None
        now = time.monotonic()
        hits = limit.hits.setdefault(client_id, deque())
        while hits and hits[0] <= now - limit.window:
            hits.popleft()
        if len(hits) < limit.calls:
            hits.append(now)
            limit.allowed += 1
            limit.let_through.append(now)
            return None
        limit.refused += 1
        if limit.style == "403":
            return _message(403, MSG_THROTTLED)
        headers = {"Retry-After": f"{limit.retry_after:g}"} if limit.retry_after is not None else None
        return _message(429, MSG_THROTTLED, headers)

    # ---- registration ------------------------------------------------------------------------------------
    def _form(self, request: Request, allowed: set[str]) -> dict[str, str] | Response:
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            # ON24's answer to a JSON or missing body is undocumented; 415 is what its Java stack would send
            # for an unsupported media type. Multipart (which ON24 also takes) is not emulated.
            return _message(415, "Content-Type must be application/x-www-form-urlencoded.")
        try:
            pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(request.body))
        except (UnicodeDecodeError, ValueError):
            return _message(400, "Malformed form body.")
        form: dict[str, str] = {}
        for raw_name, value in pairs:
            name = raw_name.strip().lower()  # names are case-insensitive (§7.2)
            if name not in allowed:
                # What ON24 does with an unknown field is undocumented (§7.5); refusing it catches client typos.
                return _message(400, f"Unknown field: {raw_name}.")
            if name in FIELD_MAX and len(value) > FIELD_MAX[name]:
                return _message(400, f"Field {name} exceeds the maximum length of {FIELD_MAX[name]} characters.")
            if name in YES_NO_FIELDS or name in ("isdeleted", "isblocked"):
                if value.upper() not in ("Y", "N"):
                    return _message(400, f"Field {name} must be Y or N.")
                value = value.upper()
            if name in PHONE_FIELDS and value and sum(c.isdigit() for c in value) < 7:
                return _message(400, f"Field {name} must contain at least 7 digits.")
            form[name] = value
        email = form.get("email", "").strip()
        if not email:
            return _message(400, "Email is required.")
        if not self._email_valid(email):
            return _message(400, "Email is not valid.")  # status and text of validation failures: §7.5
        form["email"] = email
        return form

    def _email_valid(self, email: str) -> bool:
        local, at, domain = email.rpartition("@")
        labels = domain.split(".")
        return bool(
            at
            and _LOCAL.fullmatch(local)
            and not (local.startswith(".") or local.endswith(".") or ".." in local)
            and all(ch.isprintable() for ch in email)
            and len(labels) >= 2
            and all(_LABEL.fullmatch(label) for label in labels)
            and not labels[-1].isdigit()
            and (email.isascii() or not self.ascii_emails_only)
        )

    def _create(self, event: _Event, form: dict[str, str]) -> Response:
        key = form["email"].lower()
        existing = event.registrants.get(key)
        deleted_flag = form.pop("isdeleted", None)
        if deleted_flag == "Y":
            if existing is None:
                return _message(412, MSG_SOFT_DELETE_UNKNOWN)
            existing["isdeleted"] = True
            event.touch()
            return _json(200, self._render_registrant(existing))
        if existing is not None:
            # A repeat POST for a registered email updates it and keeps its eventuserid (§7.1). Only an explicit
            # isDeleted=N undeletes a soft-deleted registrant; a plain repeat leaves the flag as it was.
            self._apply(existing, form)
            if deleted_flag == "N":
                existing["isdeleted"] = False
                event.touch()
            return _json(200, self._render_registrant(existing))
        return _json(200, self._render_registrant(self._new_registrant(event, form)))

    def _update(self, event: _Event, form: dict[str, str]) -> Response:
        existing = event.registrants.get(form["email"].lower())
        if existing is None:
            return _message(403, MSG_EMAIL_NOT_FOUND)
        blocked = form.pop("isblocked", None)
        self._apply(existing, form)
        if blocked is not None:
            existing["isblocked"] = blocked
        return _json(200, self._render_registrant(existing))

    def _forget(self, request: Request, client_id: str) -> Response:
        """GDPR forget (DOC-fgt): anonymise every registrant with one of the emails, in one event or all."""
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return _message(415, "Content-Type must be application/x-www-form-urlencoded.")
        form = {name.strip().lower(): value for name, value in parse_qsl(request.body.decode("utf-8", "replace"))}
        emails = {e.strip().lower() for e in form.get("email", "").split(",") if e.strip()}
        if not emails:
            return _message(400, "Email is required.")
        raw_event = form.get("eventid", "").strip()
        if raw_event and not raw_event.isdigit():
            return _message(400, "eventid must be a number.")
        events = [e for e in self._events.values() if e.client_id == client_id
                  and (not raw_event or e.event_id == int(raw_event))]  # fmt: skip
        forgotten: list[int] = []
        for event in events:
            for email in emails & set(event.registrants):
                record = event.registrants.pop(email)
                anonymised = f"{record['eventuserid']}-deleted"
                for name in list(record):
                    if name in FIELD_MAX and name != "email":
                        record[name] = None
                record.update(email=anonymised, firstname="deleted", lastname="deleted", isdeleted=True)
                event.registrants[anonymised] = record
                if email in event.attendees:
                    event.attendees[anonymised] = event.attendees.pop(email)
                forgotten.append(int(record["eventuserid"]))
                event.touch()
        if not forgotten:
            return _message(404, "No registrants found for the given email.")
        return _json(200, {"deletedregistrants": {"eventuserids": forgotten}})

    def _new_registrant(self, event: _Event, form: dict[str, str]) -> dict[str, Any]:
        eventuserid = next(self._ids)
        record: dict[str, Any] = {
            **{name: value for name, value in form.items() if name != "isdeleted"},
            "eventid": event.event_id,
            "eventuserid": eventuserid,
            "isblocked": "N",
            "userprofileurl": f"https://event.on24.com/eventRegistration/console/apollox/profile?eventuserid={eventuserid}",
            "createtimestamp": on24_time(datetime.now(PACIFIC)),
            "isdeleted": False,
        }
        event.registrants[form["email"].lower()] = record
        event.touch()
        return record

    @staticmethod
    def _apply(record: dict[str, Any], form: dict[str, str]) -> None:
        for name, value in form.items():
            if name == "email":
                continue  # the key; its casing stays as first registered
            record[name] = value

    @staticmethod
    def _render_registrant(record: dict[str, Any]) -> dict[str, Any]:
        return {name: value for name, value in record.items() if name not in ("isdeleted", "createtimestamp")}

    def _registrant_list(self, request: Request, event: _Event) -> Response:
        """Registrants in creation order, active ones unless ``userStatus`` says otherwise; paged like the
        attendee list (§7.4: event-level paging is undocumented; ``paging`` chooses the shape)."""
        query = {name.lower(): value for name, value in request.query.items()}
        status = query.get("userstatus", "").lower()
        key = ("registrants", status)  # cached like the attendee listing: a page of 100,000 does not filter them all
        cached = event.listings.get(key)
        if cached is not None and cached[0] == event.version:
            rows = cached[1]
        else:
            rows = [r for r in event.registrants.values() if status == "any" or (status == "deleted") == r["isdeleted"]]
            event.listings[key] = (event.version, rows)
        body: dict[str, Any] = {"eventid": event.event_id, "totalregistrants": len(rows)}
        if self.paging == "ignore":
            body["registrants"] = [self._render_registrant(r) for r in rows]
            return _json(200, body)
        try:
            offset = int(query.get("pageoffset", "0"))
            per_page = min(int(query.get("itemsperpage", "100")), 100)
        except ValueError:
            return _message(400, "Error, pageOffset and itemsPerPage must be numbers.")
        if offset < 0 or per_page < 1:
            return _message(400, "Error, pageOffset must be 0 or more and itemsPerPage 1 or more.")
        body["pagecount"] = math.ceil(len(rows) / per_page)
        body["currentpage"] = offset + (1 if self.paging == "one" else 0)
        body["registrants"] = [self._render_registrant(r) for r in rows[offset * per_page : (offset + 1) * per_page]]
        return _json(200, body)

    # ---- events and analytics ------------------------------------------------------------------------------
    def _render_event(self, event: _Event) -> dict[str, Any]:
        body = {name: on24_time(value) if isinstance(value, datetime) else value for name, value in event.meta.items()}
        active = [r for r in event.registrants.values() if not r["isdeleted"]]
        body["eventanalytics"] = {
            "totalregistrants": len(active),
            "totalattendees": sum(1 for r in active if r["email"].lower() in event.attendees),
        }
        return body

    def _event_list(self, request: Request, client_id: str) -> Response:
        query = {name.lower(): value for name, value in request.query.items()}
        try:
            today = datetime.now(PACIFIC).date()
            start = _parse_input_date(query.get("startdate") or (today - timedelta(days=90)).isoformat(), is_end=False)
            end = _parse_input_date(query.get("enddate") or today.isoformat(), is_end=True)
        except ValueError:
            return _message(400, MSG_BAD_DATES)
        if end < start:
            return _message(400, MSG_END_BEFORE_START)
        if end - start > timedelta(days=184):
            return _message(400, "Error, the date range cannot exceed 6 months.")
        events = [
            self._render_event(e)
            for e in self._events.values()
            if e.client_id == client_id and start <= e.meta["goodafter"] <= end
        ]
        return _json(200, {"totalevents": len(events), "events": events})

    def _attendee_list(self, request: Request, event: _Event) -> Response:
        query = {name.lower(): value for name, value in request.query.items()}  # query names: any casing (§7.2)
        if "dateinterval" in query and ("startdate" in query or "enddate" in query):
            return _message(400, "Error, dateInterval cannot be combined with startDate or endDate.")
        try:
            start = _parse_input_date(query["startdate"], is_end=False) if "startdate" in query else None
            end = _parse_input_date(query["enddate"], is_end=True) if "enddate" in query else None
        except ValueError:
            return _message(400, MSG_BAD_DATES)
        if start is not None and end is not None and end < start:
            return _message(400, MSG_END_BEFORE_START)
        if query.get("datefiltermode", "lastactivity").lower() != "lastactivity":
            # The stand-in filters on last activity, with or without the mode (ON24's default is not documented).
            return _message(400, "Error, dateFilterMode is not supported for this call.")
        try:
            offset = int(query.get("pageoffset", "0"))
            per_page = min(int(query.get("itemsperpage", "100")), 100)  # "limit of 100 per page"
        except ValueError:
            return _message(400, "Error, pageOffset and itemsPerPage must be numbers.")
        if offset < 0 or per_page < 1:
            return _message(400, "Error, pageOffset must be 0 or more and itemsPerPage 1 or more.")
        emails = self._listing(event, start, end, query.get("userstatus", "").lower())
        body: dict[str, Any] = {"eventid": event.event_id, "totalattendees": len(emails)}
        if self.paging == "ignore":
            body["attendees"] = [self._render_attendee(event, email) for email in emails]
            return _json(200, body)
        body["pagecount"] = math.ceil(len(emails) / per_page)
        body["currentpage"] = offset + (1 if self.paging == "one" else 0)
        page = emails[offset * per_page : (offset + 1) * per_page]
        body["attendees"] = [self._render_attendee(event, email) for email in page]
        return _json(200, body)

    def _listing(self, event: _Event, start: datetime | None, end: datetime | None, status: str) -> list[str]:
        """Attendee emails in eventuserid order, filtered on user status and last activity (cached)."""
        key = (start, end, status)
        cached = event.listings.get(key)
        if cached is not None and cached[0] == event.version:
            return cached[1]
        emails = []
        for email in sorted(event.attendees, key=self._order(event)):
            deleted = event.registrants[email]["isdeleted"]
            if not (status == "any" or (status == "deleted") == deleted):
                continue
            if start is not None or end is not None:
                metrics = event.attendees[email]
                moments = [metrics.get(k) for k in ("lastliveactivity", "lastarchiveactivity")]
                last = max((m for m in moments if isinstance(m, datetime)), default=None)
                if last is None or (start is not None and last < start) or (end is not None and last > end):
                    continue
            emails.append(email)
        event.listings[key] = (event.version, emails)
        return emails

    @staticmethod
    def _order(event: _Event) -> Any:
        return lambda email: int(event.registrants[email]["eventuserid"])

    @staticmethod
    def _render_attendee(event: _Event, email: str) -> dict[str, Any]:
        record = event.registrants[email]
        row: dict[str, Any] = {
            "eventid": event.event_id,
            "eventuserid": record["eventuserid"],
            "email": record["email"],
            "firstname": record.get("firstname"),
            "lastname": record.get("lastname"),
            "exteventusercd": record.get("exteventusercd"),
            "partnerref": record.get("partnerref"),
            "isblocked": record["isblocked"],
            "userstatus": "Deleted" if record["isdeleted"] else "Active",
        }
        for name, value in event.attendees.get(email, {}).items():
            row[name] = on24_time(value) if isinstance(value, datetime) else value
        return row

    # ---- sandbox-only endpoint -------------------------------------------------------------------------------
    def _http_run(self, request: Request, event_id: int) -> Response:
        if request.method != "POST":
            return _message(405, "Method not allowed.")
        seed: Any = request.query.get("seed", 0)
        content_type = (request.header("Content-Type") or "").lower()
        if request.body and "json" in content_type:
            try:
                payload = request.json()
            except ValueError:
                return _message(400, "Body must be JSON.")
            if isinstance(payload, dict):
                seed = payload.get("seed", seed)
        try:
            seed_value = int(seed)
        except (TypeError, ValueError):
            return _message(400, "seed must be an integer.")
        with self._state:
            if event_id not in self._events:
                return _message(404, f"Event with id {event_id} does not exist.")
            return _json(200, self.run_webinar(event_id, seed_value))


def today_pacific() -> date:
    """Today's date in ON24's time zone (what a date-only ON24 parameter refers to)."""
    return datetime.now(PACIFIC).date()


__all__ = ["On24StandIn", "on24_time", "today_pacific"]
