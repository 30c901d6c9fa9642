"""``python -m tools.replay`` end to end: kept rejected bodies re-submitted after a fix, and dead letters sent back,
until their outcome is in the ledger and in ON24.

Real parts: Azurite, the HTTPS Key Vault stand-in, the ON24 and Dataverse stand-ins, RegisterAttendee's ``main``.
Service Bus cannot run here: the queue is the in-memory stand-in of ``sandbox.servicebus``, and a message it holds
is handed to RegisterAttendee the way the host would deliver it.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from RegisterAttendee import main as register_main
from sandbox.servicebus import InMemoryServiceBus
from shared.app import get_app
from tests.builders import canonical_body
from tests.e2e.test_pull_metrics import ORG_A, Webinars
from tests.functions import service_bus_message
from tests.unit.test_replay_shell import QUEUE, Operator
from tools.replay import main as replay

ROOT = Path(__file__).resolve().parents[2]


def replay_with(*args: str, bus: InMemoryServiceBus | None = None, answer: str = "y") -> tuple[int, Operator]:
    operator = Operator(answer)
    code = replay(list(args), environ={}, bus=bus, app=get_app(), ask=operator.ask, out=operator.out)
    return code, operator


def deliver_from(bus: InMemoryServiceBus) -> None:
    """Hand every message on the stand-in queue to RegisterAttendee, as the host would (and take it off)."""
    for stored in bus.on_queue(QUEUE):
        register_main(
            service_bus_message(
                stored.body,
                message_id=stored.message_id,
                application_properties=stored.application_properties,
                enqueued_time=stored.enqueued_time_utc,
            )
        )
        bus.queues[QUEUE].remove(stored)


def flow_message(w: Webinars, email: str, **changes: Any) -> tuple[str, dict[str, Any]]:
    """A registration as a Power Automate flow sends it, whose time was formatted without its offset."""
    crm = w.crm[7001]
    reg = crm.registration(crm.contact("Zoe", "Ang", email))
    body = canonical_body(
        org_id=ORG_A,
        registration_id=reg,
        event_id=crm.event_id,
        webinar_id="7001",
        attendee={"email": email, "firstName": "Zoe", "lastName": "Ang"},
    )
    body["occurredAt"] = "2026-11-24T09:15:00"  # formatDateTime(utcNow(), 'yyyy-MM-ddTHH:mm:ss'): no offset
    body.update(changes)
    return reg, body


def test_a_rejected_body_fixed_by_a_documented_transform_is_registered(webinars: Webinars, on24: Any) -> None:
    reg, body = flow_message(webinars, "zoe@a.example")
    register_main(service_bus_message(body, message_id="flow-run-1"))
    app = get_app()
    assert app.ledger.get(ORG_A, reg) is None and on24.registrant(7001, "zoe@a.example") is None
    (kept,) = app.rejected.list()
    assert "occurredAt" in kept.reason and kept.org_id == ORG_A

    code, dry = replay_with("rejected", "--org", ORG_A, "--dry-run")
    assert (
        code == 0 and "STILL REJECTED" in dry.lines[0] and dry.lines[-1].endswith("would be rejected again (not sent)")
    )

    code, run = replay_with("rejected", "--org", ORG_A, "--transform", "assume-utc", "--yes")
    assert code == 0, run.lines
    assert run.lines[-1] == "sent 1 of 1: 1 handler: registered"
    entry = app.ledger.get(ORG_A, reg)
    assert entry is not None and entry.state == "registered" and entry.last_outcome == "registered"
    assert entry.last_message_at == datetime(2026, 11, 24, 9, 15, tzinfo=UTC), "ordered by the producer's time"
    registrant = on24.registrant(7001, "zoe@a.example")
    assert registrant is not None and registrant["exteventusercd"] == reg
    (kept,) = app.rejected.list()
    assert kept.replayed_at is not None and kept.replayed_as == "handler: registered"

    code, again = replay_with("rejected", "--org", ORG_A, "--transform", "assume-utc", "--yes")
    assert code == 0 and again.lines[-1].startswith("0 of 1 rejected selected"), "replayed once"


def test_a_rejected_body_goes_to_the_queue_when_there_is_a_broker(webinars: Webinars, on24: Any) -> None:
    reg, body = flow_message(webinars, "queued@a.example")
    register_main(service_bus_message(body, message_id="flow-run-2"))
    bus = InMemoryServiceBus()

    code, run = replay_with("rejected", "--transform", "assume-utc", "--yes", bus=bus)

    assert code == 0 and run.lines[-1] == "sent 1 of 1: 1 queue"
    (queued,) = bus.on_queue(QUEUE)
    assert queued.message_id == "flow-run-2" and queued.application_properties["replayedFrom"].startswith("rejected:")
    assert get_app().ledger.get(ORG_A, reg) is None, "nothing happens until RegisterAttendee receives it"
    deliver_from(bus)
    entry = get_app().ledger.get(ORG_A, reg)
    assert entry is not None and entry.state == "registered"
    assert on24.registrant(7001, "queued@a.example") is not None


def test_a_dead_letter_replayed_after_a_newer_change_keeps_its_place_in_the_order(
    webinars: Webinars, on24: Any
) -> None:
    """An update dead-lettered during an outage, a cancel processed since: the replayed update must not undo the
    cancel. A canonical message without ``occurredAt`` is ordered by its enqueue time, which a re-send changes."""
    w = webinars
    crm = w.crm[7001]
    now = datetime.now(UTC)

    def message(reg: str, action: str, email: str) -> dict[str, Any]:
        attendee = {"email": email, "firstName": "Ann", "lastName": "Lee"} if action != "cancel" else None
        return canonical_body(
            org_id=ORG_A, registration_id=reg, event_id=crm.event_id, action=action, webinar_id="7001",
            attendee=attendee,
        )  # fmt: skip

    bus = InMemoryServiceBus()
    regs = {}
    for name in ("replayed", "control"):
        email = f"{name}@a.example"
        reg = regs[name] = crm.registration(crm.contact("Ann", "Lee", email))
        register_main(service_bus_message(message(reg, "register", email), enqueued_time=now - timedelta(hours=3)))
        update = message(reg, "update", email)
        update["attendee"]["firstName"] = "Anne"
        # ON24 was down for 2 hours: the update failed 10 times and was dead-lettered...
        bus.add_dead_letter(QUEUE, json.dumps(update).encode(), enqueued_time=now - timedelta(hours=2))
        # ... and the registration was cancelled in CRM after that.
        register_main(service_bus_message(message(reg, "cancel", email), enqueued_time=now - timedelta(hours=1)))
        assert on24.registrant(7001, email)["isdeleted"] is True

    control = bus.in_dead_letters(QUEUE)[1]  # sent again as it was, by hand, it would win: the test can fail
    register_main(service_bus_message(control.body, enqueued_time=now))
    assert get_app().ledger.get(ORG_A, regs["control"]).state == "registered", "a naive re-send undoes the cancel"
    assert on24.registrant(7001, "control@a.example")["isdeleted"] is False

    code, run = replay_with("dead-letters", "--org", ORG_A, "--limit", "1", "--yes", bus=bus)
    assert code == 0 and "occurredAt set to the original time" in run.lines[0]
    deliver_from(bus)

    entry = get_app().ledger.get(ORG_A, regs["replayed"])
    assert entry is not None and entry.state == "cancelled", "the replayed update is older than the cancel: stale"
    assert on24.registrant(7001, "replayed@a.example")["isdeleted"] is True


# ---- the command as an operator runs it: a subprocess, its exit code, its two streams ----------------------------
def replay_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m tools.replay`` in a child process, standard input not a terminal (as in a pipeline)."""
    return subprocess.run(  # noqa: S603 - this venv's python on the repository's own tool
        [sys.executable, "-m", "tools.replay", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_the_exit_codes_apart_from_argparse_s_usage_error() -> None:
    for args in (["--help"], ["dead-letters", "--help"], ["rejected", "--help"]):
        shown = replay_process(*args)
        assert shown.returncode == 0 and shown.stderr == ""
        codes = dict(re.findall(r"^  ([0-9])  (.+)$", shown.stdout, re.M))
        assert set(codes) == {"0", "1", "2", "3", "4"}, shown.stdout
        assert codes["2"].startswith("usage error") and codes["4"].startswith("not confirmed")
    refused = replay_process("dead-letters", "--limit", "0")
    assert refused.returncode == 2 and refused.stdout == "" and "--limit must be at least 1" in refused.stderr


def test_without_service_bus_settings_it_says_so_on_stderr_and_exits_3() -> None:
    env = {name: "" for name in os.environ if name.startswith("ServiceBusConnection")}
    run = replay_process("dead-letters", "--dry-run", env=env)
    assert run.returncode == 3 and run.stdout == ""
    assert "no Service Bus configured" in run.stderr and "Traceback" not in run.stderr


def test_a_pipeline_without_yes_sends_nothing_and_with_yes_reports_json_lines(webinars: Webinars, on24: Any) -> None:
    reg, body = flow_message(webinars, "joerg.mueller@firma.de")
    register_main(service_bus_message(body, message_id="flow-run-3"))

    refused = replay_process("rejected", "--org", ORG_A, "--transform", "assume-utc", "--to", "handler")
    assert refused.returncode == 4 and "Traceback" not in refused.stderr
    assert "no terminal" in refused.stderr and "--yes" in refused.stderr
    assert (
        refused.stdout.splitlines()[-1]
        == "1 of 1 rejected selected; 1 to send to RegisterAttendee's handler in this process"
    )
    assert get_app().ledger.get(ORG_A, reg) is None, "nothing sent"

    done = replay_process("rejected", "--org", ORG_A, "--transform", "assume-utc", "--to", "handler", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["event"] for r in records] == ["selected", "plan", "sent", "summary"]
    assert records[2]["how"] == "handler: registered" and records[2]["messageId"] == "flow-run-3"
    assert records[3]["exitCode"] == 0 and records[3]["outcomes"] == {"handler: registered": 1}
    assert "mueller" not in done.stdout.lower(), "no address is printed"
    entry = get_app().ledger.get(ORG_A, reg)
    assert entry is not None and entry.state == "registered"


def test_the_tool_imports_no_test_or_sandbox_code() -> None:
    for path in sorted((ROOT / "tools").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not [n for n in names if n.split(".")[0] in {"sandbox", "tests"}], f"{path.name} imports {names}"
