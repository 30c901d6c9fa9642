"""A capture server: answers every request with an empty 200 and records it (method, path, headers, body).

It stands in for a host an attacker controls. The SSRF tests point admin input at it and assert that it
never receives a request, in particular never an ``Authorization`` header carrying one of our tokens.
"""

from __future__ import annotations

from sandbox.server import Request, Response, StandIn


class CaptureServer(StandIn):
    """Records every request (``requests``, ``count``); answers ``200 {}`` so a client has no reason to stop."""

    name = "capture-server"

    def handle(self, request: Request) -> Response:
        return Response.json(200, {})

    def authorizations(self) -> list[str]:
        """The ``Authorization`` headers received, in order."""
        with self._lock:
            return [r.headers["authorization"] for r in self.requests if "authorization" in r.headers]


__all__ = ["CaptureServer"]
