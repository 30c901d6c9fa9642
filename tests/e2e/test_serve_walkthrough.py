"""``python -m sandbox serve``: the printed walkthrough, followed literally, ends with check-ins in the Dataverse
stand-in.

``func start`` (Azure Functions Core Tools) cannot run here, so the steps are run against ``LocalHost``, a small
stand-in for what the host does with this repository as far as the walkthrough relies on it, from documented
behaviour: HTTP routes come from each function.json (``/api`` prefix, methods, ``{orgId}``); ``POST
/admin/functions/<name>`` with ``{"input": "..."}`` answers 202 and runs the function in the background, with the
input string as a Service Bus message body (no content type, a fresh message id) or a timer tick, also for a
function disabled with ``AzureWebJobs.<name>.Disabled`` ("Manually run a non HTTP-triggered function", "How to
disable functions"); HTTP routes of disabled functions answer 404. The app settings are the ``Values`` of the
``local.settings.json`` that ``serve --write-local-settings`` wrote. Not simulated: the timer schedule (the
walkthrough runs PullMetrics by hand) and function keys (not enforced locally).

Every command of the printed steps is run with bash as printed, only ``FUNC=`` pointing at ``LocalHost``; between
steps the test waits for the progress line the step tells the user to wait for.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from sandbox.triggers import service_bus_message
from tests.e2e.test_demo import assert_nothing_left, demo_env
from tests.e2e.test_demo import marker as process_marker  # noqa: F401 - fixture: marks every process started

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find leftover processes"),
]


class LocalHost:
    """The parts of the Functions host the walkthrough uses (see the module docstring), on 127.0.0.1."""

    def __init__(self, root: Path, values: dict[str, str]) -> None:
        self.values = values
        self.functions: dict[str, dict[str, Any]] = {}
        for path in sorted(root.glob("*/function.json")):
            self.functions[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="host")
        self.invocations: list[Future[Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> LocalHost:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.pool.shutdown(wait=True)

    def disabled(self, name: str) -> bool:
        return self.values.get(f"AzureWebJobs.{name}.Disabled", "").lower() in {"1", "true"}

    def main(self, name: str) -> Any:
        module = __import__(name)
        return module.main

    def http(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        for name, spec in self.functions.items():
            trigger = spec["bindings"][0]
            if trigger["type"] != "httpTrigger" or method.lower() not in trigger["methods"]:
                continue
            pattern = "^/api/" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", trigger["route"]) + "$"
            m = re.match(pattern, path)
            if not m or self.disabled(name):
                continue
            request = func.HttpRequest(
                method,
                f"http://localhost:7071{path}",
                headers=headers,
                params=dict(parse_qsl(query)),
                route_params=m.groupdict(),
                body=body,
            )
            response = self.main(name)(request)
            return response.status_code, response.get_body()
        return 404, b""

    def admin_run(self, name: str, body: bytes) -> int:
        spec = self.functions.get(name)
        if spec is None:
            return 404
        trigger = spec["bindings"][0]
        payload = json.loads(body or b"{}")
        if trigger["type"] == "serviceBusTrigger":
            argument: Any = service_bus_message(str(payload.get("input", "")), content_type=None)
        elif trigger["type"] == "timerTrigger":
            argument = TimerRequest(past_due=False, schedule_status={}, schedule={})
        else:
            return 400
        self.invocations.append(self.pool.submit(self.main(name), argument))
        return 202

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

            def _do(self) -> None:
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                admin = re.fullmatch(r"/admin/functions/(\w+)", parts.path)
                if admin and self.command == "POST":
                    status, payload = host.admin_run(admin.group(1), body), b""
                else:
                    status, payload = host.http(self.command, parts.path, parts.query, dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = _do

        return Handler


class Serve:
    """``python -m sandbox serve --write-local-settings`` in a scratch function-app root, its output line by line."""

    def __init__(self, cwd: Path, marker: str) -> None:
        env = {**demo_env(marker), "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "serve", "--write-local-settings"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        for line in self.seen:
            if re.search(pattern, line):
                return line
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"serve ended before {pattern!r}:\n" + "".join(self.seen)
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def stop(self) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


def steps(output: str) -> dict[int, list[str]]:
    """The walkthrough's commands, by step number (the ``FUNC=`` line is step 0)."""
    block = output.split("Steps, in order,", 1)[1].split("\nCRM org ", 1)[0]
    found: dict[int, list[str]] = {0: []}
    current = 0
    for line in block.splitlines()[1:]:
        text = line.strip()
        if not text:
            continue
        number = re.match(r"# (\d+)\. ", text)
        if number:
            current = int(number.group(1))
            found[current] = []
        elif not text.startswith("#"):
            found[current].append(text)
    return found


