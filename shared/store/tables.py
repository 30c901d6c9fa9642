"""Connecting to Table Storage and translating its SDK errors at the edge."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableEntity, TableServiceClient, TableTransactionError, UpdateMode

from shared.errors import ConfigError, IntegrationError, NotFoundError, PermanentError, ThrottledError, TransientError
from shared.store.transport import HttpClientTransport

_log = logging.getLogger(__name__)

TABLE_SUFFIXES = ("orgs", "ledger", "syncstate")
TRANSACTION_SIZE = 100  # Table Storage's limit of operations in one entity group transaction


class StoreError(IntegrationError):
    """Marks an error raised by the state store (Table Storage); each concrete class also has its usual base."""


class StoreUnavailableError(StoreError, TransientError):
    """Table Storage could not be reached, timed out, failed (5xx) or a write lost a race: retry later."""


class StoreThrottledError(StoreError, ThrottledError):
    """Table Storage asked us to slow down (ServerBusy)."""


class StoreAccessError(StoreError, ConfigError):
    """Table Storage refused the app's identity (401/403): configuration, not data."""


class StoreRequestError(StoreError, PermanentError):
    """Table Storage refused what we sent (400, 413, ...): retrying the same write cannot help."""


class StoreNotFoundError(StoreError, NotFoundError):
    """A row or table the caller expected is missing, and the caller did not handle it as an outcome."""


@contextmanager
def table_errors(what: str) -> Iterator[None]:
    """Map every azure-core error raised inside the block onto the integration's error tree; none escapes.

    Callers that treat ``ResourceNotFoundError`` / ``ResourceExistsError`` / ``ResourceModifiedError`` as outcomes
    (missing row, lost race) catch them *inside* the block; one that reaches this boundary is translated like the
    rest: not found -> ``StoreNotFoundError``, exists / modified -> ``StoreUnavailableError`` (re-read and retry).

    Raises:
        StoreAccessError: the app's identity was refused (a ``ConfigError``).
        StoreThrottledError, StoreUnavailableError: busy, unreachable, 408/429/5xx, lost race (``TransientError``).
        StoreRequestError: Table Storage refused the request as invalid (``PermanentError``).
        StoreNotFoundError: a missing row or table nobody handled (``NotFoundError``).
    """
    try:
        yield
    except ResourceNotFoundError as exc:
        raise StoreNotFoundError(f"Table Storage found no such row or table while {what}") from exc
    except (ResourceExistsError, ResourceModifiedError) as exc:
        raise StoreUnavailableError(f"Table Storage row changed concurrently while {what}; retry") from exc
    except ClientAuthenticationError as exc:
        raise StoreAccessError(f"Table Storage rejected the app's identity while {what}") from exc
    except HttpResponseError as exc:
        raise _http_error(exc, what) from exc
    except AzureError as exc:  # ServiceRequestError, ServiceResponseError, DecodeError, ...
        raise StoreUnavailableError(f"Table Storage unreachable while {what}: {type(exc).__name__}") from exc


def _http_error(exc: HttpResponseError, what: str) -> StoreError:
    status = exc.status_code or 0
    raw_code = getattr(exc, "error_code", None)
    code = str(getattr(raw_code, "value", raw_code) or "")  # TableErrorCode is a str enum
    if status in (429, 503) and "ServerBusy" in code:
        return StoreThrottledError(f"Table Storage is busy while {what}")
    if status >= 500 or status in (0, 408, 409, 412, 429):
        return StoreUnavailableError(f"Table Storage failed while {what} (HTTP {status} {code})".rstrip())
    if status in (401, 403):
        return StoreAccessError(f"Table Storage refused the app's identity while {what} (HTTP {status} {code})")
    if status == 404:
        return StoreNotFoundError(f"Table Storage found no such row or table while {what}")
    return StoreRequestError(f"Table Storage refused the request while {what} (HTTP {status} {code})".rstrip())


def read_entity(table: TableClient, partition_key: str, row_key: str, what: str) -> TableEntity | None:
    """One row, or None when it does not exist."""
    with table_errors(what):
        try:
            return table.get_entity(partition_key, row_key)
        except ResourceNotFoundError:
            return None


