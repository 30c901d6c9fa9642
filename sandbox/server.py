"""A small threaded HTTP(S) server base for the stand-ins: routing, request log, latency and faults.

Each stand-in subclasses ``StandIn`` and implements ``handle(request) -> Response``. The base adds
what every stand-in needs for tests: a log of the requests it served (to count calls), an injectable
latency, and a queue of scripted faults (``fail_next``) answered before the real handler runs.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    """One request as the stand-in saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    """What a stand-in answers."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
        merged = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        return cls(status, json.dumps(payload).encode("utf-8"), merged)


@dataclass
class Fault:
    """A scripted answer (or a delay, or a dropped connection) for the next matching request."""

    response: Response | None = None
    delay: float = 0.0
    drop: bool = False
    method: str | None = None
    path_contains: str | None = None

    def matches(self, request: Request) -> bool:
        if self.method and self.method != request.method:
            return False
        return not (self.path_contains and self.path_contains not in request.path)


@dataclass
class Chaos:
    """Random faults for a soak: a share ``rate`` of requests gets one of ``kinds``, chosen by ``weights``.

    Kinds: ``5xx`` (an error answer instead of the real one), ``429`` (with Retry-After), ``throttle403`` (ON24's
    documented 403), ``drop`` (the connection closes before the request is handled), ``lost_reply`` (handled,
    then the connection closes: the effect happened, the answer is lost), ``slow`` (answered after a delay
    shorter than the client's timeout) and ``late`` (handled only after the client gave up waiting).
    """

    rate: float
    weights: dict[str, float]
    seed: int = 0
    slow: tuple[float, float] = (0.05, 0.3)
    late: tuple[float, float] = (0.6, 0.9)
    throttle_body: Any = None
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def pick(self) -> tuple[str, float] | None:
        with self._lock:
            if self._rng.random() >= self.rate:
                return None
            kind = self._rng.choices(list(self.weights), weights=list(self.weights.values()))[0]
            low, high = self.late if kind == "late" else self.slow
            self.counts[kind] = self.counts.get(kind, 0) + 1
            return kind, self._rng.uniform(low, high)


class Gate:
    """Holds one matching request at a chosen point until the test releases it (an interleaving, not a sleep).

    ``arrived`` is set when the request reached the gate: before the handler runs (``after=False``), or after
    it ran and before the reply is sent (``after=True``: the effect happened, the answer is held back).
    """

    def __init__(self, method: str | None, path_contains: str | None, after: bool, body_contains: bytes | None) -> None:
        self.method, self.path_contains, self.after = method, path_contains, after
        self.body_contains = body_contains
        self.arrived = threading.Event()
        self._released = threading.Event()
        self.drop_reply = False

    def matches(self, request: Request) -> bool:
        if self.method and self.method != request.method:
            return False
        if self.body_contains is not None and self.body_contains not in request.body:
            return False
        return not (self.path_contains and self.path_contains not in request.path)

    def release(self, *, drop_reply: bool = False) -> None:
        """Let the request go on; ``drop_reply`` closes the connection instead of answering."""
        self.drop_reply = drop_reply
        self._released.set()

    def wait_arrived(self, timeout: float = 30.0) -> None:
        if not self.arrived.wait(timeout):
            raise TimeoutError("no request reached the gate")

    def _pass(self) -> None:
        self.arrived.set()
        self._released.wait(120)


_Scripted = TypeVar("_Scripted", Fault, Gate)


class StandIn:
    """Base of the stand-in servers. Start with ``start()`` or as a context manager."""

    name = "stand-in"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        self._host = host
        self._port = port
        self._ssl_context = ssl_context
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self._gates: list[Gate] = []
        self.chaos: Chaos | None = None
        self.down: int | None = None  # an outage: every request answered with this status
        self.down_answered = 0
        self.latency = 0.0
        self.requests: list[Request] = []

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> StandIn:
        handler = _make_handler(self)
        server = _QuietServer((self._host, self._port), handler)
        server.daemon_threads = True
        server.request_queue_size = 128
        if self._ssl_context is not None:
            server.socket = self._ssl_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=f"{self.name}-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the stand-in first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    # ---- test controls ---------------------------------------------------------------------
    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 503,
        payload: Any = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        drop: bool = False,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with a fault instead of the real handler.

        ``delay`` alone (status 0) only slows the request down; ``drop`` closes the connection unanswered.
        """
        response = None
        if status:
            response = Response.json(status, payload if payload is not None else {"message": "injected fault"}, headers)
        with self._lock:
            for _ in range(count):
                self._faults.append(Fault(response, delay, drop, method, path_contains))

    def hold_next(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        *,
        after: bool = False,
        body_contains: bytes | None = None,
    ) -> Gate:
        """Hold the next matching request at a gate (see ``Gate``) until the test releases it."""
        gate = Gate(method, path_contains, after, body_contains)
        with self._lock:
            self._gates.append(gate)
        return gate

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            gates, self._gates = self._gates, []
        for gate in gates:
            gate.release()

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        """How many requests matched (for call-count assertions)."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method) and (path_contains is None or path_contains in r.path)
            )

    # ---- for subclasses ----------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def _take(self, scripted: list[_Scripted], request: Request) -> _Scripted | None:
        """Remove and return the first scripted fault or gate that matches ``request``."""
        with self._lock:
            for index, item in enumerate(scripted):
                if item.matches(request):
                    return scripted.pop(index)
        return None

    def _serve(self, request: Request) -> Response | None:
        with self._lock:
            self.requests.append(request)
        if self.latency:
            time.sleep(self.latency)
        if self.down is not None:
            with self._lock:
                self.down_answered += 1
            return Response.json(self.down, {"message": "service unavailable (stand-in outage)"})
        gate = self._take(self._gates, request)
        if gate is not None and not gate.after:
            gate._pass()
            if gate.drop_reply:
                return None
        if self.chaos is not None:
            picked = self.chaos.pick()
            if picked is not None:
                return self._chaotic(request, *picked)
        fault = self._take(self._faults, request)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                return None
            if fault.response is not None:
                return fault.response
        try:
            response = self.handle(request)
        except Exception as exc:  # a stand-in bug must show up as a 500, not a hung client
            response = Response.json(500, {"message": f"stand-in error: {type(exc).__name__}: {exc}"})
        if gate is not None and gate.after:
            gate._pass()
            if gate.drop_reply:
                return None
        return response


    def _chaotic(self, request: Request, kind: str, delay: float) -> Response | None:
        if kind == "5xx":
            status = random.choice((500, 502, 503, 504))
            return Response.json(status, {"message": "injected fault"})
        if kind == "429":
            return Response.json(429, {"message": "injected throttling"}, {"Retry-After": "0.1"})
        if kind == "throttle403":
            return Response.json(403, self.chaos.throttle_body if self.chaos else {})
        if kind == "drop":
            return None
        if kind in ("slow", "late"):
            time.sleep(delay)
        try:
            response = self.handle(request)
        except Exception as exc:
            response = Response.json(500, {"message": f"stand-in error: {type(exc).__name__}: {exc}"})
        return None if kind == "lost_reply" else response


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (e.g. after its timeout during an injected delay) is not worth a traceback."""
        return


def _make_handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = stand_in.name
        # Headers and body are written separately: without TCP_NODELAY each keep-alive reply stalls ~40 ms.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by design
            return

        def _dispatch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            request = Request(
                method=self.command,
                path=parts.path,
                query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            response = stand_in._serve(request)
            if response is None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if response.body and self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    return Handler


def free_port() -> int:
    """A loopback port that was free a moment ago (for child processes that cannot report theirs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
