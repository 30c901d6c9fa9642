"""Connecting to Table Storage and translating its SDK errors at the edge."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient, TableEntity, TableServiceClient, UpdateMode

from shared.errors import ConfigError, ThrottledError, TransientError

_log = logging.getLogger(__name__)

TABLE_SUFFIXES = ("orgs", "ledger", "syncstate")


@contextmanager
def table_errors(what: str) -> Iterator[None]:
    """Map azure-core errors raised inside the block onto the integration's error tree.

    ``ResourceNotFoundError``, ``ResourceExistsError`` and ``ResourceModifiedError`` are left alone:
    callers handle them as outcomes (missing row, lost race), not as faults.
    """
    try:
        yield
    except (ResourceNotFoundError, ResourceExistsError, ResourceModifiedError):
        raise
    except ClientAuthenticationError as exc:
        raise ConfigError(f"Table Storage rejected the app's identity while {what}") from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        if status in (429, 503) and "ServerBusy" in str(getattr(exc, "error_code", "") or ""):
            raise ThrottledError(f"Table Storage is busy while {what}") from exc
        if status >= 500 or status in (0, 408, 429):
            raise TransientError(f"Table Storage failed while {what} (HTTP {status})") from exc
        if status in (401, 403):
            raise ConfigError(f"Table Storage refused access while {what} (HTTP {status})") from exc
        raise
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientError(f"Table Storage unreachable while {what}: {type(exc).__name__}") from exc


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
        # requests would re-read proxy and CA settings from os.environ on every call (~20% of a call's CPU in
        # a Functions worker with 100+ settings); the storage endpoint needs neither.
        transport = RequestsTransport(use_env_settings=False)
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
