"""Plumbing the HTTP clients share: the client lifecycle, ``Retry-After`` and error-text truncation.

``shared.on24`` and ``shared.dataverse`` each map their service's statuses in one table of their own; what is
the same for both lives here, once.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Self

import httpx

MAX_RETRY_AFTER_SECONDS = 3600.0
"""A longer ``Retry-After`` is read as this (it exceeds every retry budget anyway)."""


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), 0 to 3600; None when absent or
    unreadable."""
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
        seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ``...`` marking a cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class HttpClientBase:
    """The lifecycle of a client on httpx: it creates its own connection pool, or uses one passed in (and then
    leaves it open); ``close()`` and the context manager close what it owns.

    Args:
        timeout: default timeout of the pool this object creates.
        transport: an httpx transport for that pool (tests); not with ``http_client``.
        http_client: an externally owned pool to use instead.

    Raises:
        ValueError: both ``transport`` and ``http_client``.
    """

    def __init__(
        self,
        *,
        timeout: httpx.Timeout | float,
        transport: httpx.BaseTransport | None,
        http_client: httpx.Client | None,
    ) -> None:
        if transport is not None and http_client is not None:
            raise ValueError("pass transport= or http_client=, not both")
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(transport=transport, timeout=timeout, follow_redirects=False)
        self._closed = False

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
