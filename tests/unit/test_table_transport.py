"""The Table Storage transport on http.client: connections kept alive, a stale one retried, failures as azure-core's."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError, ServiceResponseTimeoutError
from azure.core.rest import HttpRequest

from shared.store.transport import HttpClientTransport


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.bodies: list[bytes] = []
        self.close_after_answer = False
        self.hang = threading.Event()  # set: the next request gets no answer until released
        self.release = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.bodies.append(body)
        if self.server.hang.is_set():
            self.server.release.wait(5)
            return
        answer = b'{"ok": true}'
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        if self.server.close_after_answer:
            self.close_connection = True  # closes without "Connection: close": the client learns on next use

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def _post(srv: _Server, body: bytes = b"{}") -> HttpRequest:
    return HttpRequest(
        "POST",
        f"http://127.0.0.1:{srv.server_address[1]}/devstoreaccount1/t",
        content=body,
        headers={"Content-Type": "application/json"},
    )


def test_answers_come_back_whole_and_the_connection_is_kept_alive(server: _Server) -> None:
    with HttpClientTransport() as transport:
        answers = [transport.send(_post(server, f'{{"n": {n}}}'.encode())) for n in range(5)]
    assert [a.status_code for a in answers] == [201] * 5
    assert answers[0].json() == {"ok": True} and answers[0].headers["content-type"] == "application/json"
    assert server.bodies == [f'{{"n": {n}}}'.encode() for n in range(5)], "each body reaches the server once"
    assert server.connections == 1, "one kept-alive connection serves every call"


def test_a_connection_the_server_closed_while_idle_is_replaced_and_the_request_sent_once(server: _Server) -> None:
    server.close_after_answer = True
    with HttpClientTransport() as transport:
        for n in range(3):
            assert transport.send(_post(server, str(n).encode())).status_code == 201
    assert server.bodies == [b"0", b"1", b"2"], "no request is lost or sent twice"
    assert server.connections == 3


def test_no_answer_in_the_read_timeout_is_a_response_timeout(server: _Server) -> None:
    server.hang.set()
    with HttpClientTransport(read_timeout=0.2) as transport, pytest.raises(ServiceResponseTimeoutError):
        transport.send(_post(server))
    assert len(server.bodies) == 1, "a request that may have been applied is not sent again"


def test_a_dropped_connection_after_the_request_is_a_response_error_not_retried() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    seen: list[bytes] = []

    def drop_each() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            seen.append(conn.recv(65536))
            conn.close()

    thread = threading.Thread(target=drop_each, daemon=True)
    thread.start()
    request = HttpRequest("POST", f"http://127.0.0.1:{listener.getsockname()[1]}/t", content=b"{}")
    with HttpClientTransport() as transport, pytest.raises(ServiceResponseError):
        transport.send(request)
    listener.close()
    assert len(seen) == 1, "a fresh connection's failure is not retried: the server may have applied the write"


def test_nothing_listening_is_a_request_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with HttpClientTransport() as transport, pytest.raises(ServiceRequestError):
        transport.send(HttpRequest("GET", f"http://127.0.0.1:{port}/t"))


def _read_request(conn: socket.socket) -> bytes:
    """One whole HTTP/1.1 request (head and Content-Length body), or b"" at the end of the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def _answer_then_break_off(listener: socket.socket, seen: list[bytes], head_read: threading.Event) -> None:
    """One connection: the first request gets a whole answer, the second only its head and part of its body,
    then, once the client has read the head, a reset (SO_LINGER 0), as a server or proxy dying mid-answer does.
    Further connections get the same."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            for answered in (True, False):
                data = _read_request(conn)
                if not data:
                    break
                seen.append(data)
                if answered:
                    conn.sendall(
                        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                    )
                    continue
                conn.sendall(
                    b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"Ju'
                )
                head_read.wait(5)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_an_answer_broken_off_after_its_first_byte_is_never_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    seen: list[bytes] = []
    head_read = threading.Event()  # set once http.client has parsed a status line: the reset comes after it
    begin = http.client.HTTPResponse.begin

    def begin_then_signal(response: http.client.HTTPResponse) -> None:
        begin(response)
        if response.length == 100:
            head_read.set()

    monkeypatch.setattr(http.client.HTTPResponse, "begin", begin_then_signal)
    thread = threading.Thread(target=_answer_then_break_off, args=(listener, seen, head_read), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/devstoreaccount1/t"
    try:
        with HttpClientTransport(read_timeout=2) as transport:
            first = transport.send(HttpRequest("POST", url, content='{"Name": "Jörg Müller"}'.encode()))
            assert first.status_code == 201
            with pytest.raises(ServiceResponseError):
                transport.send(HttpRequest("POST", url, content='{"Name": "Иван Петров"}'.encode()))
    finally:
        listener.close()
    posts = [request for request in seen if request.startswith(b"POST")]
    assert len(posts) == 2, "2 calls reach the server twice: the broken-off answer's request is not resent"


def test_the_private_azure_core_response_type_still_has_what_the_transport_relies_on() -> None:
    """``_Response`` subclasses azure-core's private HttpResponseImpl: its constructor keywords and the attributes
    set after it must exist in the pinned version, and the public accessors must read the body given."""
    import inspect

    from azure.core.rest import HttpResponse
    from azure.core.rest._http_response_impl import HttpResponseImpl
    from azure.core.utils import case_insensitive_dict

    from shared.store.transport import _Response

    assert inspect.isclass(HttpResponseImpl) and issubclass(_Response, HttpResponseImpl)
    body = '{"PartitionKey": "org-ø", "Name": "Åsa Ødegård"}'.encode()
    request = HttpRequest("GET", "http://127.0.0.1/t")
    headers = case_insensitive_dict({"content-type": "application/json;odata=nometadata"})
    response = _Response(request, 200, "OK", headers, body)
    assert isinstance(response, HttpResponse)
    assert response._content == body and response._is_stream_consumed is True
    assert response.content == body and response.text() == body.decode() and response.json()["Name"] == "Åsa Ødegård"
    assert response.status_code == 200 and response.reason == "OK" and response.request is request
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.content_type == "application/json;odata=nometadata"
    response.raise_for_status()


def test_azure_core_is_pinned_at_the_installed_version() -> None:
    """The transport's private import is checked against one version: the deployed one."""
    from importlib.metadata import version
    from pathlib import Path

    pins = (Path(__file__).resolve().parents[2] / "requirements.txt").read_text(encoding="utf-8")
    assert f"azure-core=={version('azure-core')}" in pins.splitlines()
