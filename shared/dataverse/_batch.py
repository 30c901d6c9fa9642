"""The ``$batch`` multipart format: the request body of PATCH upserts, and the parts of Dataverse's answer.

A small parser of our own rather than the standard library's ``email`` package: Dataverse answers a thousand
embedded HTTP responses per batch (``HTTP/1.1 204 No Content`` lines, not MIME headers), which ``email`` parses as
opaque payloads we would parse again; this one reads each part's status line and headers in one pass, tolerates LF
as well as CRLF and nested change-set responses, and is tested on its own (``tests/unit/test_dataverse_batch.py``).
The Dataverse stand-in keeps its own parser on purpose: a stand-in must not share code with the client it checks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import httpx

from shared.dataverse._errors import describe, is_retried
from shared.errors import TransientError
from shared.http import retry_after

_log = logging.getLogger(__name__)

_BOUNDARY_RE: Final = re.compile(r'boundary="?([^";,\s]+)"?', re.IGNORECASE)
Row = tuple[str, bytes]
"""(row id, JSON body) of one upsert."""


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
class Part:
    """One response inside a ``$batch`` response."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Sorted:
    """What one answered batch did to its rows."""

    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    retry: list[Row] = field(default_factory=list)
    throttled: bool = False
    retry_after: float | None = None


def request_body(api_path: str, boundary: str, entity_set: str, rows: list[Row], *, must_exist: bool = False) -> bytes:
    """One PATCH part per row, no change set (rows succeed or fail on their own); ``must_exist``: update only."""
    head = (
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        f"PATCH {api_path}{entity_set}("
    ).encode("ascii")
    match = b"If-Match: *\r\n" if must_exist else b""
    tail = b") HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n" + match + b"\r\n"
    chunks: list[bytes] = []
    for row_id, payload in rows:
        chunks += (head, row_id.encode("ascii"), tail, payload, b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(chunks)


def sort_parts(rows: list[Row], parts: list[Part], what: str) -> Sorted:
    """Match the answer's parts to the rows sent, by order.

    Responses of a batch without change sets come back in request order (Content-ID is only for change-set
    members). Uncertain: a batch that stopped early answers fewer parts; the rows without an answer were not
    processed and are resent (upserts are idempotent), as are rows answered 429 or another transient status.
    """
    result = Sorted()
    for index, row in enumerate(rows):
        part = parts[index] if index < len(parts) else None
        if part is None:
            result.retry.append(row)
        elif 200 <= part.status < 300:
            result.succeeded.append(row[0])
        elif is_retried(part.status):
            result.retry.append(row)
            if part.status == 429:
                result.throttled = True
                result.retry_after = retry_after(part.headers.get("retry-after")) or result.retry_after
        else:
            result.failed[row[0]] = describe(part.status, part.body)
    if len(parts) > len(rows):
        _log.warning("Dataverse %s: %d response parts for %d operations", what, len(parts), len(rows))
    return result


def response_parts(response: httpx.Response, what: str) -> list[Part]:
    """The embedded responses of a ``$batch`` answer, in order."""
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


def _parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """Parse a ``batchresponse``/``changesetresponse`` body into its embedded HTTP responses, in order."""
    delimiter = b"\n--" + boundary.encode("latin-1")
    segments = (b"\r\n" + body).split(delimiter)
    parts: list[Part] = []
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
        parts.append(Part(status, _parse_headers(lines[1:]), payload.strip()))
    return parts
