"""Dataverse Web API client on httpx with azure-identity tokens: the OData transport.

This module owns every HTTP exchange with Dataverse: the OData headers, the bearer token (cached, refreshed once
on a 401), retries and the translation of httpx errors and HTTP statuses into ``shared.errors`` (``raise ... from``;
the status table is ``_errors.STATUS_ERRORS``). Nothing above it sees httpx. Transient faults (429, 5xx, timeouts,
connection errors) are retried within ``RetryPolicy``'s budget, honouring ``Retry-After``; then the last
``TransientError`` is raised. What the rows mean (``msevtmgt_*``) is ``shared.crm``'s business.

Contract: ``../shared/reference/dataverse-api.md``; where uncertain the code is tolerant and says so ("Uncertain").
Log lines: one INFO line per HTTP exchange (method, entity set, row id or count, status, duration); never tokens.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import httpx
from azure.core.credentials import TokenCredential

from shared.dataverse._batch import BatchResult, Row, request_body, response_parts, sort_parts
from shared.dataverse._errors import raise_for_status
from shared.dataverse._odata import (
    ATTRIBUTES_QUERY,
    BASE_HEADERS,
    READ_HEADERS,
    WRITE_HEADERS,
    check_expand,
    check_guid,
    check_logical_name,
    check_set,
    decode_object,
    dumps,
    ignore_body,
    query_string,
    select_clause,
)
from shared.dataverse._token import TokenCache
from shared.dataverse_hosts import DATAVERSE_HOST_SUFFIXES, is_dataverse_host
from shared.errors import PermanentError, ThrottledError, TransientError
from shared.http import HttpClientBase
from shared.retry import RetryPolicy, call_with_retry

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

API_PATH: Final = "/api/data/v9.2/"
"""Web API path below the org URL."""
DEFAULT_TIMEOUT: Final = 15.0
"""Seconds for connect/read/write of one HTTP exchange."""

DEFAULT_RETRY_POLICY: Final = RetryPolicy(budget=20.0)
"""Retry transient faults for up to ~20 s, then raise so the platform retries later."""

MAX_BATCH_OPERATIONS: Final = 1000
"""Largest number of operations in one ``$batch`` request."""


class DataverseClient(HttpClientBase):
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
        self._tokens = None if credential is None else TokenCache(credential, f"{self._url}/.default")
        self._timeout = timeout
        self._retry = retry
        super().__init__(timeout=timeout, transport=transport, http_client=http_client)

    @property
    def url(self) -> str:
        """The org URL, without a trailing slash."""
        return self._url

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
        check_set(entity_set)
        rid = check_guid(row_id)
        params = [("$select", select_clause(select))]
        if expand:
            params.append(("$expand", check_expand(expand)))
        url = f"{self._api}{entity_set}({rid}){query_string(params)}"
        return self.exchange("GET", url, entity_set=entity_set, row_id=rid, headers=READ_HEADERS, decode=decode_object)

    def who_am_i(self) -> str:
        """The ``OrganizationId`` behind this URL as the app's identity sees it (the ``WhoAmI`` function).

        Raises:
            ConfigError: the app's identity was refused; TransientError: as ``get_row``; PermanentError: no id.
        """
        answer = self.exchange("GET", self._api + "WhoAmI", entity_set="WhoAmI", row_id=None,
                                headers=READ_HEADERS, decode=decode_object)  # fmt: skip
        if not isinstance(answer.get("OrganizationId"), str):
            raise PermanentError(f"Dataverse WhoAmI at {self._url} answered without an OrganizationId")
        return str(answer["OrganizationId"])

    def attributes(self, logical_name: str) -> list[dict[str, Any]]:
        """A table's column metadata (``EntityDefinitions(LogicalName='…')/Attributes``); raises as ``get_row``."""
        url = f"{self._api}EntityDefinitions(LogicalName='{check_logical_name(logical_name)}')/Attributes"
        answer = self.exchange("GET", url + ATTRIBUTES_QUERY, entity_set="EntityDefinitions", row_id=logical_name,
                                headers=READ_HEADERS, decode=decode_object)  # fmt: skip
        return [value for value in answer.get("value") or () if isinstance(value, dict)]

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
        check_set(entity_set)
        rid = check_guid(row_id)
        body = dumps(fields)
        headers = {**WRITE_HEADERS, "If-Match": "*"} if must_exist else WRITE_HEADERS
        self.exchange(
            "PATCH",
            f"{self._api}{entity_set}({rid})",
            entity_set=entity_set,
            row_id=rid,
            headers=headers,
            content=body,
            decode=ignore_body,
        )

    def batch_upsert(
        self,
        entity_set: str,
        rows: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        batch_size: int = MAX_BATCH_OPERATIONS,
        max_parallel: int = 4,
        must_exist: bool = False,
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
            must_exist: update only (``If-Match: *`` per part): a missing row fails, it is never created.

        Returns:
            Which ids succeeded and which failed why, and how many requests were sent.

        Raises:
            ValueError: malformed arguments, duplicate ids, naive datetimes (before any I/O).
            TransientError: a batch stayed throttled/failing beyond the retry budget (upserts are idempotent, so a
                later rerun is safe); batches not yet started are cancelled.
            InvalidDataError: a whole batch was refused (400 for the request as a whole).
            ConfigError: the app's own identity refused (401 after refresh, 403).
        """
        check_set(entity_set)
        if not 1 <= batch_size <= MAX_BATCH_OPERATIONS:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_OPERATIONS}")
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        prepared: list[Row] = []
        seen: set[str] = set()
        for row_id, fields in rows:
            rid = check_guid(row_id)
            if rid in seen:
                raise ValueError(f"duplicate row id {rid} in batch_upsert")
            seen.add(rid)
            prepared.append((rid, dumps(fields)))
        chunks = [prepared[i : i + batch_size] for i in range(0, len(prepared), batch_size)]
        if not chunks:
            return BatchResult()
        if len(chunks) == 1 or max_parallel == 1:
            outcomes = [self._run_batch(entity_set, chunk, must_exist) for chunk in chunks]
        else:
            outcomes = self._run_parallel(entity_set, chunks, max_parallel, must_exist)
        succeeded: list[str] = []
        failed: dict[str, str] = {}
        requests = 0
        for ok_ids, bad, sent in outcomes:
            succeeded.extend(ok_ids)
            failed.update(bad)
            requests += sent
        return BatchResult(tuple(succeeded), failed, requests)

    # ---- plumbing -----------------------------------------------------------------------------------------------

    def _run_parallel(
        self, entity_set: str, chunks: list[list[Row]], max_parallel: int, must_exist: bool = False
    ) -> list[tuple[list[str], dict[str, str], int]]:
        workers = min(max_parallel, len(chunks))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dataverse-batch")
        try:
            futures: list[Future[tuple[list[str], dict[str, str], int]]] = [
                pool.submit(self._run_batch, entity_set, chunk, must_exist) for chunk in chunks
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

    def _run_batch(self, entity_set: str, chunk: list[Row], must_exist: bool) -> tuple[list[str], dict[str, str], int]:
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
                    **BASE_HEADERS,
                    "Content-Type": f"multipart/mixed; boundary={boundary}",
                    "Prefer": "odata.continue-on-error",
                },
                content=request_body(self._api_path, boundary, entity_set, pending, must_exist=must_exist),
            )
            raise_for_status(response, what, entity_set=entity_set, row_id=None)
            outcome = sort_parts(pending, response_parts(response, what), what)
            succeeded.extend(outcome.succeeded)
            failed.update(outcome.failed)
            if outcome.retry:
                pending = outcome.retry
                message = f"Dataverse {what}: {len(outcome.retry)} operations were not applied"
                if outcome.throttled:
                    raise ThrottledError(message + " (throttled)", retry_after=outcome.retry_after)
                raise TransientError(message)

        call_with_retry(attempt, policy=self._retry, what=f"Dataverse {what}")
        return succeeded, failed, sent

    def exchange(
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
            raise_for_status(response, what, entity_set=entity_set, row_id=row_id)
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
            token = self._tokens.bearer() if self._tokens is not None else None
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
                assert self._tokens is not None
                self._tokens.invalidate(token)
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
