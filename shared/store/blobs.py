"""Blob Storage at the edge: its errors mapped onto the integration's error tree, and the match-index blobs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from itertools import islice
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.errors import ConfigError, TransientError

if TYPE_CHECKING:  # the Blob SDK costs ~150 ms to import: connected on first use (shared.app)
    from azure.core.credentials import TokenCredential
    from azure.storage.blob import BlobServiceClient, ContainerClient


def connect(
    connection_string: str | None, account_url: str | None, credential: Callable[[], TokenCredential] | None
) -> BlobServiceClient:
    """Blob Storage from a connection string, or an account URL and the app's identity (asked for only then)."""
    from azure.storage.blob import BlobServiceClient

    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string)
    if account_url and credential is not None:
        return BlobServiceClient(account_url, credential=credential())
    raise ConfigError("no Blob Storage endpoint: set AzureWebJobsStorage or STATE_STORAGE_BLOB_ENDPOINT")


@contextmanager
def blob_errors(what: str) -> Iterator[None]:
    """Map every azure-core error of Blob Storage onto the integration's error tree (this edge's one table)."""
    try:
        yield
    except ClientAuthenticationError as exc:
        raise ConfigError(f"Blob Storage rejected the app's identity while {what}") from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientError(f"Blob Storage unreachable while {what}: {type(exc).__name__}") from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        if status in (401, 403):
            raise ConfigError(f"Blob Storage refused access while {what} (HTTP {status})") from exc
        raise TransientError(f"Blob Storage failed while {what} (HTTP {status})") from exc
    except AzureError as exc:  # anything else of the SDK's (a stream cut short, ...): never escapes the store
        raise TransientError(f"Blob Storage failed while {what}: {type(exc).__name__}") from exc


class MatchIndexes:
    """Each webinar's match index (``shared.metrics.index``), one blob ``<org>/<webinar>`` in the
    ``<prefix>metrics`` container. It holds ids and keyed email hashes, no email or name; retention deletes a
    webinar's blob when its metrics window closes, and a purge deletes the org's."""

    def __init__(self, container: Callable[[], ContainerClient]) -> None:
        self._container = container
        self._ready = False
        self._lock = threading.Lock()

    def load(self, org_id: str, webinar_id: str) -> tuple[bytes | None, str | None]:
        """(the index, its etag), or (None, None) when there is none yet."""
        with blob_errors(f"reading the match index of webinar {webinar_id} (org {org_id!r})"):
            try:
                download = self._container().download_blob(_name(org_id, webinar_id))
                return bytes(download.readall()), download.properties.etag
            except ResourceNotFoundError:
                return None, None

    def save(self, org_id: str, webinar_id: str, data: bytes, etag: str | None) -> str | None:
        """Write the index if it is still at ``etag`` (absent when None). Returns the new etag, or None when
        another pull saved it meanwhile (the caller merges)."""
        with blob_errors(f"saving the match index of webinar {webinar_id} (org {org_id!r})"):
            container = self._container()
            if not self._ready:
                with self._lock, suppress(ResourceExistsError):
                    container.create_container()
                self._ready = True
            condition: dict[str, Any] = (
                {"overwrite": False}
                if etag is None
                else {"overwrite": True, "etag": etag, "match_condition": MatchConditions.IfNotModified}
            )
            try:
                done = container.get_blob_client(_name(org_id, webinar_id)).upload_blob(data, **condition)
            except (ResourceExistsError, ResourceModifiedError):
                return None
            return str(done["etag"])

    def delete(self, org_id: str, webinar_id: str) -> None:
        with blob_errors(f"deleting the match index of webinar {webinar_id} (org {org_id!r})"), suppress(
            ResourceNotFoundError
        ):
            self._container().delete_blob(_name(org_id, webinar_id))

    def delete_org(self, org_id: str, *, limit: int) -> int:
        """Delete up to ``limit`` of the org's index blobs; returns how many (fewer than ``limit``: none left)."""
        deleted = 0
        with blob_errors(f"deleting the match indexes of org {org_id!r}"):
            container = self._container()
            try:
                listed = container.list_blobs(name_starts_with=f"{org_id}/")
                names = [blob.name for blob in islice(listed, limit)]
            except ResourceNotFoundError:
                return 0  # no index was ever saved
            for name in names:
                with suppress(ResourceNotFoundError):
                    container.delete_blob(name)
                deleted += 1
        return deleted


def _name(org_id: str, webinar_id: str) -> str:
    return f"{org_id}/{webinar_id}"
