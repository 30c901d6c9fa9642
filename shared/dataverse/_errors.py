"""Dataverse's answers as errors of the integration's tree: the one status table of this edge.

Every status Dataverse answers is mapped in ``STATUS_ERRORS`` to the error class callers act on (other 5xx:
transient, other 4xx: permanent); ``$batch`` parts use the same table for the rows Dataverse refused. Messages carry
the operation, the status and Dataverse's own error code and message (which never hold secrets), truncated to
``MAX_ERROR_TEXT`` characters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

import httpx

from shared.errors import (
    ConfigError,
    IntegrationError,
    InvalidDataError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from shared.http import retry_after, truncate

MAX_ERROR_TEXT: Final = 300
"""Dataverse error messages are truncated to this many characters in our exceptions."""

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


def error_class(status: int) -> type[IntegrationError]:
    """The error class of a status: the table's, else transient for 5xx and permanent for the rest."""
    entry = STATUS_ERRORS.get(status)
    if entry is not None:
        return entry[0]
    return TransientError if status >= 500 else PermanentError


def is_retried(status: int) -> bool:
    """A ``$batch`` part with this status is sent again: the table names it transient (429 and 408, 500, 502-504)."""
    return status in STATUS_ERRORS and issubclass(STATUS_ERRORS[status][0], TransientError)


def error_detail(body: bytes) -> tuple[str, str]:
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
    return (code if isinstance(code, str) else ""), clip(message if isinstance(message, str) else "")


def clip(text: str) -> str:
    """Dataverse's text on one line, at most ``MAX_ERROR_TEXT`` characters."""
    return truncate(" ".join(text.split()), MAX_ERROR_TEXT)


def describe(status: int, body: bytes) -> str:
    """``HTTP <status> <code>: <message>`` of an error answer (or a ``$batch`` part)."""
    code, message = error_detail(body)
    return f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")


def raise_for_status(response: httpx.Response, what: str, *, entity_set: str, row_id: str | None) -> None:
    """Raise the table's error for a 4xx/5xx answer; nothing for the rest."""
    status = response.status_code
    if status < 400:
        return
    template = STATUS_ERRORS[status][1] if status in STATUS_ERRORS else _FAILED
    target = f"{entity_set}({row_id})" if row_id else entity_set
    text = template.format(what=what, detail=describe(status, response.content), target=target)
    cls = error_class(status)
    if cls is ThrottledError:
        raise ThrottledError(text, retry_after=retry_after(response.headers.get("Retry-After")))
    raise cls(text)
