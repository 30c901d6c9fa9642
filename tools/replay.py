"""``python -m tools.replay``: send dead-lettered messages back to the queue, and re-submit kept rejected bodies.

    python -m tools.replay dead-letters [--reason R] [--org ORG] [--older-than AGE] [--newer-than AGE]
                                        [--limit N] [--dry-run] [--yes] [--json]
    python -m tools.replay rejected [--transform assume-utc] [--reason R] [--org ORG] [--older-than AGE]
                                    [--newer-than AGE] [--include-replayed] [--to queue|handler]
                                    [--limit N] [--dry-run] [--yes] [--json]

Run from a checkout with the app's settings in the environment (the names of ``local.settings.json``): Service
Bus through ``ServiceBusConnection`` (a connection string) or ``ServiceBusConnection__fullyQualifiedNamespace``
(the signed-in identity, ``DefaultAzureCredential``), the queue from ``REGISTRATIONS_QUEUE``; the kept bodies
from the state storage settings. It lists what it selected (ids, age, org, reason, never a body), says how many
it will send, and asks before it acts (``--yes`` skips the question, ``--dry-run`` stops after the list); without
a terminal to ask on it sends nothing unless ``--yes`` is given. Each message sent prints a progress line;
``--json`` prints JSON Lines instead (one object per selected message, per message sent, and a summary). Errors
go to standard error; the exit codes are listed by ``--help`` (``EXIT_CODES``), 2 being argparse's usage error.

Dead letters are moved with ``azure-servicebus``: received from ``<queue>/$DeadLetterQueue`` (peek-lock), sent
to the queue, and only then completed. A dead letter that was not selected is locked only while the tool must
hold it to reach a selected one behind it, and is abandoned back as soon as that one has moved (or at once
when nothing selected lies behind it), so other readers see it again as the tool goes. A crash anywhere
leaves each message in the dead-letter queue, on the queue, or (sent and not completed yet) in both: a
duplicate, which the ledger turns into a no-op.

Kept rejected bodies are sent to the queue when a Service Bus connection is configured (they then take the
normal path: ordering, parking, retries) and otherwise handed straight to RegisterAttendee's handler in this
process (``--to handler``; it needs the app's ON24, Key Vault and Dataverse settings, e.g. in the sandbox).
Only bodies that now parse are sent; each is marked replayed in its ``~rejected`` row.

The selection and the transforms are pure (``tools.replay_rules``); this module is the thin shell around them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.ids import canonical_org_id
from shared.messages import org_id_hint
from shared.settings import REGISTRATIONS_QUEUE
from tools.replay_bus import Sent, connect, move_dead_letters, outgoing, peek_dead_letters
from tools.replay_rules import TRANSFORMS, Candidate, Filters, Prepared, describe, parse_age, prepare, select

EXIT_OK, EXIT_FAILED, EXIT_NOT_CONFIGURED, EXIT_NOT_CONFIRMED = 0, 1, 3, 4  # 2 is argparse's usage error
EXIT_CODES = """exit codes:
  0  done, or nothing to send (also every --dry-run)
  1  stopped part-way: a send failed, or not every selected message was sent (see the last line)
  2  usage error: an argument was refused, nothing was read or sent
  3  not configured: no Service Bus connection where one is needed, or the app's settings are invalid
  4  not confirmed: declined at the prompt, or no terminal to ask on and no --yes; nothing was sent"""


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
    from azure.functions.servicebus import ServiceBusMessage

    from shared.entrypoints.queue import process_registration_message

    def send(chosen: Sequence[Prepared], on_sent: Sent) -> None:
        for prepared in chosen:
            candidate = prepared.candidate
            properties = dict(candidate.application_properties)
            message = ServiceBusMessage(
                body=prepared.body,
                message_id=candidate.message_id or uuid.uuid4().hex,
                content_type="application/json",
                enqueued_time_utc=candidate.at or datetime.now(UTC),
                delivery_count=1,
                application_properties=properties,
                user_properties=properties,
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
    parser = argparse.ArgumentParser(
        prog="python -m tools.replay",
        description=summary,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    dead = commands.add_parser("dead-letters", help="move dead-lettered messages back to the queue", epilog=EXIT_CODES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    kept = commands.add_parser("rejected", help="re-submit kept rejected bodies after a fix", epilog=EXIT_CODES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    for sub in (dead, kept):
        sub.add_argument("--reason", help="part of the reason (case-insensitive)")
        sub.add_argument("--org", help="only messages naming this org id")
        sub.add_argument("--older-than", type=_age, help="only messages older than this (90m, 12h, 3d, 2w)")
        sub.add_argument("--newer-than", type=_age, help="only messages at most this old")
        sub.add_argument("--limit", type=int, help="at most this many messages")
        sub.add_argument("--queue", help="the registrations queue (default: REGISTRATIONS_QUEUE)")
        sub.add_argument("--namespace", help="<name>.servicebus.windows.net, signed in with DefaultAzureCredential")
        sub.add_argument("--dry-run", action="store_true", help="list what would be sent, send nothing")
        sub.add_argument("--yes", action="store_true", help="do not ask before sending (needed without a terminal)")
        sub.add_argument("--json", action="store_true", help="JSON Lines on standard output instead of text")
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


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _stdout(line: str) -> None:
    print(line, flush=True)


def _terminal_prompt(question: str) -> str:
    """Ask on the terminal: the question to standard error (standard output may be piped), the answer from stdin."""
    sys.stderr.write(question)
    sys.stderr.flush()
    return sys.stdin.readline()


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    bus: Any | None = None,
    app: Any | None = None,
    ask: Callable[[str], str] | None = None,
    out: Callable[[str], None] = _stdout,
    err: Callable[[str], None] = _stderr,
    now: datetime | None = None,
) -> int:
    """Run the command and return its exit code (``EXIT_CODES``).

    ``bus`` (a ``ServiceBusClient`` or a stand-in with its methods) and ``app`` (``shared.app.App``) are built
    from ``environ`` when not given. ``ask`` answers the confirmation; by default the terminal, and with no
    terminal (stdin not a TTY) nothing is sent without ``--yes``.
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
        err("no Service Bus configured: set ServiceBusConnection or ServiceBusConnection__fullyQualifiedNamespace")
        return EXIT_NOT_CONFIGURED
    if args.command == "dead-letters":
        job = _dead_letter_job(bus, queue, args.scan, err)
    else:
        if app is None:
            from shared.app import App
            from shared.errors import ConfigError
            from shared.settings import Settings

            try:
                app = App(Settings.from_environ(environ))
            except ConfigError as exc:
                err(f"the app's settings are not usable: {exc}")
                return EXIT_NOT_CONFIGURED
        job = _rejected_job(app, bus if args.to != "handler" else None, queue, args.transform)
    if ask is None:
        ask = _terminal_prompt if sys.stdin is not None and sys.stdin.isatty() else None
    return _run(job, filters, args, _Console(out, err, ask, args.json), now)