def write_entity(table: TableClient, entity: dict[str, Any], etag: str | None, what: str) -> str | None:
    """Optimistic concurrency: create the row when ``etag`` is None, else replace it only if it is still at
    ``etag``. Returns the new etag, or None when another writer changed (or created, or deleted) it first."""
    with table_errors(what):
        try:
            if etag is None:
                meta = table.create_entity(entity)
            else:
                meta = table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return None
    new_etag = meta.get("etag")
    return str(new_etag) if new_etag else None


def merge_entity(table: TableClient, entity: dict[str, Any], what: str) -> bool:
    """Update some columns of an existing row (merge, ``If-Match: *``); never re-creates a deleted row.

    Returns:
        False when the row does not exist (any more).
    """
    with table_errors(what):
        try:
            table.update_entity(entity, mode=UpdateMode.MERGE)
        except ResourceNotFoundError:
            return False
    return True


def delete_matching(
    table: TableClient,
    query: str,
    parameters: Mapping[str, Any],
    *,
    limit: int,
    what: str,
    select: Sequence[str] = (),
    before_delete: Callable[[list[TableEntity]], None] | None = None,
) -> int:
    """Delete up to ``limit`` rows matching ``query``, in entity group transactions of up to 100 (one partition
    each). Unconditional and idempotent: a row already gone counts as deleted.

    Args:
        select: extra columns to read (``before_delete`` sees them).
        before_delete: called with each group before it is deleted (e.g. to delete a blob a row points to).

    Returns:
        How many rows were deleted; fewer than ``limit`` means none is left (as of the query).
    """
    columns = ["PartitionKey", "RowKey", *select]
    with table_errors(what):
        rows = list(islice(table.query_entities(query, parameters=dict(parameters), select=columns), limit))
        for group in _groups(rows):
            if before_delete is not None:
                before_delete(group)
            operations: list[Any] = [
                ("delete", {"PartitionKey": r["PartitionKey"], "RowKey": r["RowKey"]}) for r in group
            ]
            try:
                table.submit_transaction(operations)
            except TableTransactionError:  # e.g. one row deleted meanwhile: row by row, 404 is success
                for row in group:
                    table.delete_entity(row["PartitionKey"], row["RowKey"])
    return len(rows)


def delete_partition(table: TableClient, partition: str, *, limit: int, what: str) -> int:
    """Delete up to ``limit`` rows of one partition (see ``delete_matching``)."""
    return delete_matching(table, "PartitionKey eq @pk", {"pk": partition}, limit=limit, what=what)


def _groups(rows: list[TableEntity]) -> Iterator[list[TableEntity]]:
    """Rows in groups of one partition and at most ``TRANSACTION_SIZE`` (a query lists a partition's rows together)."""
    group: list[TableEntity] = []
    for row in rows:
        if group and (len(group) == TRANSACTION_SIZE or group[0]["PartitionKey"] != row["PartitionKey"]):
            yield group
            group = []
        group.append(row)
    if group:
        yield group


class StateTables:
    """The app's three tables, created on first use, named ``<prefix>orgs|ledger|syncstate``."""

    def __init__(self, service: TableServiceClient, prefix: str) -> None:
        self._service = service
        self._prefix = prefix
        self._ready = False

    @classmethod
    def connect(
        cls, *, connection_string: str | None, account_url: str | None, credential: TokenCredential | None, prefix: str
    ) -> StateTables:
        """Build the service client from a connection string, or an account URL and a token credential."""
        # One process-wide pool of kept-alive connections on http.client: half the CPU of requests per call,
        # and no proxy or CA settings re-read from os.environ (see shared/store/transport.py).
        transport = HttpClientTransport()
        if connection_string:
            service = TableServiceClient.from_connection_string(connection_string, transport=transport)
        elif account_url and credential is not None:
            service = TableServiceClient(endpoint=account_url, credential=credential, transport=transport)
        else:
            raise ConfigError("no Table Storage connection: set AzureWebJobsStorage or STATE_STORAGE_CONNECTION")
        return cls(service, prefix)

    def ensure(self) -> None:
        """Create the tables if they do not exist yet (once per process)."""
        if self._ready:
            return
        with table_errors("creating the state tables"):
            for suffix in TABLE_SUFFIXES:
                self._service.create_table_if_not_exists(self._prefix + suffix)
        self._ready = True

    def table(self, suffix: str) -> TableClient:
        if suffix not in TABLE_SUFFIXES:
            raise ValueError(f"unknown state table {suffix!r}")
        self.ensure()
        return self._service.get_table_client(self._prefix + suffix)

    def close(self) -> None:
        self._service.close()
