"""``python -m sandbox serve``: Azurite and the stand-ins with the demo data, for a local Functions host.

Starts Azurite with blob, queue and table (so ``func start`` can use it as ``AzureWebJobsStorage``), the HTTPS
Key Vault stand-in (throwaway CA, a fresh credentials key), the ON24 stand-in (one account, one webinar that went
live two hours ago) and the Dataverse stand-in seeded with the demo's CRM org. Writes one queue message per CRM
registration to a folder and prints a walkthrough whose steps, run in order against ``func start``, go the whole
way: store the credentials (listing the webinar in ``webinarIds``), register everyone in ON24 through
RegisterAttendee *before* the webinar runs, run the webinar, pull the metrics, read the check-ins in the Dataverse
stand-in, and switch the integration off last. While it runs it reports progress (registrants in ON24, check-ins
in CRM), so each step can wait for the one before.

It also serves the admin page and the real admin routes over HTTP (``sandbox/host.py``, default
http://127.0.0.1:7072/api/admin, function key printed), in this process, against the same sandbox.

``--write-local-settings`` writes ``local.settings.json`` into the current directory, where ``func start`` reads it
(run both from the repository root); an existing file is first copied to ``.sandbox/``. ``--write-settings PATH``
writes it anywhere. Runs until Ctrl-C or SIGTERM, then stops everything it started.
"""

from __future__ import annotations

import argparse
import errno
import json
import secrets
import shutil
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox.demo import (
    CHECKINS,
    KEY_SECRET_NAME,
    ON24_CLIENT_ID,
    ON24_EVENT_ID,
    ORG_ID,
    CrmSeed,
    DemoFailure,
    Interrupted,
    Sandbox,
    SignalGuard,
    app_environment,
    ascii_slug,
    person_body,
    say,
    seed_crm,
    shut_down,
    start_sandbox,
)
from sandbox.host import DEFAULT_PORT, FunctionHost

SERVICE_BUS_PLACEHOLDER = (
    "Endpoint=sb://REPLACE-ME.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=REPLACE_ME"
)
FUNC_URL = "http://localhost:7071"
CHECKIN_COLUMNS = "msevtmgt_name,msevtmgt_viewingdurationinmins,msevtmgt_numberofquestionsasked,msevtmgt_checkintime"
REGISTERED_MILESTONE = "registrations are in ON24"
CHECKINS_MILESTONE = "check-ins are in CRM"


def local_settings(sandbox: Sandbox) -> dict[str, Any]:
    """``local.settings.json`` for ``func start`` against this sandbox."""
    values = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        **sandbox.app_settings(),
        # Service Bus has no local emulator here: the trigger stays off and the walkthrough runs RegisterAttendee
        # through the host's admin endpoint instead (a disabled function can still be run that way).
        "ServiceBusConnection": SERVICE_BUS_PLACEHOLDER,
        "AzureWebJobs.RegisterAttendee.Disabled": "true",
        "REGISTRATIONS_QUEUE": "webinar-registrations",
        "PULL_METRICS_SCHEDULE": "0 */1 * * * *",
        "RETRY_BUDGET_SECONDS": "15",
    }
    return {"IsEncrypted": False, "Values": values, "Host": {"LocalHttpPort": 7071}}


