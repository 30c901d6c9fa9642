"""tools.replay's Service Bus side: reading dead letters and moving them back to the queue (``azure-servicebus``).

Kept apart from the command (tools/replay.py) so each stays short; the selection rules are in tools/replay_rules.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.messages import org_id_hint
from tools.replay_rules import Candidate, Prepared

PAGE = 100  # messages per peek or receive
RECEIVE_WAIT_SECONDS = 5.0


# ---- Service Bus ---------------------------------------------------------------------------------------------------
def connect(environ: Mapping[str, str], namespace: str | None = None) -> Any | None:
    """A ``ServiceBusClient`` from the app's connection settings, or None when none is configured."""
    from azure.servicebus import ServiceBusClient

    connection = (environ.get("ServiceBusConnection") or "").strip()
    namespace = namespace or (environ.get("ServiceBusConnection__fullyQualifiedNamespace") or "").strip()
    if connection and not namespace:
        return ServiceBusClient.from_connection_string(connection)
    if namespace:
        from azure.identity import DefaultAzureCredential

        return ServiceBusClient(namespace, DefaultAzureCredential())
    return None


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _body(message: Any) -> bytes:
    body = message.body
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return b"".join(bytes(part) for part in body)  # a data body: a generator of sections


def dead_letter_candidate(message: Any) -> Candidate:
    """A received (or peeked) dead-lettered message as a candidate."""
    body = _body(message)
    reason = " - ".join(part for part in (message.dead_letter_reason, message.dead_letter_error_description) if part)
    properties = {_text(k): _text(v) for k, v in (message.application_properties or {}).items()}
    return Candidate(
        source="dead-letter",
        ref=str(message.sequence_number),
        message_id=str(message.message_id or ""),
        body=body,
        reason=reason or "(no reason given)",
        at=message.enqueued_time_utc,
        org_id=org_id_hint(body),
        content_type=message.content_type,
        application_properties=properties,
    )


def outgoing(prepared: Prepared) -> Any:
    """The message to send: the prepared body, the original id and properties, and where it comes from."""
    from azure.servicebus import ServiceBusMessage

    candidate = prepared.candidate
    properties: dict[str | bytes, Any] = {}
    for name, value in candidate.application_properties.items():
        properties[name] = value
    properties["replayedFrom"] = f"{candidate.source}:{candidate.ref}"
    return ServiceBusMessage(
        prepared.body,
        content_type="application/json",
        message_id=candidate.message_id or None,
        application_properties=properties,
    )


def peek_dead_letters(client: Any, queue: str, *, most: int) -> list[Candidate]:
    """Up to ``most`` dead-lettered messages, without locking or changing them."""
    from azure.servicebus import ServiceBusSubQueue

    found: list[Candidate] = []
    with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
        sequence = 0
        while len(found) < most:
            batch = receiver.peek_messages(max_message_count=min(PAGE, most - len(found)), sequence_number=sequence)
            if not batch:
                break
            found.extend(dead_letter_candidate(message) for message in batch)
            sequence = max(message.sequence_number for message in batch) + 1
    return found


@dataclass
class MoveResult:
    moved: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """Selected but no longer in the dead-letter queue (moved or expired meanwhile)."""


Sent = Callable[[Prepared, str], None]
"""Called once per message that was sent, with how (``queue``, ``handler: registered``)."""


def move_dead_letters(client: Any, queue: str, chosen: Sequence[Prepared], on_sent: Sent) -> MoveResult:
    """Send each chosen dead letter to the queue, then complete it.

    Receiving is in sequence order, so an unchosen message in front of a chosen one must stay locked until the
    receiver is past it; it is abandoned as soon as that chosen one has moved, and one with nothing chosen behind
    it is abandoned at once. The scan stops at the first message beyond the last chosen one: a chosen message
    not seen by then has left the dead-letter queue.
    """
    from azure.servicebus import ServiceBusReceiveMode, ServiceBusSubQueue

    wanted = {int(p.candidate.ref): p for p in chosen}
    result = MoveResult()
    held: list[Any] = []
    with (
        client.get_queue_receiver(
            queue,
            sub_queue=ServiceBusSubQueue.DEAD_LETTER,
            receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
            max_wait_time=RECEIVE_WAIT_SECONDS,
        ) as receiver,
        client.get_queue_sender(queue) as sender,
    ):
        try:
            while wanted:
                batch = receiver.receive_messages(max_message_count=PAGE, max_wait_time=RECEIVE_WAIT_SECONDS)
                if not batch:
                    break
                moved_any = past_the_last = False
                for message in batch:
                    chosen_one = wanted.pop(message.sequence_number, None)
                    if chosen_one is None:
                        if not wanted or message.sequence_number > max(wanted):
                            past_the_last = True
                            receiver.abandon_message(message)  # nothing chosen behind it: release it now
                        else:
                            held.append(message)
                        continue
                    sender.send_messages(outgoing(chosen_one))
                    receiver.complete_message(message)
                    result.moved.append(chosen_one.candidate.ref)
                    moved_any = True
                    on_sent(chosen_one, "queue")
                if moved_any or past_the_last:
                    _release(receiver, held)  # they come back first on the next receive, and are passed again
                if past_the_last:
                    break
        finally:
            _release(receiver, held)
    result.missing = [str(sequence) for sequence in wanted]
    return result


def _release(receiver: Any, held: list[Any]) -> None:
    while held:
        receiver.abandon_message(held.pop())
