"""An in-memory stand-in for the part of ``azure-servicebus`` that ``tools.replay`` uses. No broker runs here.

It has the methods, keyword arguments and settle rules of ``ServiceBusClient.get_queue_receiver`` /
``get_queue_sender``, ``ServiceBusReceiver.peek_messages`` / ``receive_messages`` / ``complete_message`` /
``abandon_message`` and ``ServiceBusSender.send_messages`` (``tests/unit/test_replay_shell.py`` compares the
signatures with the SDK's):

- a peeked message cannot be settled; a received one is locked until it is completed or abandoned, and a locked
  message is not received again; completing or abandoning it twice raises ``MessageAlreadySettled``;
- abandoning adds one to the delivery count; completing removes the message;
- received messages carry their application properties as the SDK returns them: ``bytes`` keys and string
  values; the body is a generator of ``bytes`` sections; ``send_messages`` takes real ``ServiceBusMessage``
  objects only.

What it does not do: lock expiry and renewal, sessions, scheduling, time to live, duplicate detection, and a
closed receiver's locks are released at once (the real ones expire after the queue's lock duration).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.exceptions import MessageAlreadySettled, ServiceBusConnectionError


@dataclass
class _Stored:
    sequence_number: int
    body: bytes
    message_id: str | None
    content_type: str | None
    application_properties: dict[str, Any]
    enqueued_time_utc: datetime
    delivery_count: int = 0
    dead_letter_reason: str | None = None
    dead_letter_error_description: str | None = None
    locked_by: object | None = None


class StandInReceivedMessage:
    """What a receiver hands out: the attributes of ``ServiceBusReceivedMessage`` that the tool reads."""

    def __init__(self, stored: _Stored, *, peeked: bool) -> None:
        self._stored = stored
        self.peeked = peeked
        self.settled = False
        self.sequence_number = stored.sequence_number
        self.message_id = stored.message_id
        self.content_type = stored.content_type
        self.enqueued_time_utc = stored.enqueued_time_utc
        self.delivery_count = stored.delivery_count
        self.dead_letter_reason = stored.dead_letter_reason
        self.dead_letter_error_description = stored.dead_letter_error_description
        self.application_properties: dict[bytes, Any] | None = {
            k.encode(): v.encode() if isinstance(v, str) else v for k, v in stored.application_properties.items()
        } or None

    @property
    def body(self) -> Iterator[bytes]:
        yield self._stored.body


@dataclass
class InMemoryServiceBus:
    """A namespace with queues and their dead-letter queues, standing in for ``ServiceBusClient``."""

    queues: dict[str, list[_Stored]] = field(default_factory=dict)
    dead_letters: dict[str, list[_Stored]] = field(default_factory=dict)
    fail_sends_after: int | None = None
    """Raise ``ServiceBusConnectionError`` on every send after this many (a broker that went away)."""
    sends: int = 0
    _sequence: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # ---- for tests --------------------------------------------------------------------------------------------
    def add_dead_letter(
        self,
        queue: str,
        body: bytes,
        *,
        reason: str = "MaxDeliveryCountExceeded",
        description: str | None = "Message could not be consumed after 10 delivery attempts.",
        message_id: str | None = None,
        enqueued_time: datetime | None = None,
        application_properties: dict[str, Any] | None = None,
        content_type: str | None = "application/json",
    ) -> int:
        stored = _Stored(
            next(self._sequence),
            body,
            message_id,
            content_type,
            dict(application_properties or {}),
            enqueued_time or datetime.now(UTC),
            delivery_count=10,
            dead_letter_reason=reason,
            dead_letter_error_description=description,
        )
        self.dead_letters.setdefault(queue, []).append(stored)
        return stored.sequence_number

    def on_queue(self, queue: str) -> list[_Stored]:
        return list(self.queues.get(queue, []))

    def in_dead_letters(self, queue: str) -> list[_Stored]:
        return list(self.dead_letters.get(queue, []))

    # ---- the ServiceBusClient surface ---------------------------------------------------------------------------
    def get_queue_receiver(
        self,
        queue_name: str,
        *,
        sub_queue: ServiceBusSubQueue | str | None = None,
        receive_mode: ServiceBusReceiveMode | str = ServiceBusReceiveMode.PEEK_LOCK,
        max_wait_time: float | None = None,
        **kwargs: Any,
    ) -> _Receiver:
        if sub_queue not in (None, ServiceBusSubQueue.DEAD_LETTER, "deadletter"):
            raise ValueError(f"unsupported sub_queue {sub_queue!r}")
        store = self.dead_letters if sub_queue is not None else self.queues
        return _Receiver(store.setdefault(queue_name, []), ServiceBusReceiveMode(receive_mode))

    def get_queue_sender(self, queue_name: str, **kwargs: Any) -> _Sender:
        return _Sender(self, queue_name)

    def close(self) -> None:
        return None

    def __enter__(self) -> InMemoryServiceBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Receiver:
    def __init__(self, messages: list[_Stored], mode: ServiceBusReceiveMode) -> None:
        self._messages = messages
        self._mode = mode
        self._locked: list[_Stored] = []

    def peek_messages(
        self, max_message_count: int = 1, *, sequence_number: int = 0, timeout: float | None = None, **kwargs: Any
    ) -> list[StandInReceivedMessage]:
        found = sorted((m for m in self._messages if m.sequence_number >= sequence_number), key=_by_sequence)
        return [StandInReceivedMessage(m, peeked=True) for m in found[:max_message_count]]

    def receive_messages(
        self, max_message_count: int | None = 1, max_wait_time: float | None = None
    ) -> list[StandInReceivedMessage]:
        available = sorted((m for m in self._messages if m.locked_by is None), key=_by_sequence)
        taken = available[: max_message_count or 1]
        for stored in taken:
            stored.delivery_count += 1
            if self._mode == ServiceBusReceiveMode.RECEIVE_AND_DELETE:
                self._messages.remove(stored)
            else:
                stored.locked_by = self
                self._locked.append(stored)
        return [StandInReceivedMessage(m, peeked=False) for m in taken]

    def complete_message(self, message: StandInReceivedMessage) -> None:
        stored = self._settle(message)
        self._messages.remove(stored)

    def abandon_message(self, message: StandInReceivedMessage) -> None:
        stored = self._settle(message)
        stored.locked_by = None

    def _settle(self, message: StandInReceivedMessage) -> _Stored:
        if message.peeked:
            raise ValueError("The operation requires the message to be received in PEEK_LOCK mode")
        if message.settled or message._stored.locked_by is not self:
            raise MessageAlreadySettled(action="settle")
        message.settled = True
        self._locked.remove(message._stored)
        return message._stored

    def close(self) -> None:
        for stored in self._locked:
            stored.locked_by = None
        self._locked.clear()

    def __enter__(self) -> _Receiver:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Sender:
    def __init__(self, bus: InMemoryServiceBus, queue: str) -> None:
        self._bus = bus
        self._queue = queue

    def send_messages(
        self, message: ServiceBusMessage | list[ServiceBusMessage], *, timeout: float | None = None
    ) -> None:
        for item in message if isinstance(message, list) else [message]:
            if not isinstance(item, ServiceBusMessage):
                raise TypeError("send_messages takes ServiceBusMessage objects")
            if self._bus.fail_sends_after is not None and self._bus.sends >= self._bus.fail_sends_after:
                raise ServiceBusConnectionError(message="the stand-in broker went away")
            self._bus.sends += 1
            properties = {
                (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else v)
                for k, v in (item.application_properties or {}).items()
            }
            self._bus.queues.setdefault(self._queue, []).append(
                _Stored(
                    next(self._bus._sequence),
                    b"".join(item.body),
                    item.message_id,
                    item.content_type,
                    properties,
                    datetime.now(UTC),
                )
            )

    def close(self) -> None:
        return None

    def __enter__(self) -> _Sender:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _by_sequence(stored: _Stored) -> int:
    return stored.sequence_number
