"""Connecting to Table Storage and translating its SDK errors at the edge."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableServiceClient

from shared.errors import ConfigError, ThrottledError, TransientError

_log = logging.getLogger(__name__)

TABLE_SUFFIXES = ("orgs", "ledger", "syncstate")


@contextmanager
def table_errors(what: str) -> Iterator[None]:
    """Map azure-core errors raised inside the block onto the integration's error tree.

    ``ResourceNotFoundError``, ``ResourceExistsError`` and ``ResourceModifiedError`` are left alone:
    callers handle them as outcomes (missing row, lost race), not as faults.
    """
    from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

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
        if connection_string:
            service = TableServiceClient.from_connection_string(connection_string)
        elif account_url and credential is not None:
            service = TableServiceClient(endpoint=account_url, credential=credential)
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
