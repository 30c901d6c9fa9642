"""tools.replay's Service Bus shell against the in-memory stand-in (``sandbox.servicebus``): no broker runs here.

The stand-in is checked against the SDK's own signatures first, so the shell cannot call a method or keyword the
real receiver or sender lacks.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusReceiver, ServiceBusSender

from sandbox.servicebus import InMemoryServiceBus, _Receiver, _Sender
from tests.unit.test_replay_rules import ORG, canonical
from tools.replay import connect, main

QUEUE = "webinar-registrations"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
OTHER = "1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6"


@pytest.mark.parametrize(
    ("stand_in", "real"),
    [
        (InMemoryServiceBus.get_queue_receiver, ServiceBusClient.get_queue_receiver),
        (InMemoryServiceBus.get_queue_sender, ServiceBusClient.get_queue_sender),
        (_Receiver.peek_messages, ServiceBusReceiver.peek_messages),
        (_Receiver.receive_messages, ServiceBusReceiver.receive_messages),
        (_Receiver.complete_message, ServiceBusReceiver.complete_message),
        (_Receiver.abandon_message, ServiceBusReceiver.abandon_message),
        (_Sender.send_messages, ServiceBusSender.send_messages),
    ],
)
def test_the_stand_in_has_the_sdks_methods_and_keywords(stand_in: Callable[..., Any], real: Callable[..., Any]) -> None:
    ours = {n: p for n, p in inspect.signature(stand_in).parameters.items() if p.kind != p.VAR_KEYWORD}
    theirs = inspect.signature(real).parameters
    for name, parameter in ours.items():
        assert name in theirs, f"{stand_in.__qualname__}: the SDK has no parameter {name!r}"
        assert parameter.kind == theirs[name].kind, f"{stand_in.__qualname__}: {name!r} is passed differently"


class Operator:
    """Answers the confirmation and records what the tool printed (standard output and standard error apart)."""

    def __init__(self, answer: str = "y") -> None:
        self.answer, self.lines, self.asked = answer, [], []  # type: tuple[str, list[str], list[str]]
        self.errors: list[str] = []

    def ask(self, question: str) -> str:
        self.asked.append(question)
        return self.answer

    def out(self, line: str) -> None:
        self.lines.append(line)

    def err(self, line: str) -> None:
        self.errors.append(line)


def run(bus: InMemoryServiceBus, *args: str, answer: str = "y") -> tuple[int, Operator]:
    operator = Operator(answer)
    code = main(
        ["dead-letters", *args], environ={}, bus=bus, ask=operator.ask, out=operator.out, err=operator.err, now=NOW
    )
    return code, operator


@pytest.fixture
def bus() -> InMemoryServiceBus:
    bus = InMemoryServiceBus()
    bus.add_dead_letter(
        QUEUE, json.dumps(canonical()).encode(), message_id="old", enqueued_time=NOW - timedelta(days=2)
    )
    bus.add_dead_letter(
        QUEUE,
        json.dumps(canonical(orgId=OTHER, occurredAt="2026-11-24T10:00:00Z")).encode(),
        message_id="other-org",
        enqueued_time=NOW - timedelta(hours=2),
        application_properties={"http://schemas.microsoft.com/xrm/2011/Claims/RequestName": "Create"},
    )
    bus.add_dead_letter(
        QUEUE,
        json.dumps(canonical()).encode(),
        message_id="expired",
        reason="TTLExpiredException",
        description=None,
        enqueued_time=NOW - timedelta(hours=1),
    )
    return bus


def test_dry_run_lists_and_counts_and_moves_nothing(bus: InMemoryServiceBus) -> None:
    code, operator = run(bus, "--dry-run")
    assert code == 0 and operator.asked == []
    assert operator.lines[-1] == "3 of 3 dead-letters selected; 3 to send to queue 'webinar-registrations'"
    assert len(bus.in_dead_letters(QUEUE)) == 3 and bus.on_queue(QUEUE) == []
    assert all(d.delivery_count == 10 for d in bus.in_dead_letters(QUEUE)), "peeked, never locked"
    assert "zoe" not in " ".join(operator.lines).lower(), "no body is printed"


def test_declining_the_confirmation_sends_nothing(bus: InMemoryServiceBus) -> None:
    code, operator = run(bus, answer="n")
    assert (
        code == 4
        and operator.errors == ["nothing sent"]
        and operator.asked == ["Send 3 messages to queue 'webinar-registrations'? [y/N] "]
    )
    assert bus.on_queue(QUEUE) == [] and len(bus.in_dead_letters(QUEUE)) == 3


def test_selected_dead_letters_go_back_to_the_queue_and_the_others_stay(bus: InMemoryServiceBus) -> None:
    code, operator = run(bus, "--reason", "maxdelivery", "--org", ORG.upper())
    assert code == 0, operator.lines
    assert operator.lines[-1] == "sent 1 of 1: 1 queue"
    (sent,) = bus.on_queue(QUEUE)
    assert sent.message_id == "old" and sent.content_type == "application/json"
    body = json.loads(sent.body)
    assert body["occurredAt"] == (NOW - timedelta(days=2)).isoformat(), "its place in the order is kept"
    assert sent.application_properties["replayedFrom"].startswith("dead-letter:")
    left = {d.message_id: d for d in bus.in_dead_letters(QUEUE)}
    assert set(left) == {"other-org", "expired"}
    assert left["other-org"].delivery_count == 11 and left["other-org"].locked_by is None, "abandoned, not lost"


def test_properties_and_a_body_with_its_own_time_travel_unchanged(bus: InMemoryServiceBus) -> None:
    original = bus.in_dead_letters(QUEUE)[1].body
    assert run(bus, "--org", OTHER, "--yes")[0] == 0
    (sent,) = bus.on_queue(QUEUE)
    assert sent.body == original
    assert sent.application_properties["http://schemas.microsoft.com/xrm/2011/Claims/RequestName"] == "Create"


def test_age_filters(bus: InMemoryServiceBus) -> None:
    assert run(bus, "--older-than", "90m", "--newer-than", "1d", "--yes")[0] == 0
    assert [m.message_id for m in bus.on_queue(QUEUE)] == ["other-org"]


def test_a_broker_failure_midway_loses_nothing(bus: InMemoryServiceBus) -> None:
    bus.fail_sends_after = 1
    code, operator = run(bus, "--yes")
    assert code == 1 and operator.errors[0].startswith("stopped: ServiceBusConnectionError"), "errors to stderr"
    assert operator.lines[-1] == "sent 1 of 3: 1 queue"
    assert operator.lines[-2].startswith("[1/3] dead-letter ") and operator.lines[-2].endswith(": queue")
    assert [m.message_id for m in bus.on_queue(QUEUE)] == ["old"]
    assert {d.message_id for d in bus.in_dead_letters(QUEUE)} == {"other-org", "expired"}, "completed only if sent"
    assert all(d.locked_by is None for d in bus.in_dead_letters(QUEUE))


def test_nothing_selected_asks_nothing(bus: InMemoryServiceBus) -> None:
    code, operator = run(bus, "--reason", "no such reason")
    assert code == 0 and operator.asked == [] and bus.on_queue(QUEUE) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--org", "not an org!"], "--org"), (["--older-than", "soon"], "not an age"), (["--limit", "0"], "--limit")],
)
def test_bad_arguments_are_refused_before_anything_happens(
    bus: InMemoryServiceBus, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        run(bus, *args)
    assert exited.value.code == 2 and message in capsys.readouterr().err
    assert len(bus.in_dead_letters(QUEUE)) == 3


def test_without_a_broker_dead_letters_cannot_be_reached() -> None:
    operator = Operator()
    assert main(["dead-letters"], environ={}, ask=operator.ask, out=operator.out, err=operator.err) == 3
    assert "ServiceBusConnection" in operator.errors[0] and operator.lines == []


def test_connect_uses_the_apps_connection_settings_without_touching_the_network() -> None:
    assert connect({}) is None
    key = "c2VjcmV0LWtleS1ub3QtcmVhbA=="
    client = connect(
        {
            "ServiceBusConnection": f"Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=x;SharedAccessKey={key}"
        }
    )
    assert isinstance(client, ServiceBusClient) and client.fully_qualified_namespace == "contoso.servicebus.windows.net"
    identity = connect({"ServiceBusConnection__fullyQualifiedNamespace": "contoso.servicebus.windows.net"})
    assert isinstance(identity, ServiceBusClient)


def test_each_message_sent_prints_a_progress_line(bus: InMemoryServiceBus) -> None:
    code, operator = run(bus, "--yes")
    assert code == 0
    progress = [line for line in operator.lines if line.startswith("[")]
    assert [line.split()[0] for line in progress] == ["[1/3]", "[2/3]", "[3/3]"]
    assert "message other-org org " + OTHER in progress[1] and progress[1].endswith(": queue")
    assert operator.lines[-1] == "sent 3 of 3: 3 queue"


def test_json_lines_describe_the_plan_each_message_and_the_outcome(bus: InMemoryServiceBus) -> None:
    code, operator = run(bus, "--org", OTHER, "--yes", "--json")
    records = [json.loads(line) for line in operator.lines]
    assert code == 0 and [r["event"] for r in records] == ["selected", "plan", "sent", "summary"]
    selected, plan, sent, summary = records
    assert selected["messageId"] == "other-org" and selected["orgId"] == OTHER and selected["ready"] is True
    assert selected["ageSeconds"] == 7200 and "body" not in selected
    assert plan["selected"] == 1 and plan["candidates"] == 3 and plan["toSend"] == 1
    assert sent["index"] == 1 and sent["total"] == 1 and sent["how"] == "queue"
    assert summary == {"event": "summary", "sent": 1, "toSend": 1, "outcomes": {"queue": 1}, "exitCode": 0}


def test_without_a_terminal_and_without_yes_nothing_is_sent(
    bus: InMemoryServiceBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ask given and stdin not a terminal (a pipeline, a scheduler): a clear refusal, no prompt, no traceback."""
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    operator = Operator()
    code = main(["dead-letters"], environ={}, bus=bus, out=operator.out, err=operator.err, now=NOW)
    assert code == 4 and "--yes" in operator.errors[0] and "terminal" in operator.errors[0]
    assert bus.on_queue(QUEUE) == [] and len(bus.in_dead_letters(QUEUE)) == 3


