"""``python -m tools.replay``: send dead-lettered messages back to the queue, and re-submit kept rejected bodies.

    python -m tools.replay dead-letters [--reason R] [--org ORG] [--older-than AGE] [--newer-than AGE]
                                        [--limit N] [--dry-run] [--yes]
    python -m tools.replay rejected [--transform assume-utc] [--reason R] [--org ORG] [--older-than AGE]
                                    [--newer-than AGE] [--include-replayed] [--to queue|handler]
                                    [--limit N] [--dry-run] [--yes]

Run from a checkout with the app's settings in the environment (the names of ``local.settings.json``): Service
Bus through ``ServiceBusConnection`` (a connection string) or ``ServiceBusConnection__fullyQualifiedNamespace``
(the signed-in identity, ``DefaultAzureCredential``), the queue from ``REGISTRATIONS_QUEUE``; the kept bodies
from the state storage settings. It lists what it selected (ids, age, org, reason, never a body), says how many
it will send, and asks before it acts (``--yes`` skips the question, ``--dry-run`` stops after the list).

Dead letters are moved with ``azure-servicebus``: received from ``<queue>/$DeadLetterQueue`` (peek-lock), sent
to the queue, and only then completed; a message that was not selected is abandoned back to the dead-letter
queue at the end, so a crash anywhere leaves each message in the dead-letter queue, on the queue, or (sent
and not completed yet) in both: a duplicate, which the ledger turns into a no-op.

Kept rejected bodies are sent to the queue when a Service Bus connection is configured (they then take the
normal path: ordering, parking, retries) and otherwise handed straight to RegisterAttendee's handler in this
process (``--to handler``; it needs the app's ON24, Key Vault and Dataverse settings, e.g. in the sandbox).
Only bodies that now parse are sent; each is marked replayed in its ``~rejected`` row.

The selection and the transforms are pure (``tools.replay_rules``); this module is the thin shell around them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.ids import canonical_org_id
from shared.messages import org_id_hint
from shared.settings import REGISTRATIONS_QUEUE
from tools.replay_rules import TRANSFORMS, Candidate, Filters, Prepared, describe, parse_age, prepare, select

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
    """Send each chosen dead letter to the queue, then complete it; abandon every other one received."""
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
                for message in batch:
                    held.append(message)
                    chosen_one = wanted.pop(message.sequence_number, None)
                    if chosen_one is None:
                        continue
                    sender.send_messages(outgoing(chosen_one))
                    receiver.complete_message(message)
                    held.pop()
                    result.moved.append(chosen_one.candidate.ref)
                    on_sent(chosen_one, "queue")
        finally:
            for message in held:
                receiver.abandon_message(message)
    result.missing = [str(sequence) for sequence in wanted]
    return result


# ---- kept rejected bodies --------------------------------------------------------------------------------------------
class RejectedStore(Protocol):
    def list(self) -> Iterable[Any]: ...
    def mark_replayed(self, key: str, how: str, *, at: datetime | None = None) -> bool: ...


def rejected_candidates(store: RejectedStore) -> list[Candidate]:
    return [
        Candidate(
            source="rejected",
            ref=kept.key,
            message_id=kept.message_id,
            body=kept.body,
            reason=kept.reason,
            at=kept.rejected_at,
            org_id=kept.org_id or org_id_hint(kept.body),
            replayed_at=kept.replayed_at,
        )
        for kept in store.list()
    ]


Send = Callable[[Sequence[Prepared], Sent], None]


def to_queue(client: Any, queue: str) -> tuple[str, Send]:
    def send(chosen: Sequence[Prepared], on_sent: Sent) -> None:
        with client.get_queue_sender(queue) as sender:
            for prepared in chosen:
                sender.send_messages(outgoing(prepared))
                on_sent(prepared, "queue")

    return f"queue {queue!r}", send


def to_handler(app: Any) -> tuple[str, Send]:
    """RegisterAttendee's own handler in this process, given the message as the Functions host would."""
    from sandbox.triggers import service_bus_message
    from shared.entrypoints.queue import process_registration_message

    def send(chosen: Sequence[Prepared], on_sent: Sent) -> None:
        for prepared in chosen:
            candidate = prepared.candidate
            message = service_bus_message(
                prepared.body, message_id=candidate.message_id or None, enqueued_time=candidate.at
            )
            on_sent(prepared, f"handler: {process_registration_message(message, app).status}")

    return "RegisterAttendee's handler in this process", send


def _age(text: str) -> timedelta:
    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---- the command -----------------------------------------------------------------------------------------------------
