"""ON24 REST API v2 client: registration writes, event metadata and attendee analytics.

This module owns every HTTP call to ON24 (``reference/on24-api.md`` is the contract): the regional base URL,
the ``accessTokenKey``/``accessTokenSecret`` headers, form-encoded bodies, paging and throttling. Statuses become
errors of the integration's tree through the one table in ``_errors``; nothing outside this package sees httpx.
Transient faults (throttling included) are retried inside the client's ``RetryPolicy`` budget, then raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import httpx

from shared.errors import CredentialsRejectedError, IntegrationError, NotFoundError, TransientError
from shared.http import HttpClientBase
from shared.on24._errors import Tolerance, interpret, parse
from shared.on24._forms import MAX_PAGE_SIZE, attendee_query, check_email, check_event_id, registrant_form
from shared.on24._models import (
    PACIFIC,
    On24Credentials,
    On24Event,
    Registrant,
    RegistrantFields,
    fingerprint,
    lenient_int,
)
from shared.ratelimit import RateLimiter
from shared.retry import RetryPolicy, call_with_retry

_log = logging.getLogger(__name__)

BASE_URLS: Final[Mapping[str, str]] = {"na": "https://api.on24.com", "eu": "https://api.eu.on24.com"}
DEFAULT_TIMEOUT: Final = 10.0
# A registration message can wait for Service Bus redelivery, so in-process retries only bridge short blips.
DEFAULT_RETRY: Final = RetryPolicy(budget=15.0, base_delay=0.5, max_delay=8.0, max_attempts=6)
# Failures that prove the request never reached ON24; after any other the request may still be applied.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_GATEWAY_GAVE_UP: Final = frozenset({502, 504})  # a gateway stopped waiting; ON24 behind it may not have


# ---- client ------------------------------------------------------------------------------------------------------
@dataclass
class _CallStats:
    attempts: int = 0
    status: int | None = None


class On24Client(HttpClientBase):
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
        super().__init__(timeout=self._timeout, transport=transport, http_client=http_client)
        self._last_unanswered_at: float | None = None

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
        today = datetime.now(PACIFIC).date().isoformat()
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
        eid = check_event_id(event_id)
        form = registrant_form(registrant)
        # "isDeleted" keeps DOC-reg's spelling (every other DOC-reg field name is lowercase already); the
        # stand-in, like ON24 probably (reference §7.2), reads form names case-insensitively.
        form["isDeleted"] = "N"
        body = self._call("create_registrant", "POST", f"/event/{eid}/registrant", eid, form=form)
        return parse(Registrant, body, f"ON24 create_registrant (event {eid})")

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
        eid = check_event_id(event_id)
        form = registrant_form(registrant)
        body = self._call("update_registrant", "PATCH", f"/event/{eid}/registrant", eid, form=form)
        return parse(Registrant, body, f"ON24 update_registrant (event {eid})")

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
        eid = check_event_id(event_id)
        address = check_email(email)
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
        eid = check_event_id(event_id)
        address = check_email(email)
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
        eid = check_event_id(event_id)
        body = self._call("get_event", "GET", f"/event/{eid}", eid)
        if isinstance(body, dict) and not any(str(key).lower() == "eventid" for key in body):
            body = {**body, "eventid": eid}
        return parse(On24Event, body, f"ON24 get_event (event {eid})")

    def iter_attendee_pages(
        self,
        event_id: int | str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        page_size: int = MAX_PAGE_SIZE,
        first_page: int = 0,
        date_filter_mode: str | None = None,
    ) -> Iterator[tuple[int, list[dict[str, Any]], str]]:
        """Pages as ``(page index, the attendee objects as ON24 sent them, their fingerprint)``; ``date_filter_mode``
        is sent as ``dateFilterMode`` with the dates (None: ON24's default). The fingerprint (of the attendee
        objects, not of paging fields) lets a pull skip a page whose attendees are as when it last wrote them."""
        if isinstance(first_page, bool) or first_page < 0:
            raise ValueError("first_page must be 0 or more")
        eid, params = attendee_query(event_id, start, end, page_size, date_filter_mode)
        return self._pages("attendee", eid, params, page_size, first_page)

    def iter_registrant_pages(
        self, event_id: int | str, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[list[dict[str, Any]]]:
        """The event's active registrants (``GET /event/{id}/registrant``), page by page, paced by the same
        limiter as the attendee list (ON24 counts both lists against one 100/minute limit)."""
        eid, params = attendee_query(event_id, None, None, page_size, None)
        return (rows for _, rows, _ in self._pages("registrant", eid, params, page_size, 0))

    def _pages(
        self, kind: str, eid: str, params: dict[str, str], page_size: int, first_page: int
    ) -> Iterator[tuple[int, list[dict[str, Any]], str]]:
        what = f"ON24 list_{kind}s (event {eid})"
        offset = first_page
        base: int | None = None  # 0 or 1: how this server counts currentpage
        previous: tuple[tuple[Any, Any], ...] | None = None
        while True:
            query = {**params, "pageOffset": str(offset), "itemsPerPage": str(page_size)}
            body = self._call(
                f"list_{kind}s", "GET", f"/event/{eid}/{kind}", eid,
                params=query, limiter=self._attendee_limiter, page=offset,
            )  # fmt: skip
            if not isinstance(body, dict):
                raise TransientError(f"{what}: page {offset} is not a JSON object")
            top = {str(key).lower(): value for key, value in body.items()}
            rows = top.get(f"{kind}s")
            if not isinstance(rows, list) or not rows:
                return
            signature = tuple((row.get("eventuserid"), row.get("email")) if isinstance(row, dict) else (None, None)
                              for row in rows)  # fmt: skip
            if signature == previous:
                _log.warning("%s: page %d repeats the previous page; ON24 ignored paging, stopping", what, offset)
                return
            previous = signature
            objects = [row for row in rows if isinstance(row, dict)]
            yield offset, objects, fingerprint(objects)
            pagecount = lenient_int(top.get("pagecount"))
            if pagecount is None:
                return  # unpaged answer: the whole list came at once
            current = lenient_int(top.get("currentpage"))
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
        done_when: Tolerance | None = None,
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
            return interpret(what, response, done_when)

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
