"""Dataverse Web API client (httpx + azure-identity tokens) and the event-management reads and writes built on it.

This module owns every HTTP exchange with Dataverse: the OData headers, the bearer token (cached, refreshed once
on a 401), paging, ``$batch`` and the translation of httpx errors and HTTP statuses into ``shared.errors``
(``raise ... from``). Nothing above it sees httpx. Transient faults (429, 5xx, timeouts, connection errors) are
retried within ``RetryPolicy``'s budget, honouring ``Retry-After``; then the last ``TransientError`` is raised.

Contract: ``../shared/reference/dataverse-api.md``. Where that reference is uncertain the code is tolerant and says so
in a comment (marked "Uncertain").

Log lines: one INFO line per HTTP exchange (method, entity set, row id or row count, status, duration). Tokens,
headers and bodies are never logged; error messages carry the set, the id, the status and Dataverse's own error
code and message (which never hold secrets), truncated to ``MAX_ERROR_TEXT`` characters.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError
from pydantic import BaseModel, ConfigDict

from shared.errors import (
    ConfigError,
    IntegrationError,
    InvalidDataError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from shared.retry import RetryPolicy, call_with_retry
from shared.settings import DATAVERSE_HOST_SUFFIXES, is_dataverse_host

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

# ---- constants ----------------------------------------------------------------------------------------------------

API_PATH: Final = "/api/data/v9.2/"
"""Web API path below the org URL."""

DEFAULT_TIMEOUT: Final = 15.0
"""Seconds for connect/read/write of one HTTP exchange."""

DEFAULT_RETRY_POLICY: Final = RetryPolicy(budget=20.0)
"""Retry transient faults for up to ~20 s, then raise so the platform retries later."""

TOKEN_REFRESH_MARGIN: Final = 120.0
"""A cached token is replaced this many seconds before it expires."""

MAX_BATCH_OPERATIONS: Final = 1000
"""Largest number of operations in one ``$batch`` request."""

MAX_ERROR_TEXT: Final = 300
"""Dataverse error messages are truncated to this many characters in our exceptions."""

# msevtmgt_eventregistration.msevtmgt_syncedwithprovider
SYNCED_WITH_PROVIDER_NO: Final = 100000001
SYNCED_WITH_PROVIDER_YES: Final = 100000002

# msevtmgt_eventregistration.msevtmgt_publishingstate
PUBLISHING_STATE_PUBLISHED: Final = 100000001
PUBLISHING_STATE_WEBINAR_PROVIDER_ERROR: Final = 100000004
PUBLISHING_STATES: Final = frozenset(range(100000000, 100000005))

# msevtmgt_checkin.msevtmgt_checkintype
CHECKIN_TYPE_EVENT: Final = 100000001

STATECODE_ACTIVE: Final = 0

_GUID_RE: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_QUERY_SAFE: Final = "$',()=/:@*;"
_BOUNDARY_RE: Final = re.compile(r'boundary="?([^";,\s]+)"?', re.IGNORECASE)
_TRANSIENT_STATUSES: Final = frozenset({408, 500, 502, 503, 504})
_OWN_IDENTITY_401: Final = (
    "Dataverse rejected the app's token for {what} (HTTP 401): is the application user missing or disabled in this org?"
)
_OWN_IDENTITY_403: Final = (
    "Dataverse refused {what} ({detail}): the app's application user lacks a privilege; check its security role"
)
_REFUSED: Final = "Dataverse refused {what} ({detail})"
_FAILED: Final = "Dataverse {what} failed ({detail})"
STATUS_ERRORS: Final[Mapping[int, tuple[type[IntegrationError], str]]] = {
    400: (InvalidDataError, _REFUSED),
    401: (ConfigError, _OWN_IDENTITY_401),  # our own identity refused: configuration, retried and alerted
    403: (ConfigError, _OWN_IDENTITY_403),  # ... never a permanent failure of someone's registration
    404: (NotFoundError, "Dataverse row {target} not found ({detail})"),
    408: (TransientError, _FAILED),
    409: (InvalidDataError, _REFUSED),
    412: (InvalidDataError, _REFUSED),
    413: (InvalidDataError, _REFUSED),
    422: (InvalidDataError, _REFUSED),
    429: (ThrottledError, "Dataverse throttled {what} ({detail})"),
    500: (TransientError, _FAILED),
    501: (PermanentError, _FAILED),
    502: (TransientError, _FAILED),
    503: (TransientError, _FAILED),
    504: (TransientError, _FAILED),
}
"""Every status Dataverse answers, mapped in one place to the error class callers act on (other 5xx: transient,
other 4xx: permanent). ``$batch`` parts use the same table for the rows Dataverse refused."""


# ---- models -------------------------------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Contact(_Frozen):
    """A CRM contact as the ON24 registration needs it.

    Attributes:
        id: contactid (lower-case GUID).
        email: emailaddress1.
        first_name: firstname.
        last_name: lastname.
        job_title: jobtitle.
        country: address1_country.
        company: the *name* of the parent account (``parentcustomerid`` when it points to an account), or None.
            Never ``contact.company``: that column is the company's phone number.
    """

    id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    job_title: str | None = None
    country: str | None = None
    company: str | None = None


class CrmEvent(_Frozen):
    """An event-management event (``msevtmgt_event``).

    Attributes:
        id: msevtmgt_eventid.
        webinar_id: msevtmgt_webinarid, stripped; None when null or blank (then it is not a webinar).
    """

    id: str
    webinar_id: str | None = None


class CrmRegistration(_Frozen):
    """An event registration (``msevtmgt_eventregistration``).

    Attributes:
        id: msevtmgt_eventregistrationid.
        event_id: ``_msevtmgt_eventid_value``.
        contact_id: ``_msevtmgt_contactid_value``.
        is_canceled: msevtmgt_iscanceled (null reads as False).
        statecode: 0 active, 1 inactive.
        webinar_registration_id: msevtmgt_webinarregistrationid (the ON24 registrant id), None when blank.
    """

    id: str
    event_id: str | None = None
    contact_id: str | None = None
    is_canceled: bool = False
    statecode: int | None = None
    webinar_registration_id: str | None = None

    @property
    def is_active(self) -> bool:
        """Active (statecode 0 or unknown) and not cancelled."""
        return not self.is_canceled and self.statecode in (None, STATECODE_ACTIVE)


@dataclass(frozen=True)
class BatchResult:
    """Outcome of ``batch_upsert``.

    Attributes:
        succeeded: ids written, in input order.
        failed: id -> reason (status, Dataverse error code and message) for rows Dataverse refused.
        requests: ``$batch`` HTTP requests sent, retries included.
    """

    succeeded: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)
    requests: int = 0

    @property
    def ok(self) -> bool:
        """True when no row failed."""
        return not self.failed


@dataclass(frozen=True)
class _Part:
    """One response inside a ``$batch`` response."""

    status: int
    headers: dict[str, str]
    body: bytes


# ---- client -------------------------------------------------------------------------------------------------------


class DataverseClient:
    """Dataverse Web API client for one org.

    Thread-safe: ``batch_upsert`` runs batches on worker threads that share the HTTP pool and the token cache.

    Args:
        url: org URL, e.g. ``https://contoso.crm.dynamics.com``; the API base is ``{url}/api/data/v9.2/``.
        credential: azure-identity credential; the token is requested for ``{url}/.default``, and only when ``url``
            is the https origin of an allowlisted Dataverse host (``shared.settings.dataverse_origin``). ``None``
            sends no Authorization header: only for the loopback sandbox (``DATAVERSE_AUTH=none``).
        timeout: seconds per HTTP exchange.
        transport: httpx transport (tests); ignored when ``http_client`` is given.
        retry: budget and backoff for transient faults.
        http_client: a shared ``httpx.Client``; the caller owns it and ``close()`` leaves it open.

    Raises:
        ValueError: ``url`` is not an absolute http(s) URL without query; a credential with a host outside the
            allowlist; or both transport and http_client given.
    """

    def __init__(
        self,
        url: str,
        credential: TokenCredential | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        http_client: httpx.Client | None = None,
    ) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("url must be the org URL, e.g. https://contoso.crm.dynamics.com")
        if transport is not None and http_client is not None:
            raise ValueError("pass either transport or http_client, not both")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if credential is not None and not is_dataverse_host(url.strip()):
            raise ValueError(
                f"refusing to request a token for {parts.hostname!r}: tokens of the app's identity go only to "
                f"Dataverse hosts on the allowlist (*.{', *.'.join(DATAVERSE_HOST_SUFFIXES)})"
            )
        self._url = url.strip().rstrip("/")
        self._api = self._url + API_PATH
        self._api_path = (parts.path.rstrip("/") or "") + API_PATH
        self._scope = f"{self._url}/.default"
        self._credential = credential
        self._timeout = timeout
        self._retry = retry
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(transport=transport, timeout=timeout, follow_redirects=False)
        self._token: AccessToken | None = None
        self._token_lock = threading.Lock()

    @property
    def url(self) -> str:
        """The org URL, without a trailing slash."""
        return self._url

    # ---- lifecycle ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP pool unless it was passed in."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DataverseClient({self._url!r})"

    # ---- generic operations -------------------------------------------------------------------------------------

    def get_row(
        self, entity_set: str, row_id: str, *, select: Sequence[str], expand: str | None = None
    ) -> dict[str, Any]:
        """Read one row by primary key.

        Args:
            entity_set: e.g. ``contacts``.
            row_id: the row's GUID.
            select: columns to return (lookups as ``_<col>_value``).
            expand: an ``$expand`` clause, e.g. ``parentcustomerid_account($select=name)``.

        Returns:
            The row as Dataverse returns it (``@odata`` annotations included).

        Raises:
            ValueError: malformed entity set, GUID or column name (before any I/O).
            NotFoundError: no such row (or no such table).
            InvalidDataError: Dataverse refused the query (e.g. an unknown column).
            ConfigError: the app's own identity refused (401 after a token refresh, 403, a refused token request).
            TransientError: throttling, 5xx, timeouts, connection errors, after the retry budget.
        """
        _check_set(entity_set)
        rid = _check_guid(row_id)
        params = [("$select", _select_clause(select))]
        if expand:
            params.append(("$expand", _check_expand(expand)))
        url = f"{self._api}{entity_set}({rid}){_query_string(params)}"
        return self._exchange(
            "GET", url, entity_set=entity_set, row_id=rid, headers=_READ_HEADERS, decode=_decode_object
        )

    def update_row(self, entity_set: str, row_id: str, fields: Mapping[str, Any], *, must_exist: bool = True) -> None:
        """Update columns of one row (PATCH); with ``must_exist`` (default) it never creates a row.

        Args:
            entity_set: e.g. ``msevtmgt_eventregistrations``.
            row_id: the row's GUID.
            fields: columns to write; lookups as ``"<Nav>@odata.bind": "/<set>(<guid>)"``; aware datetimes allowed.
            must_exist: send ``If-Match: *`` so a missing row is a 404 instead of an insert.

        Raises:
            ValueError: malformed arguments or a naive datetime (before any I/O).
            NotFoundError: the row does not exist (must_exist).
            InvalidDataError: Dataverse refused the data (400/412), with its error code and message.
            ConfigError: the app's own identity refused (401 after a token refresh, 403, a refused token request).
            TransientError: as for ``get_row``.
        """
        _check_set(entity_set)
        rid = _check_guid(row_id)
        body = _dumps(fields)
        headers = {**_WRITE_HEADERS, "If-Match": "*"} if must_exist else _WRITE_HEADERS
        self._exchange(
            "PATCH",
            f"{self._api}{entity_set}({rid})",
            entity_set=entity_set,
            row_id=rid,
            headers=headers,
            content=body,
            decode=_ignore_body,
        )

    def batch_upsert(
        self,
        entity_set: str,
        rows: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        batch_size: int = MAX_BATCH_OPERATIONS,
        max_parallel: int = 4,
    ) -> BatchResult:
        """Upsert many rows by id with ``$batch`` requests of up to ``batch_size`` PATCH operations.

        Each PATCH is its own part (no change set: rows succeed or fail independently) and the request carries
        ``Prefer: odata.continue-on-error``. Up to ``max_parallel`` batches are in flight at once. A throttled or
        failed batch (429 + Retry-After, 5xx, connection error) is resent within the retry budget; rows that came
        back 429/5xx inside an otherwise answered batch are resent on their own. Rows Dataverse refused (4xx) are
        reported in ``BatchResult.failed``; they do not stop the other rows.

        Args:
            entity_set: e.g. ``msevtmgt_checkins``.
            rows: (GUID, fields) pairs; ids must be unique.
            batch_size: operations per ``$batch`` request, 1..1000.
            max_parallel: ``$batch`` requests in flight at once (keep it small: service protection limits).

        Returns:
            Which ids succeeded and which failed why, and how many requests were sent.

        Raises:
            ValueError: malformed arguments, duplicate ids, naive datetimes (before any I/O).
            TransientError: a batch stayed throttled/failing beyond the retry budget (upserts are idempotent, so a
                later rerun is safe); batches not yet started are cancelled.
            InvalidDataError: a whole batch was refused (400 for the request as a whole).
            ConfigError: the app's own identity refused (401 after refresh, 403).
        """
        _check_set(entity_set)
        if not 1 <= batch_size <= MAX_BATCH_OPERATIONS:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_OPERATIONS}")
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        prepared: list[tuple[str, bytes]] = []
        seen: set[str] = set()
        for row_id, fields in rows:
            rid = _check_guid(row_id)
            if rid in seen:
                raise ValueError(f"duplicate row id {rid} in batch_upsert")
            seen.add(rid)
            prepared.append((rid, _dumps(fields)))
        chunks = [prepared[i : i + batch_size] for i in range(0, len(prepared), batch_size)]
        if not chunks:
            return BatchResult()
        if len(chunks) == 1 or max_parallel == 1:
            outcomes = [self._run_batch(entity_set, chunk) for chunk in chunks]
        else:
            outcomes = self._run_parallel(entity_set, chunks, max_parallel)
        succeeded: list[str] = []
        failed: dict[str, str] = {}
        requests = 0
        for ok_ids, bad, sent in outcomes:
            succeeded.extend(ok_ids)
            failed.update(bad)
            requests += sent
        return BatchResult(tuple(succeeded), failed, requests)

    # ---- event-management helpers -------------------------------------------------------------------------------

    def get_contact(self, contact_id: str) -> Contact:
        """Read the contact fields an ON24 registrant needs.

        The company name comes from the parent account
        (``$expand=parentcustomerid_account($select=name)``); when the parent is a contact or unset, ``company`` is
        None. ``contact.company`` is deliberately not read: despite its name it holds the company's phone number.

        Args:
            contact_id: contactid GUID.

        Returns:
            The contact.

        Raises:
            NotFoundError: no such contact.
            ValueError, InvalidDataError, PermanentError, TransientError: as for ``get_row``.
        """
        row = self.get_row(
            "contacts",
            contact_id,
            select=["contactid", "emailaddress1", "firstname", "lastname", "jobtitle", "address1_country"],
            expand="parentcustomerid_account($select=name)",
        )
        account = row.get("parentcustomerid_account")
        company = _text(account.get("name")) if isinstance(account, dict) else None
        return Contact(
            id=_guid_or(row.get("contactid"), contact_id),
            email=_text(row.get("emailaddress1")),
            first_name=_text(row.get("firstname")),
            last_name=_text(row.get("lastname")),
            job_title=_text(row.get("jobtitle")),
            country=_text(row.get("address1_country")),
            company=company,
        )

    def get_event(self, event_id: str) -> CrmEvent:
        """Read an event; ``webinar_id`` None means it is not an ON24 webinar.

        Args:
            event_id: msevtmgt_eventid GUID.

        Returns:
            The event.

        Raises:
            NotFoundError: no such event.
            ValueError, InvalidDataError, PermanentError, TransientError: as for ``get_row``.
        """
        row = self.get_row("msevtmgt_events", event_id, select=["msevtmgt_eventid", "msevtmgt_webinarid"])
        webinar_id = _text(row.get("msevtmgt_webinarid"))
        return CrmEvent(id=_guid_or(row.get("msevtmgt_eventid"), event_id), webinar_id=webinar_id)

    def get_registration(self, registration_id: str) -> CrmRegistration:
        """Read an event registration.

        Args:
            registration_id: msevtmgt_eventregistrationid GUID.

        Returns:
            The registration.

        Raises:
            NotFoundError: no such registration.
            ValueError, InvalidDataError, PermanentError, TransientError: as for ``get_row``.
        """
        row = self.get_row(
            "msevtmgt_eventregistrations",
            registration_id,
            select=[
                "msevtmgt_eventregistrationid",
                "_msevtmgt_eventid_value",
                "_msevtmgt_contactid_value",
                "msevtmgt_iscanceled",
                "statecode",
                "msevtmgt_webinarregistrationid",
            ],
        )
        return CrmRegistration(
            id=_guid_or(row.get("msevtmgt_eventregistrationid"), registration_id),
            event_id=_guid(row.get("_msevtmgt_eventid_value")),
            contact_id=_guid(row.get("_msevtmgt_contactid_value")),
            is_canceled=row.get("msevtmgt_iscanceled") is True,
            statecode=_int(row.get("statecode")),
            webinar_registration_id=_text(row.get("msevtmgt_webinarregistrationid")),
        )

    def update_registration_sync(
        self,
        registration_id: str,
        *,
        webinar_registration_id: str | None,
        synced: bool,
        publishing_state: int | None,
    ) -> None:
        """Record the ON24 outcome on a registration (update only: never creates a registration).

        Uncertain (reference §5): storing the ON24 registrant id in ``msevtmgt_webinarregistrationid`` and setting
        ``msevtmgt_syncedwithprovider`` is inferred from the column names, not documented.

        Args:
            registration_id: msevtmgt_eventregistrationid GUID.
            webinar_registration_id: the ON24 registrant id; None clears the column.
            synced: written as ``SYNCED_WITH_PROVIDER_YES`` / ``SYNCED_WITH_PROVIDER_NO``.
            publishing_state: a ``PUBLISHING_STATE_*`` value, or None to leave the column unchanged.

        Raises:
            ValueError: unknown publishing state or malformed id (before any I/O).
            NotFoundError: the registration does not exist.
            InvalidDataError, PermanentError, TransientError: as for ``update_row``.
        """
        if publishing_state is not None and publishing_state not in PUBLISHING_STATES:
            raise ValueError(f"unknown msevtmgt_publishingstate {publishing_state}")
        if webinar_registration_id is not None and len(webinar_registration_id) > 100:
            raise ValueError("webinar_registration_id is longer than the column's 100 characters")
        fields: dict[str, Any] = {
            "msevtmgt_webinarregistrationid": webinar_registration_id,
            "msevtmgt_syncedwithprovider": SYNCED_WITH_PROVIDER_YES if synced else SYNCED_WITH_PROVIDER_NO,
        }
        if publishing_state is not None:
            fields["msevtmgt_publishingstate"] = publishing_state
        self.update_row("msevtmgt_eventregistrations", registration_id, fields, must_exist=True)

    # ---- plumbing -----------------------------------------------------------------------------------------------

    def _run_parallel(
        self, entity_set: str, chunks: list[list[tuple[str, bytes]]], max_parallel: int
    ) -> list[tuple[list[str], dict[str, str], int]]:
        workers = min(max_parallel, len(chunks))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dataverse-batch")
        try:
            futures: list[Future[tuple[list[str], dict[str, str], int]]] = [
                pool.submit(self._run_batch, entity_set, chunk) for chunk in chunks
            ]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                error = future.exception() if future in done else None
                if error is not None:
                    for other in futures:
                        other.cancel()
                    raise error
            return [future.result() for future in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _run_batch(self, entity_set: str, chunk: list[tuple[str, bytes]]) -> tuple[list[str], dict[str, str], int]:
        """Send one chunk as ``$batch``, resending throttled rows within the budget."""
        pending = chunk
        succeeded: list[str] = []
        failed: dict[str, str] = {}
        sent = 0
        what = f"POST $batch {entity_set} ({len(chunk)} rows)"

        def attempt() -> None:
            nonlocal pending, sent
            boundary = f"batch_{uuid.uuid4()}"
            sent += 1
            response = self._send(
                "POST",
                self._api + "$batch",
                entity_set=entity_set,
                row_id=f"{len(pending)} rows",
                headers={
                    **_BASE_HEADERS,
                    "Content-Type": f"multipart/mixed; boundary={boundary}",
                    "Prefer": "odata.continue-on-error",
                },
                content=self._batch_body(boundary, entity_set, pending),
            )
            _raise_for_status(response, what, entity_set=entity_set, row_id=None)
            parts = _parse_batch_response(response, what)
            retry_rows: list[tuple[str, bytes]] = []
            throttled = False
            retry_after: float | None = None
            for index, row in enumerate(pending):
                # Responses of a batch without change sets come back in request order (Content-ID is only for
                # change-set members). Uncertain: a batch that stopped early answers fewer parts; the rows
                # without an answer were not processed and are resent (upserts are idempotent).
                part = parts[index] if index < len(parts) else None
                if part is None:
                    retry_rows.append(row)
                elif 200 <= part.status < 300:
                    succeeded.append(row[0])
                elif part.status == 429 or part.status in _TRANSIENT_STATUSES:
                    retry_rows.append(row)
                    if part.status == 429:
                        throttled = True
                        retry_after = _parse_retry_after(part.headers.get("retry-after")) or retry_after
                else:
                    failed[row[0]] = _part_reason(part)
            if len(parts) > len(pending):
                _log.warning("Dataverse %s: %d response parts for %d operations", what, len(parts), len(pending))
            if retry_rows:
                pending = retry_rows
                message = f"Dataverse {what}: {len(retry_rows)} operations were not applied"
                if throttled:
                    raise ThrottledError(message + " (throttled)", retry_after=retry_after)
                raise TransientError(message)

        call_with_retry(attempt, policy=self._retry, what=f"Dataverse {what}")
        return succeeded, failed, sent

    def _batch_body(self, boundary: str, entity_set: str, rows: list[tuple[str, bytes]]) -> bytes:
        head = (
            f"--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            f"PATCH {self._api_path}{entity_set}("
        ).encode("ascii")
        tail = b") HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n"
        chunks: list[bytes] = []
        for row_id, payload in rows:
            chunks += (head, row_id.encode("ascii"), tail, payload, b"\r\n")
        chunks.append(f"--{boundary}--\r\n".encode("ascii"))
        return b"".join(chunks)

    def _exchange(
        self,
        method: str,
        url: str,
        *,
        entity_set: str,
        row_id: str | None,
        headers: Mapping[str, str],
        decode: Callable[[httpx.Response, str], _T],
        content: bytes | None = None,
    ) -> _T:
        """One logical call: send (with token refresh), map the status, decode; retried within the budget."""
        what = f"{method} {entity_set}" + (f"({row_id})" if row_id else "")

        def attempt() -> _T:
            response = self._send(method, url, entity_set=entity_set, row_id=row_id, headers=headers, content=content)
            _raise_for_status(response, what, entity_set=entity_set, row_id=row_id)
            return decode(response, what)

        return call_with_retry(attempt, policy=self._retry, what=f"Dataverse {what}")

    def _send(
        self,
        method: str,
        url: str,
        *,
        entity_set: str,
        row_id: str | None,
        headers: Mapping[str, str],
        content: bytes | None,
    ) -> httpx.Response:
        """One HTTP exchange; on a 401 the token is refreshed once and the request resent. No status mapping."""
        refreshed = False
        while True:
            token = self._bearer()
            request_headers = dict(headers)
            if token is not None:
                request_headers["Authorization"] = f"Bearer {token}"
            started = time.perf_counter()
            try:
                response = self._http.request(
                    method, url, headers=request_headers, content=content, timeout=self._timeout
                )
            except httpx.TimeoutException as exc:
                self._log_call(method, entity_set, row_id, type(exc).__name__, started)
                raise TransientError(f"Dataverse {method} {entity_set}: timed out ({type(exc).__name__})") from exc
            except httpx.RequestError as exc:
                self._log_call(method, entity_set, row_id, type(exc).__name__, started)
                raise TransientError(
                    f"Dataverse {method} {entity_set}: connection failed ({type(exc).__name__})"
                ) from exc
            self._log_call(method, entity_set, row_id, response.status_code, started)
            if response.status_code == 401 and token is not None and not refreshed:
                refreshed = True
                self._invalidate(token)
                continue
            return response

    @staticmethod
    def _log_call(method: str, entity_set: str, row_id: str | None, status: int | str, started: float) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        _log.info(
            "Dataverse %s %s id=%s -> %s in %.0f ms",
            method,
            entity_set,
            row_id or "-",
            status,
            elapsed_ms,
            extra={
                "dataverse_entity_set": entity_set,
                "dataverse_id": row_id,
                "http_status": status,
                "duration_ms": round(elapsed_ms, 1),
            },
        )

    def _bearer(self) -> str | None:
        """The cached token, fetched again when missing or within ``TOKEN_REFRESH_MARGIN`` of expiry."""
        if self._credential is None:
            return None
        with self._token_lock:
            token = self._token
            if token is None or token.expires_on - TOKEN_REFRESH_MARGIN <= time.time():
                token = self._fetch_token(self._credential)
                self._token = token
            return token.token

    def _invalidate(self, rejected: str) -> None:
        # Only drop the cache if it still holds the rejected token: parallel batches that all met the same 401
        # then share a single refresh.
        with self._token_lock:
            if self._token is not None and self._token.token == rejected:
                self._token = None

    def _fetch_token(self, credential: TokenCredential) -> AccessToken:
        # Note: azure-identity credentials may return their own cached token on a second call; a token revoked
        # before its expiry therefore may not be replaced until the credential's cache refreshes.
        try:
            return credential.get_token(self._scope)
        except ClientAuthenticationError as exc:
            said = _truncate(str(exc).splitlines()[0] if str(exc) else "")
            raise ConfigError(
                f"could not get a Dataverse token for {self._scope} ({type(exc).__name__}"
                + (f": {said}" if said else "")
                + "): check the app's identity and that it has an application user in this org"
            ) from exc
        except AzureError as exc:
            raise TransientError(f"token request for {self._scope} failed ({type(exc).__name__})") from exc


# ---- helpers ------------------------------------------------------------------------------------------------------

_BASE_HEADERS: Final[Mapping[str, str]] = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
}
_READ_HEADERS: Final[Mapping[str, str]] = {**_BASE_HEADERS, "If-None-Match": "null"}
_WRITE_HEADERS: Final[Mapping[str, str]] = {**_BASE_HEADERS, "Content-Type": "application/json"}


def _check_set(entity_set: str) -> None:
    if not isinstance(entity_set, str) or not _NAME_RE.match(entity_set):
        raise ValueError(f"malformed entity set name {entity_set!r:.60}")


def _check_guid(value: str) -> str:
    if not isinstance(value, str) or not _GUID_RE.match(value):
        raise ValueError(f"malformed GUID {value!r:.60}")
    return value.lower()


def _select_clause(select: Sequence[str]) -> str:
    if isinstance(select, str):
        raise ValueError("select must be a sequence of column names, not a string")
    if not select:
        raise ValueError("select at least one column")
    for column in select:
        if not isinstance(column, str) or not _NAME_RE.match(column):
            raise ValueError(f"malformed column name {column!r:.60}")
    return ",".join(select)


def _check_expand(expand: str) -> str:
    if any(ch in expand for ch in "&#?\r\n"):
        raise ValueError("malformed $expand clause")
    return expand


def _query_string(params: list[tuple[str, str]]) -> str:
    # Spaces as %20 (not '+'); OData punctuation left readable.
    return "?" + "&".join(f"{name}={quote(value, safe=_QUERY_SAFE)}" for name, value in params)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware (UTC) datetime to Dataverse")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} for Dataverse")


def _dumps(fields: Mapping[str, Any]) -> bytes:
    if not isinstance(fields, Mapping):
        raise ValueError("fields must be a mapping of column names to values")
    try:
        return json.dumps(dict(fields), default=_json_default, separators=(",", ":")).encode("utf-8")
    except TypeError as exc:
        raise ValueError(str(exc)) from exc


def _decode_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError as exc:
        raise TransientError(f"Dataverse {what}: unreadable JSON response (HTTP {response.status_code})") from exc
    if not isinstance(payload, dict):
        raise TransientError(f"Dataverse {what}: expected a JSON object (HTTP {response.status_code})")
    return payload


def _ignore_body(response: httpx.Response, what: str) -> None:
    return None


def _error_detail(body: bytes) -> tuple[str, str]:
    """(code, message) from a Dataverse error body; tolerant of empty and foreign shapes."""
    try:
        payload = json.loads(body.decode("utf-8")) if body else None
    except (ValueError, UnicodeDecodeError):
        return "", ""
    if not isinstance(payload, dict):
        return "", ""
    error = payload.get("error", payload)
    if not isinstance(error, dict):
        return "", ""
    code, message = error.get("code"), error.get("message")
    return (code if isinstance(code, str) else ""), _truncate(message if isinstance(message, str) else "")


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _raise_for_status(response: httpx.Response, what: str, *, entity_set: str, row_id: str | None) -> None:
    status = response.status_code
    if status < 400:
        return
    code, message = _error_detail(response.content)
    detail = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    error_class, template = STATUS_ERRORS.get(status, (TransientError if status >= 500 else PermanentError, _FAILED))
    target = f"{entity_set}({row_id})" if row_id else entity_set
    text = template.format(what=what, detail=detail, target=target)
    if error_class is ThrottledError:
        raise ThrottledError(text, retry_after=_parse_retry_after(response.headers.get("Retry-After")))
    raise error_class(text)


def _part_reason(part: _Part) -> str:
    code, message = _error_detail(part.body)
    return f"HTTP {part.status}" + (f" {code}" if code else "") + (f": {message}" if message else "")


def _parse_batch_response(response: httpx.Response, what: str) -> list[_Part]:
    match = _BOUNDARY_RE.search(response.headers.get("Content-Type", ""))
    if match is None:
        raise TransientError(f"Dataverse {what}: the response is not multipart (HTTP {response.status_code})")
    return _parse_multipart(response.content, match.group(1))


def _split_head(blob: bytes) -> tuple[bytes, bytes]:
    """Split at the first blank line (CRLF or LF), tolerant of both."""
    crlf, lf = blob.find(b"\r\n\r\n"), blob.find(b"\n\n")
    if crlf != -1 and (lf == -1 or crlf < lf):
        return blob[:crlf], blob[crlf + 4 :]
    if lf != -1:
        return blob[:lf], blob[lf + 2 :]
    return blob, b""


def _parse_headers(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _parse_multipart(body: bytes, boundary: str) -> list[_Part]:
    """Parse a ``batchresponse``/``changesetresponse`` body into its embedded HTTP responses, in order."""
    delimiter = b"\n--" + boundary.encode("latin-1")
    segments = (b"\r\n" + body).split(delimiter)
    parts: list[_Part] = []
    for segment in segments[1:]:
        if segment.startswith(b"--"):
            break
        segment = segment.removesuffix(b"\r")
        head, rest = _split_head(segment.lstrip(b"\r\n \t"))
        mime = _parse_headers(head.splitlines())
        content_type = mime.get("content-type", "")
        if content_type.lower().startswith("multipart/"):
            inner = _BOUNDARY_RE.search(content_type)
            if inner is not None:
                parts.extend(_parse_multipart(rest, inner.group(1)))
            continue
        status_head, payload = _split_head(rest)
        lines = status_head.splitlines()
        if not lines:
            continue
        fields = lines[0].split()
        status = int(fields[1]) if len(fields) >= 2 and fields[1].isdigit() else 0
        parts.append(_Part(status, _parse_headers(lines[1:]), payload.strip()))
    return parts


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _guid(value: object) -> str | None:
    return value.lower() if isinstance(value, str) and _GUID_RE.match(value) else None


def _guid_or(value: object, fallback: str) -> str:
    return _guid(value) or fallback.lower()


__all__ = [
    "API_PATH",
    "CHECKIN_TYPE_EVENT",
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_TIMEOUT",
    "MAX_BATCH_OPERATIONS",
    "PUBLISHING_STATES",
    "PUBLISHING_STATE_PUBLISHED",
    "PUBLISHING_STATE_WEBINAR_PROVIDER_ERROR",
    "STATECODE_ACTIVE",
    "SYNCED_WITH_PROVIDER_NO",
    "SYNCED_WITH_PROVIDER_YES",
    "BatchResult",
    "Contact",
    "CrmEvent",
    "CrmRegistration",
    "DataverseClient",
]
