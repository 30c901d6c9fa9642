"""ON24's answers as errors of the integration's tree: the one status table of this edge (``reference/on24-api.md``
§5 and §6).

    429, or 403 "maximum number of calls"   ThrottledError (Retry-After honoured when sent)
    other 401 / 403                         CredentialsRejectedError (403 "email ... not found": NotFoundError)
    404, 410                                NotFoundError
    400, 412, 422                           InvalidDataError
    408, 5xx, timeouts, connection errors   TransientError
    anything else that is not 2xx           PermanentError

Messages name the operation, the event id and the status, plus ON24's own ``message`` text (cleaned, any email
address masked, truncated; it never carries a secret). Never a token, a request body or a raw response body.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx
import pydantic

from shared.errors import (
    CredentialsRejectedError,
    IntegrationError,
    InvalidDataError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from shared.http import retry_after, truncate
from shared.on24._models import M, one_line

STATUS_ERRORS: Final[Mapping[int, type[IntegrationError]]] = {
    400: InvalidDataError,
    401: CredentialsRejectedError,
    403: CredentialsRejectedError,
    404: NotFoundError,
    408: TransientError,
    410: NotFoundError,
    412: InvalidDataError,
    422: InvalidDataError,
    429: ThrottledError,
}
"""Every status ON24 answers, mapped in one place (other 5xx: transient, other statuses: permanent)."""
MESSAGE_ERRORS: Final[tuple[tuple[int, str, type[IntegrationError]], ...]] = (
    (403, "maximum number of calls", ThrottledError),  # ON24 also throttles with a 403
    (403, "email provided was not found", NotFoundError),  # an update of a registrant ON24 does not hold
)
"""Where ON24 says more in its text than in its status: (status, words in the message, error class)."""
MESSAGE_LIMIT: Final = 200
_ADDRESS = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+")
Tolerance = Callable[[int, str], bool]
"""Decides from (status, ON24 message) that an error answer means the goal is already reached."""


def error_class(status: int, message: str) -> type[IntegrationError]:
    """The error class of an answer: the message rules, the status table, else transient for 5xx."""
    lowered = message.lower()
    for rule_status, words, cls in MESSAGE_ERRORS:
        if status == rule_status and words in lowered:
            return cls
    return STATUS_ERRORS.get(status) or (TransientError if status >= 500 else PermanentError)


def safe_message(response: httpx.Response) -> str:
    """ON24's ``message`` from an error body, cleaned, with any email address masked, and truncated; empty when
    there is none. The text goes into logs and the ledger's reasons, which hold ids, never an address."""
    try:
        payload = response.json()
    except ValueError:
        return ""
    if not isinstance(payload, dict):
        return ""
    message = next((value for key, value in payload.items() if str(key).lower() == "message"), None)
    if not isinstance(message, str):
        return ""
    return truncate(_ADDRESS.sub("<email>", one_line(message)), MESSAGE_LIMIT)


def interpret(what: str, response: httpx.Response, done_when: Tolerance | None) -> Any:
    status = response.status_code
    if 200 <= status < 300:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise TransientError(f"{what}: ON24 answered {status} with a body that is not JSON") from exc
    message = safe_message(response)
    if done_when is not None and done_when(status, message):
        return None
    raise error_for(what, status, message, response.headers)


def error_for(what: str, status: int, message: str, headers: httpx.Headers) -> IntegrationError:
    text = f"{what}: ON24 answered {status}" + (f": {message}" if message else "")
    cls = error_class(status, message)
    if cls is ThrottledError:
        return ThrottledError(text, retry_after=retry_after(headers.get("Retry-After")))
    return cls(text)


def parse(model: type[M], body: Any, what: str) -> M:
    """Validate a 200 body: not JSON-object -> TransientError (a gateway glitch); missing ids -> PermanentError."""
    if not isinstance(body, dict):
        raise TransientError(f"{what}: ON24's answer is not a JSON object")
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        fields = ", ".join(sorted({".".join(str(part) for part in err["loc"]) for err in exc.errors()}))
        raise PermanentError(f"{what}: ON24's answer lacks or garbles {fields}") from None
