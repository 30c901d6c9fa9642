"""The JSON layer of a queue message: bytes in, a JSON object out, or a ``MessageError`` saying why not.

Decisions on the JSON layer: the body must be UTF-8 (a BOM is tolerated), at most 256 KiB, a JSON object;
``NaN``/``Infinity`` literals and nesting too deep to parse are errors; duplicate keys keep the last value
(Python's ``json`` behaviour; nothing else parses these bodies, so there is no parser disagreement to exploit).
"""

from __future__ import annotations

import json
from typing import Any

from shared.messages._commands import MessageError, json_type

MAX_BODY_BYTES = 256 * 1024
"""Largest body accepted (Service Bus standard tier maximum; Dataverse trims its own at 192 KB)."""

_MAX_INT_DIGITS = 64
_JSON_MEDIA_TYPE = "application/json"


def load_json_object(body: bytes, content_type: str | None) -> dict[str, Any]:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError(f"body must be bytes, not {type(body).__name__}")
    _check_content_type(content_type)
    size = len(body) if not isinstance(body, memoryview) else body.nbytes
    if size > MAX_BODY_BYTES:
        raise MessageError(f"body is {size} bytes; the maximum is {MAX_BODY_BYTES} bytes")
    raw = bytes(body)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw[:4]:
        raise MessageError("body looks like UTF-16/UTF-32; messages must be UTF-8 JSON")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MessageError(f"body is not valid UTF-8 (bad byte at offset {exc.start})") from None
    stripped = text.strip()
    if not stripped:
        raise MessageError("body is empty")
    if stripped.startswith("<"):
        raise MessageError("body is XML, not JSON: the Dataverse service endpoint must use the JSON message format")
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
    except RecursionError:
        raise MessageError("body is not valid JSON: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise MessageError(f"body is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:  # raised by our hooks, with our own text
        raise MessageError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MessageError(f"body must be a JSON object, not a JSON {json_type(data)}")
    return data


def _check_content_type(content_type: str | None) -> None:
    if content_type is None or not content_type.strip():
        return
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() != _JSON_MEDIA_TYPE:
        raise MessageError(
            "content type is not supported: the service endpoint must use the JSON message format (application/json)"
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in {"utf-8", "utf8"}:
            raise MessageError("charset is not supported: messages must be UTF-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _parse_int(literal: str) -> int:
    if len(literal) > _MAX_INT_DIGITS:
        raise ValueError(f"an integer literal has more than {_MAX_INT_DIGITS} digits")
    return int(literal)