@pytest.fixture
def app_root(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    root.mkdir()
    shutil.copy(ROOT / "host.json", root / "host.json")
    (root / "local.settings.json").write_text('{"Values": {"MY_OWN": "setting"}}\n', encoding="utf-8")
    return root


@pytest.fixture
def host_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    from shared.app import reset_app

    for name in list(os.environ):
        if name.startswith(("ON24_", "DATAVERSE_", "KEY_VAULT", "CREDENTIALS_KEY", "WEBSITE_", "STATE_")):
            monkeypatch.delenv(name, raising=False)
    reset_app()
    yield monkeypatch
    reset_app()


def json_documents(text: str) -> list[Any]:
    """The JSON documents curl printed one after another (response bodies carry no trailing newline)."""
    decoder, found, i = json.JSONDecoder(), [], 0
    while i < len(text.rstrip()):
        document, i = decoder.raw_decode(text, i)
        found.append(document)
        while i < len(text) and text[i].isspace():
            i += 1
    return found


def run_step(commands: list[str], func_url: str) -> str:
    script = "set -euo pipefail\n" + f"FUNC={func_url}\n" + "\n".join(commands) + "\n"
    bash = shutil.which("bash") or "/bin/bash"
    done = subprocess.run(  # noqa: S603 - the walkthrough's own commands
        [bash, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"step failed:\n{script}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_printed_walkthrough_ends_with_check_ins_in_crm(
    process_marker: str,  # noqa: F811 - the fixture imported from test_demo
    app_root: Path,
    host_env: pytest.MonkeyPatch,
) -> None:
    serve = Serve(app_root, process_marker)
    try:
        serve.wait_for(r"^Ready\. Press Ctrl-C")
        output = "".join(serve.seen)
        walkthrough = steps(output)
        assert walkthrough[0] == ["FUNC=http://localhost:7071"]
        page = re.search(r"^Admin page: (http://127\.0\.0\.1:\d+/api/admin)$", output, re.M)
        key = re.search(r"^  Function key \(the app's ADMIN_API_KEY; the page asks for it once\): (\S+)$", output, re.M)
        assert page and key, output
        with urllib.request.urlopen(page.group(1), timeout=30) as answer:  # noqa: S310 - 127.0.0.1
            assert answer.status == 200 and b"<title>ON24 webinar integration" in answer.read()
        org_route = "/api/orgs/3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b/webinar/status"
        status_url = page.group(1).replace("/api/admin", org_route)
        request = urllib.request.Request(status_url, headers={"x-functions-key": key.group(1)})  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - the real route behind the page
            assert json.loads(answer.read())["configured"] is False
        with pytest.raises(urllib.error.HTTPError) as refused:  # the page's key is the app's: no key, no answer
            urllib.request.urlopen(status_url, timeout=30)  # noqa: S310 - 127.0.0.1
        assert refused.value.code == 401
        assert sorted(walkthrough) == [0, 1, 2, 3, 4, 5, 6]

        # --write-local-settings: where func start reads it, the user's previous file kept in .sandbox/.
        settings = json.loads((app_root / "local.settings.json").read_text(encoding="utf-8"))
        [backup] = (app_root / ".sandbox").glob("local.settings.json.*.bak")
        assert "MY_OWN" in backup.read_text(encoding="utf-8")
        values = settings["Values"]
        assert values["REGISTRATIONS_QUEUE"] and values["PULL_METRICS_SCHEDULE"], "binding expressions resolve"
        for name, value in values.items():
            host_env.setenv(name, value)

        with LocalHost(ROOT, values) as host:
            stored = json.loads(run_step(walkthrough[1], host.url))
            assert stored["configured"] is True and stored["webinarIds"] == ["5551234"]

            run_step(walkthrough[2], host.url)
            milestone = serve.wait_for(r"(\d+) of \1 registrations are in ON24")
            for invocation in host.invocations:
                invocation.result(timeout=60)  # RegisterAttendee raised nothing

            run_step(walkthrough[3], host.url)
            serve.wait_for(r"the webinar ran: \d+ attendees")

            run_step(walkthrough[4], host.url)
            serve.wait_for(r"\d+ check-ins are in CRM")
            for invocation in host.invocations:
                invocation.result(timeout=120)

            checkins = json.loads(run_step(walkthrough[5], host.url))["value"]
            assert checkins, "no check-ins in the Dataverse stand-in"
            assert any(row["msevtmgt_viewingdurationinmins"] > 0 for row in checkins), "no viewing minutes"
            registered = int(re.search(r"(\d+) of", milestone).group(1))  # type: ignore[union-attr]
            assert len(checkins) <= registered

            status, removed = json_documents(run_step(walkthrough[6], host.url))
            assert status["configured"] is True and status["clientId"] == "22001"
            assert removed["removed"] is True and removed["configured"] is False
    finally:
        code = serve.stop()
    assert code == 0, "".join(serve.seen)
    assert "Traceback" not in "".join(serve.seen)
    assert_nothing_left(process_marker, pgid=serve.process.pid)