def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    summary = (__doc__ or "").split("\n\n")[0].replace("``", "")
    parser = argparse.ArgumentParser(prog="python -m tools.replay", description=summary)
    commands = parser.add_subparsers(dest="command", required=True)
    dead = commands.add_parser("dead-letters", help="move dead-lettered messages back to the queue")
    kept = commands.add_parser("rejected", help="re-submit kept rejected bodies after a fix")
    for sub in (dead, kept):
        sub.add_argument("--reason", help="part of the reason (case-insensitive)")
        sub.add_argument("--org", help="only messages naming this org id")
        sub.add_argument("--older-than", type=_age, help="only messages older than this (90m, 12h, 3d, 2w)")
        sub.add_argument("--newer-than", type=_age, help="only messages at most this old")
        sub.add_argument("--limit", type=int, help="at most this many messages")
        sub.add_argument("--queue", help="the registrations queue (default: REGISTRATIONS_QUEUE)")
        sub.add_argument("--namespace", help="<name>.servicebus.windows.net, signed in with DefaultAzureCredential")
        sub.add_argument("--dry-run", action="store_true", help="list what would be sent, send nothing")
        sub.add_argument("--yes", action="store_true", help="do not ask before sending")
    dead.add_argument("--scan", type=int, default=10_000, help="look at most at this many dead letters")
    kept.add_argument("--transform", action="append", choices=sorted(TRANSFORMS), default=[], help="fix to apply")
    kept.add_argument("--include-replayed", action="store_true", help="also bodies already re-submitted")
    kept.add_argument("--to", choices=("auto", "queue", "handler"), default="auto", help="where to re-submit")
    args = parser.parse_args(argv)
    if args.org is not None and canonical_org_id(args.org) is None:
        parser.error("--org must be an org id (1-64 letters, digits, '.', '_' or '-')")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    return args


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    bus: Any | None = None,
    app: Any | None = None,
    ask: Callable[[str], str] = input,
    out: Callable[[str], None] = print,
    now: datetime | None = None,
) -> int:
    """Run the command. Returns the exit code: 0 done (or nothing to do), 1 failed, 2 not configured, 3 declined.

    ``bus`` (a ``ServiceBusClient`` or a stand-in with its methods) and ``app`` (``shared.app.App``) are built
    from ``environ`` when not given.
    """
    args = _arguments(argv)
    environ = os.environ if environ is None else environ
    now = now or datetime.now(UTC)
    queue = args.queue or (environ.get("REGISTRATIONS_QUEUE") or "").strip() or REGISTRATIONS_QUEUE
    filters = Filters(
        reason=args.reason,
        org_id=args.org,
        older_than=args.older_than,
        newer_than=args.newer_than,
        include_replayed=getattr(args, "include_replayed", False),
        limit=args.limit,
    )
    bus = bus if bus is not None else connect(environ, args.namespace)
    if bus is None and (args.command == "dead-letters" or args.to == "queue"):
        out("no Service Bus configured: set ServiceBusConnection or ServiceBusConnection__fullyQualifiedNamespace")
        return 2
    if args.command == "dead-letters":
        job = _dead_letter_job(bus, queue, args.scan, out)
    else:
        if app is None:
            from shared.app import App
            from shared.settings import Settings

            app = App(Settings.from_environ(environ))
        job = _rejected_job(app, bus if args.to != "handler" else None, queue, args.transform)
    return _run(job, filters, args, ask, out, now)


@dataclass(frozen=True)
class _Job:
    candidates: list[Candidate]
    transforms: list[str]
    where: str
    send: Send
    mark: Sent


def _dead_letter_job(bus: Any, queue: str, scan: int, out: Callable[[str], None]) -> _Job:
    def send(chosen: Sequence[Prepared], on_sent: Sent) -> None:
        moved = move_dead_letters(bus, queue, chosen, on_sent)
        if moved.missing:
            out(f"{len(moved.missing)} selected messages had left the dead-letter queue meanwhile")

    def mark(_prepared: Prepared, _how: str) -> None:
        return None  # gone from the dead-letter queue: nothing else to note

    return _Job(peek_dead_letters(bus, queue, most=scan), [], f"queue {queue!r}", send, mark)


def _rejected_job(app: Any, bus: Any | None, queue: str, transforms: list[str]) -> _Job:
    """Re-submit to the queue when there is a broker, else to the handler in this process."""
    store = app.rejected
    where, send = to_queue(bus, queue) if bus is not None else to_handler(app)

    def mark(prepared: Prepared, how: str) -> None:
        store.mark_replayed(prepared.candidate.ref, how)

    return _Job(rejected_candidates(store), transforms, where, send, mark)


def _run(
    job: _Job,
    filters: Filters,
    args: argparse.Namespace,
    ask: Callable[[str], str],
    out: Callable[[str], None],
    now: datetime,
) -> int:
    candidates, where = job.candidates, job.where
    chosen = [prepare(candidate, job.transforms) for candidate in select(candidates, filters, now)]
    for prepared in chosen:
        out(describe(prepared, now))
    ready = [p for p in chosen if p.ready]
    out(
        f"{len(chosen)} of {len(candidates)} {args.command} selected; {len(ready)} to send to {where}"
        + (f", {len(chosen) - len(ready)} would be rejected again (not sent)" if len(ready) < len(chosen) else "")
    )
    if not ready or args.dry_run:
        return 0
    if not args.yes and ask(f"Send {len(ready)} messages to {where}? [y/N] ").strip().lower() not in ("y", "yes"):
        out("nothing sent")
        return 3
    outcomes: list[str] = []

    def sent(prepared: Prepared, how: str) -> None:
        job.mark(prepared, how)
        outcomes.append(how)

    code = 0
    try:
        job.send(ready, sent)
    except Exception as exc:  # report and stop: whatever was sent is already marked
        out(f"stopped: {type(exc).__name__}: {exc}")
        code = 1
    summary = f": {', '.join(f'{n} {how}' for how, n in sorted(Counter(outcomes).items()))}" if outcomes else ""
    out(f"sent {len(outcomes)} of {len(ready)}{summary}")
    return code or (0 if len(outcomes) == len(ready) else 1)


if __name__ == "__main__":
    sys.exit(main())