def write_messages(directory: Path, crm: CrmSeed) -> list[Path]:
    """One admin-endpoint body ``{"input": "<queue message>"}`` per registration (the canonical format)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, person in enumerate(crm.people, start=1):
        body = person_body(person, org_id=crm.org_id, event_id=crm.event_id)
        path = directory / f"{index:03d}-{ascii_slug(person.first)}-{ascii_slug(person.last)}.json"
        path.write_text(json.dumps({"input": json.dumps(body, ensure_ascii=False)}) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def write_local_settings(settings: dict[str, Any], directory: Path) -> Path:
    """Write ``local.settings.json`` where ``func start`` looks for it: the function app root (has host.json)."""
    if not (directory / "host.json").is_file():
        raise DemoFailure(f"{directory} has no host.json: run from the repository root, where 'func start' runs")
    target = directory / "local.settings.json"
    text = json.dumps(settings, indent=2) + "\n"
    if target.exists() and target.read_text(encoding="utf-8") != text:
        backups = directory / ".sandbox"
        backups.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        backup = backups / f"local.settings.json.{stamp}.bak"
        shutil.copy2(target, backup)
        say(f"Existing {target.name} copied to {backup}")
    target.write_text(text, encoding="utf-8")
    return target


def print_instructions(
    sandbox: Sandbox, crm: CrmSeed, settings: dict[str, Any], written: list[Path], messages: Path
) -> None:
    credentials = json.dumps(
        {
            "clientId": ON24_CLIENT_ID,
            "accessTokenKey": sandbox.on24_key,
            "accessTokenSecret": sandbox.on24_secret,
            "dataverseUrl": sandbox.dataverse.url,
            "webinarIds": [str(ON24_EVENT_ID)],
        }
    )
    route = f'"$FUNC/api/orgs/{ORG_ID}/webinar/credentials"'
    count = len(crm.people)
    say()
    say("local.settings.json" + (f" (written to {', '.join(map(str, written))})" if written else "") + ":")
    say(json.dumps(settings, indent=2))
    say()
    say("Notes:")
    say("  * Service Bus has no local emulator: RegisterAttendee's trigger is disabled and step 2 hands it each queue")
    say("    message through the host's admin endpoint (no key needed locally; a disabled function can still be run")
    say("    that way). Against a real queue, set ServiceBusConnection (or its identity-based form,")
    say("    ServiceBusConnection__fullyQualifiedNamespace) and AzureWebJobs.RegisterAttendee.Disabled=false, and")
    say("    send the same bodies to the queue.")
    say(f"  * REQUESTS_CA_BUNDLE trusts the throwaway CA of the Key Vault stand-in ({sandbox.vault.ca.ca_path});")
    say("    ports and the CA change on every start: write the settings again after a restart.")
    say("  * PULL_METRICS_SCHEDULE runs every minute here (production default: every 15 minutes).")
    say()
    say("Steps, in order, with 'func start' running in the repository root (in a second terminal):")
    say(f"  FUNC={FUNC_URL}")
    say("  # 1. Store the org's ON24 credentials (sandbox tokens, valid for this run); webinarIds names the webinar")
    say("  #    PullMetrics pulls.")
    say(f"  curl -sS -X PUT {route} -H 'Content-Type: application/json' -d '{credentials}'")
    say(f"  # 2. Register the {count} CRM registrants in ON24 before the webinar runs: RegisterAttendee gets one")
    say(f"  #    queue message each. Then wait until this window says '{count} of {count} {REGISTERED_MILESTONE}'.")
    say(
        f'  for f in {messages}/*.json; do curl -sS -X POST "$FUNC/admin/functions/RegisterAttendee" '
        "-H 'Content-Type: application/json' --data @\"$f\"; done"
    )
    say("  # 3. Run the webinar in the ON24 stand-in: the registrants become attendees with viewing minutes.")
    say(f"  curl -sS -X POST '{sandbox.on24.url}/sandbox/events/{ON24_EVENT_ID}/run'")
    say("  # 4. Run PullMetrics now instead of waiting for the timer; then wait until this window says")
    say(f"  #    '{CHECKINS_MILESTONE}'.")
    say("  curl -sS -X POST \"$FUNC/admin/functions/PullMetrics\" -H 'Content-Type: application/json' -d '{}'")
    say("  # 5. The check-ins in the Dataverse stand-in, as a CRM user sees them (viewing minutes, interactions).")
    say(
        f"  curl -sS '{sandbox.dataverse.url}/api/data/v9.2/{CHECKINS}?$select={CHECKIN_COLUMNS}' "
        "-H 'OData-MaxVersion: 4.0' -H 'OData-Version: 4.0' -H 'Accept: application/json'"
    )
    say("  # 6. Last: the org's status, then switch the integration off (from now on no ON24 call for this org).")
    say(f"  curl -sS {route}")
    say(f"  curl -sS -X DELETE {route}")
    say()
    say(
        f"CRM org {crm.org_id}: event {crm.event_id} (msevtmgt_webinarid {ON24_EVENT_ID}), "
        f"{len(crm.people) + 1} contacts and registrations; Key Vault secret '{KEY_SECRET_NAME}'."
    )


class Progress(threading.Thread):
    """Reports what the functions did to the stand-ins, so each walkthrough step can wait for the one before."""

    def __init__(self, sandbox: Sandbox, expected: int, stop: threading.Event) -> None:
        super().__init__(name="sandbox-progress", daemon=True)
        self._sandbox = sandbox
        self._expected = expected
        self._stop = stop

    def run(self) -> None:
        registered = attendees = checkins = 0
        while not self._stop.wait(0.5):
            try:
                now_registered = len(self._sandbox.on24.registrants(ON24_EVENT_ID))
                now_attendees = len(self._sandbox.on24.attendees(ON24_EVENT_ID))
                now_checkins = len(self._sandbox.dataverse.rows(CHECKINS))
            except Exception as exc:  # a report must never take the sandbox down
                say(f"(progress: {type(exc).__name__})")
                continue
            if now_registered != registered:
                registered = now_registered
                done = " - run the webinar (step 3)" if registered >= self._expected else ""
                say(f"[progress] {registered} of {self._expected} {REGISTERED_MILESTONE}{done}")
            if now_attendees != attendees:
                attendees = now_attendees
                say(f"[progress] the webinar ran: {attendees} attendees in ON24")
            if now_checkins != checkins:
                checkins = now_checkins
                say(f"[progress] {checkins} {CHECKINS_MILESTONE} (step 5 shows them)")


def start_host(port: int, function_key: str) -> FunctionHost:
    """The admin routes and the page over HTTP; another port if ``port`` is taken (said when it happens)."""
    root = Path(__file__).resolve().parents[1]
    try:
        host = FunctionHost(root, function_key=function_key, port=port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or port == 0:
            raise
        host = FunctionHost(root, function_key=function_key, port=0)
        say(f"(port {port} is in use: the page is served on port {host.server.server_address[1]} instead)")
    return host.start()


def print_page(sandbox: Sandbox, crm: CrmSeed, host: FunctionHost) -> None:
    """Where the admin page is, and what to type into it to connect the demo org."""
    say()
    say(f"Admin page: {host.page_url}")
    say(f"  Function key (the app's ADMIN_API_KEY; the page asks for it once): {host.function_key}")
    say(f"  To connect the demo org: Org ID {crm.org_id}, ON24 client ID {ON24_CLIENT_ID}, Access token key")
    say(f"  {sandbox.on24_key}, Access token secret {sandbox.on24_secret}, Webinar IDs {ON24_EVENT_ID},")
    say(f"  Dataverse URL {sandbox.dataverse.url}")
    say("  The admin routes are served there too (same key), e.g.")
    say(f"  curl -sS -H 'x-functions-key: {host.function_key}' '{host.url}/api/orgs/{crm.org_id}/webinar/status'")
    say()
    say("Ready. Press Ctrl-C to stop.")


def main(args: argparse.Namespace) -> int:
    """Serve until interrupted; 0 on Ctrl-C/SIGTERM, 1 if something could not start."""
    guard = SignalGuard().install()
    stack = ExitStack()
    stop = threading.Event()
    code = 0
    try:
        say("Starting Azurite (blob, queue, table) and the Key Vault, ON24 and Dataverse stand-ins")
        sandbox = start_sandbox(stack, guard, ("blob", "queue", "table"))
        crm = seed_crm(sandbox)
        workdir = Path(tempfile.mkdtemp(prefix="sandbox-serve-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        messages = workdir / "messages"
        write_messages(messages, crm)
        settings = local_settings(sandbox)
        written: list[Path] = []
        if args.write_local_settings:
            written.append(write_local_settings(settings, Path.cwd()))
        if args.write_settings:
            path = Path(args.write_settings)
            path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
            written.append(path)
        print_instructions(sandbox, crm, settings, written, messages)
        key = args.function_key or secrets.token_urlsafe(24)
        # the admin routes are anonymous at the host; the app itself wants this key (its ADMIN_API_KEY)
        admin = {"RETRY_BUDGET_SECONDS": "15", "ADMIN_API_KEY": key}
        stack.enter_context(app_environment({**sandbox.app_settings(), **admin}))
        host = start_host(args.port, key)
        stack.callback(host.close)
        print_page(sandbox, crm, host)
        stack.callback(stop.set)
        Progress(sandbox, len(crm.people), stop).start()
        while True:
            time.sleep(3600)
    except (Interrupted, KeyboardInterrupt):
        say()
        say("Stopping.")
    except (DemoFailure, OSError) as exc:
        print(f"serve: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        stop.set()
        shut_down(stack, guard)
    return code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--write-local-settings",
        action="store_true",
        help="write local.settings.json into the current directory (the repository root), where 'func start' reads it",
    )
    parser.add_argument("--write-settings", metavar="PATH", help="also write the local.settings.json to PATH")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port of the admin page and routes (default {DEFAULT_PORT})"
    )
    parser.add_argument("--function-key", help="the function key the routes require (default: a new random one)")