def test_dead_letters_beyond_the_selection_are_never_locked_and_a_gap_ends_the_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A selected message that left meanwhile must not make the tool lock the whole dead-letter queue: the scan
    stops at the first message beyond the selection and releases it at once; nothing further is ever received."""
    from tools import replay_bus
    from tools.replay_rules import prepare

    monkeypatch.setattr(replay_bus, "PAGE", 4)
    bus = InMemoryServiceBus()
    for n in range(40):
        body = json.dumps(canonical(orgId=ORG if n in (0, 2) else OTHER)).encode()
        bus.add_dead_letter(QUEUE, body, message_id=f"m{n}", enqueued_time=NOW - timedelta(hours=1))
    with bus.get_queue_receiver(QUEUE, sub_queue="deadletter") as peeker:
        first, _, third = (replay_bus.dead_letter_candidate(m) for m in peeker.peek_messages(3))
    gone = bus.dead_letters[QUEUE].pop(2)  # the second selected one: moved by another operator after the listing
    assert gone.message_id == "m2"
    moved: list[str] = []
    result = replay_bus.move_dead_letters(
        bus, QUEUE, [prepare(first), prepare(third)], lambda p, _: moved.append(p.candidate.message_id)
    )
    assert moved == ["m0"] and result.missing == [third.ref]
    left = bus.in_dead_letters(QUEUE)
    assert all(m.locked_by is None for m in left), "every lock released"
    never = [m.message_id for m in left if m.delivery_count == 10]
    assert len(never) >= 33 and "m39" in never, "messages beyond the selection were never received"
