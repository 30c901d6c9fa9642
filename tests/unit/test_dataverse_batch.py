"""The ``$batch`` format helper on its own: the request body, and the parts of an answer matched to the rows sent."""

from __future__ import annotations

import httpx
import pytest

from shared.dataverse._batch import Part, request_body, response_parts, sort_parts
from shared.errors import TransientError

ROWS = [("11111111-1111-1111-1111-111111111111", b'{"a":1}'), ("22222222-2222-2222-2222-222222222222", b'{"a":2}')]


def answer(body: str, boundary: str = "batchresponse_x") -> httpx.Response:
    headers = {"Content-Type": f"multipart/mixed; boundary={boundary}"}
    return httpx.Response(200, headers=headers, content=body.encode())


def part(status: str, extra: str = "", body: str = "") -> str:
    return (
        "--batchresponse_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        f"HTTP/1.1 {status}\r\n{extra}\r\n{body}\r\n"
    )


def test_the_request_body_has_one_patch_part_per_row_and_a_closing_delimiter() -> None:
    body = request_body("/api/data/v9.2/", "batch_b", "msevtmgt_checkins", ROWS).decode()
    assert body.count("--batch_b\r\n") == 2 and body.endswith("--batch_b--\r\n")
    assert f"PATCH /api/data/v9.2/msevtmgt_checkins({ROWS[1][0]}) HTTP/1.1" in body
    assert '{"a":2}' in body


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_parts_are_read_in_order_with_crlf_or_lf(newline: str) -> None:
    text = part("204 No Content") + part("429 Too Many Requests", "Retry-After: 7\r\n") + "--batchresponse_x--\r\n"
    parts = response_parts(answer(text.replace("\r\n", newline)), "POST $batch")
    assert [p.status for p in parts] == [204, 429]
    assert parts[1].headers["retry-after"] == "7"


def test_change_set_responses_are_flattened() -> None:
    inner = (
        "--changesetresponse_y\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n"
        "--changesetresponse_y--\r\n"
    )
    text = (
        "--batchresponse_x\r\nContent-Type: multipart/mixed; boundary=changesetresponse_y\r\n\r\n"
        + inner
        + part("400 Bad Request", body='{"error":{"code":"0x1","message":"bad"}}')
        + "--batchresponse_x--\r\n"
    )
    assert [p.status for p in response_parts(answer(text), "POST $batch")] == [204, 400]


def test_an_answer_that_is_not_multipart_is_transient() -> None:
    with pytest.raises(TransientError, match="not multipart"):
        response_parts(httpx.Response(200, json={}), "POST $batch")


def test_rows_are_sorted_into_written_refused_and_sent_again() -> None:
    refused = Part(400, {}, b'{"error":{"code":"0x80040220","message":"bad value"}}')
    outcome = sort_parts(ROWS, [Part(204, {}, b""), refused], "POST $batch")
    assert outcome.succeeded == [ROWS[0][0]] and outcome.failed == {ROWS[1][0]: "HTTP 400 0x80040220: bad value"}
    throttled = sort_parts(ROWS, [Part(429, {"retry-after": "3"}, b"")], "POST $batch")
    assert throttled.retry == ROWS and throttled.throttled and throttled.retry_after == 3.0  # no part: sent again
    transient = sort_parts(ROWS[:1], [Part(503, {}, b"")], "POST $batch")
    assert transient.retry == ROWS[:1] and not transient.throttled
