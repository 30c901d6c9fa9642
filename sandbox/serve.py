"""``python -m sandbox serve``: Azurite and the stand-ins with the demo data, for a local Functions host.

Starts Azurite with blob, queue and table (so ``func start`` can use it as ``AzureWebJobsStorage``), the HTTPS
Key Vault stand-in (throwaway CA, a fresh credentials key), the ON24 stand-in (one account, one webinar that went
live two hours ago) and the Dataverse stand-in seeded with the demo's CRM org. Stores no credentials: that is the
first thing to try against the host (the curl command is printed). Prints a ready-to-paste
``local.settings.json`` (``--write-settings PATH`` also writes it) and runs until Ctrl-C or SIGTERM, then stops
everything it started.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sandbox.demo import (
    KEY_SECRET_NAME,
    ON24_CLIENT_ID,
    ON24_EVENT_ID,
    ORG_ID,
    CrmSeed,
    DemoFailure,
    Interrupted,
    Sandbox,
    SignalGuard,
    say,
    seed_crm,
    shut_down,
    start_sandbox,
)

SERVICE_BUS_PLACEHOLDER = (
    "Endpoint=sb://REPLACE-ME.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=REPLACE_ME"
)


def local_settings(sandbox: Sandbox) -> dict[str, Any]:
    """``local.settings.json`` for ``func start`` against this sandbox."""
    values = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        **sandbox.app_settings(),
        "ServiceBusConnection": SERVICE_BUS_PLACEHOLDER,
        "AzureWebJobs.RegisterAttendee.Disabled": "true",
        "REGISTRATIONS_QUEUE": "webinar-registrations",
        "PULL_METRICS_SCHEDULE": "0 */1 * * * *",
        "RETRY_BUDGET_SECONDS": "15",
    }
    return {"IsEncrypted": False, "Values": values, "Host": {"LocalHttpPort": 7071}}


def print_instructions(sandbox: Sandbox, crm: CrmSeed, settings: dict[str, Any], written: Path | None) -> None:
    body = json.dumps(
        {
            "clientId": ON24_CLIENT_ID,
            "accessTokenKey": sandbox.on24_key,
            "accessTokenSecret": sandbox.on24_secret,
            "dataverseUrl": sandbox.dataverse.url,
        }
    )
    route = f"http://localhost:7071/api/orgs/{ORG_ID}/webinar/credentials"
    say()
    say("local.settings.json" + (f" (also written to {written})" if written else "") + ":")
    say(json.dumps(settings, indent=2))
    say()
    say("Notes:")
    say("  * ServiceBusConnection is a placeholder: Service Bus has no local emulator here. RegisterAttendee is")
    say("    disabled (AzureWebJobs.RegisterAttendee.Disabled); put a real connection string (or")
    say("    ServiceBusConnection__fullyQualifiedNamespace) and set it to false to consume a real queue.")
    say(f"  * REQUESTS_CA_BUNDLE trusts the throwaway CA of the Key Vault stand-in ({sandbox.vault.ca.ca_path});")
    say("    ports and the CA change on every start: paste the settings again after a restart.")
    say("  * PULL_METRICS_SCHEDULE runs every minute here (production default: every 15 minutes).")
    say()
    say("With 'func start' running in the repository root:")
    say("  # store the org's ON24 credentials (sandbox tokens, valid for this run only)")
    say(f"  curl -sS -X PUT '{route}' -H 'Content-Type: application/json' -d '{body}'")
    say("  # status, then switch the integration off")
    say(f"  curl -sS '{route}'")
    say(f"  curl -sS -X DELETE '{route}'")
    say("  # simulate the webinar in the ON24 stand-in, then run PullMetrics now instead of waiting for the timer")
    say(f"  curl -sS -X POST '{sandbox.on24.url}/sandbox/events/{ON24_EVENT_ID}/run'")
    say(
        "  curl -sS -X POST 'http://localhost:7071/admin/functions/PullMetrics' -H 'Content-Type: application/json' "
        "-d '{}'"
    )
    say()
    say(
        f"CRM org {crm.org_id}: event {crm.event_id} (msevtmgt_webinarid {ON24_EVENT_ID}), "
        f"{len(crm.people) + 1} contacts and registrations; Key Vault secret '{KEY_SECRET_NAME}'."
    )
    say("Ready. Press Ctrl-C to stop.")


def main(args: argparse.Namespace) -> int:
    """Serve until interrupted; 0 on Ctrl-C/SIGTERM, 1 if something could not start."""
    guard = SignalGuard().install()
    stack = ExitStack()
    code = 0
    try:
        say("Starting Azurite (blob, queue, table) and the Key Vault, ON24 and Dataverse stand-ins")
        sandbox = start_sandbox(stack, guard, ("blob", "queue", "table"))
        crm = seed_crm(sandbox)
        settings = local_settings(sandbox)
        written: Path | None = None
        if args.write_settings:
            written = Path(args.write_settings)
            written.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        print_instructions(sandbox, crm, settings, written)
        while True:
            time.sleep(3600)
    except (Interrupted, KeyboardInterrupt):
        say()
        say("Stopping.")
    except (DemoFailure, OSError) as exc:
        print(f"serve: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        shut_down(stack, guard)
    return code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--write-settings", metavar="PATH", help="also write the local.settings.json to PATH")