@dataclass(frozen=True)
class _Job:
    candidates: list[Candidate]
    transforms: list[str]
    where: str
    send: Send
    mark: Sent


@dataclass(frozen=True)
class _Console:
    """Where the command writes: text or JSON Lines to ``out``, problems to ``err``, questions through ``ask``."""

    out: Callable[[str], None]
    err: Callable[[str], None]
    ask: Callable[[str], str] | None
    json: bool

    def say(self, text: str, **record: Any) -> None:
        self.out(json.dumps(record, ensure_ascii=False, default=str) if self.json else text)


def _dead_letter_job(bus: Any, queue: str, scan: int, err: Callable[[str], None]) -> _Job:
    def send(chosen: Sequence[Prepared], on_sent: Sent) -> None:
        moved = move_dead_letters(bus, queue, chosen, on_sent)
        if moved.missing:
            err(f"{len(moved.missing)} selected messages had left the dead-letter queue meanwhile")

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


def _record(prepared: Prepared, now: datetime) -> dict[str, Any]:
    """A message as JSON: ids, age, org, reason and verdict; never a body."""
    c = prepared.candidate
    age = round((now - c.at).total_seconds()) if c.at else None
    return {"source": c.source, "ref": c.ref, "messageId": c.message_id, "orgId": c.org_id, "ageSeconds": age,
            "reason": c.reason[:200], "changes": list(prepared.changes), "ready": prepared.ready,
            "problem": prepared.problem}  # fmt: skip


def _run(job: _Job, filters: Filters, args: argparse.Namespace, console: _Console, now: datetime) -> int:
    candidates, where = job.candidates, job.where
    chosen = [prepare(candidate, job.transforms) for candidate in select(candidates, filters, now)]
    for prepared in chosen:
        console.say(describe(prepared, now), event="selected", **_record(prepared, now))
    ready = [p for p in chosen if p.ready]
    console.say(
        f"{len(chosen)} of {len(candidates)} {args.command} selected; {len(ready)} to send to {where}"
        + (f", {len(chosen) - len(ready)} would be rejected again (not sent)" if len(ready) < len(chosen) else ""),
        event="plan", command=args.command, candidates=len(candidates), selected=len(chosen), toSend=len(ready),
        to=where, dryRun=args.dry_run,
    )  # fmt: skip
    if not ready or args.dry_run:
        return EXIT_OK
    if not args.yes:
        if console.ask is None:
            console.err(f"not sending {len(ready)} messages: there is no terminal to confirm on (standard input is "
                        "not a TTY); re-run with --yes to send them, or --dry-run to list them only")  # fmt: skip
            return EXIT_NOT_CONFIRMED
        try:
            answer = console.ask(f"Send {len(ready)} messages to {where}? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            console.err("nothing sent")
            return EXIT_NOT_CONFIRMED
    outcomes: list[str] = []

    def sent(prepared: Prepared, how: str) -> None:
        job.mark(prepared, how)
        outcomes.append(how)
        c = prepared.candidate
        console.say(
            f"[{len(outcomes)}/{len(ready)}] {c.source} {c.ref[:16]} message {c.message_id or '-'} "
            f"org {c.org_id or '-'}: {how}",
            event="sent", index=len(outcomes), total=len(ready), source=c.source, ref=c.ref,
            messageId=c.message_id, orgId=c.org_id, how=how,
        )  # fmt: skip

    code = EXIT_OK
    try:
        job.send(ready, sent)
    except Exception as exc:  # report and stop: whatever was sent is already marked
        console.err(f"stopped: {type(exc).__name__}: {exc}")
        code = EXIT_FAILED
    summary = f": {', '.join(f'{n} {how}' for how, n in sorted(Counter(outcomes).items()))}" if outcomes else ""
    code = code or (EXIT_OK if len(outcomes) == len(ready) else EXIT_FAILED)
    console.say(f"sent {len(outcomes)} of {len(ready)}{summary}", event="summary", sent=len(outcomes),
                toSend=len(ready), outcomes=dict(Counter(outcomes)), exitCode=code)  # fmt: skip
    return code


if __name__ == "__main__":
    sys.exit(main())
