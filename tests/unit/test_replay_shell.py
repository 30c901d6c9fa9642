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
    """Answers the confirmation and records what the tool printed."""

    def __init__(self, answer: str = "y") -> None:
        self.answer, self.lines, self.asked = answer, [], []  # type: tuple[str, list[str], list[str]]

    def ask(self, question: str) -> str:
        self.asked.append(question)
        return self.answer

    def out(self, line: str) -> None:
        self.lines.append(line)


def run(bus: InMemoryServiceBus, *args: str, answer: str = "y") -> tuple[int, Operator]:
    operator = Operator(answer)
    code = main(["dead-letters", *args], environ={}, bus=bus, ask=operator.ask, out=operator.out, now=NOW)
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
    assert code == 3 and operator.asked == ["Send 3 messages to queue 'webinar-registrations'? [y/N] "]
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
    assert code == 1 and any(line.startswith("stopped: ServiceBusConnectionError") for line in operator.lines)
    assert operator.lines[-1] == "sent 1 of 3: 1 queue"
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
    assert main(["dead-letters"], environ={}, ask=operator.ask, out=operator.out) == 2
    assert "ServiceBusConnection" in operator.lines[0]


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
