"""The registration state machine's rules, as pure functions of (ledger row, message): no I/O here.

Order. Every message has a rank: its time (Dataverse ``OperationCreatedOn``, canonical ``occurredAt``, else
the Service Bus enqueue time; a time more than ``MAX_CLOCK_SKEW`` after the enqueue time is clamped to it),
then its action's priority: forget > cancel > update > register. A message ranked below the last one decided is
stale; one ranked equal is a redelivery of it. So cancel@T and register@T end cancelled in either order.

Effect. A message says what ON24 should hold for the registration: one registrant (event, email), or none.
The plan removes every registrant the ledger knows may exist, except that one, then creates or updates it.
Deletes and creates are idempotent in ON24, so replaying a plan after a crash is safe.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from shared.store.ledger import LedgerEntry, RegistrantRef
from shared.webinars import Person

PRIORITY: dict[str, int] = {"register": 0, "update": 1, "cancel": 2, "forget": 3}
MAX_CLOCK_SKEW = timedelta(minutes=5)

NoOp = Literal["stale", "duplicate", "crm_pending"]


@dataclass(frozen=True, order=True)
class Rank:
    """A message's place in the order of a registration's changes."""

    at: datetime
    priority: int


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, capped: the wait before the next try after ``failures`` failed ones.

    Half the step is fixed and half random ("equal jitter"), so parked registrations spread out but a retry
    never comes sooner than half the schedule.
    """

    base_seconds: float = 60.0
    max_seconds: float = 1800.0
    jitter: Callable[[float, float], float] = random.uniform

    def delay(self, failures: int) -> timedelta:
        step = min(self.max_seconds, self.base_seconds * 2 ** max(failures - 1, 0))
        return timedelta(seconds=step / 2 + self.jitter(0.0, step / 2))

    def longest(self, failures: int) -> timedelta:
        """The longest ``delay(failures)`` can be (tests and capacity figures)."""
        return timedelta(seconds=min(self.max_seconds, self.base_seconds * 2 ** max(failures - 1, 0)))


def message_time(occurred_at: datetime | None, enqueued_at: datetime) -> tuple[datetime, bool]:
    """The time that orders a message, and whether it had to be clamped to the enqueue time.

    A producer's clock running ahead (or a hostile ``occurredAt`` of 9999-12-31) would otherwise make every
    later message stale for good.
    """
    if occurred_at is None:
        return enqueued_at, False
    if occurred_at > enqueued_at + MAX_CLOCK_SKEW:
        return enqueued_at, True
    return occurred_at, False


def last_rank(entry: LedgerEntry) -> Rank | None:
    """The rank of the newest message decided for the row, or None when none was."""
    if entry.last_message_at is None:
        return None
    return Rank(entry.last_message_at, entry.last_priority)


def no_op(entry: LedgerEntry | None, rank: Rank, *, crm_known: bool, again: bool = False) -> NoOp | None:
    """What a message that needs no ON24 call is, or None when it must be applied.

    * ranked below the last decided message: ``stale`` (or ``duplicate`` at the same time);
    * ranked equal: ``duplicate``, unless that message failed (a retry may find fixed data in CRM, so it is
      applied again) or CRM has not been told its outcome yet (``crm_pending``: only the CRM write is redone);
      with ``again`` (a reconciliation found ON24 apart from that decision) it is applied again.
    """
    if entry is None:
        return None
    last = last_rank(entry)
    if last is None or rank > last:
        return None
    if rank < last:
        return "duplicate" if rank.at == last.at else "stale"
    if entry.last_outcome == "failed" or again:
        return None
    if crm_known and not entry.crm_settled and entry.state in ("registered", "cancelled"):
        return "crm_pending"
    return "duplicate"


def content_fingerprint(target: RegistrantRef, person: Person) -> str:
    """A hash of what an upsert sends ON24 for the registrant: its event, every person field and the fields the
    org's mapping adds (the adapter derives the request from these alone). The ledger keeps the hash, not the
    names in clear."""
    content: list[Any] = [target.webinar_id, person.model_dump(mode="json")]
    if person.extra:  # mapped provider fields (``Person.extra`` is left out of model_dump)
        content.append(sorted(person.extra))
    sent = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(sent.encode()).hexdigest()[:32]


def holds_content(entry: LedgerEntry, target: RegistrantRef | None, person: Person | None) -> bool:
    """ON24 holds exactly what the message would send: the confirmed registrant is the target, with the same
    fields, and nothing else may exist (no pending registrant, no unconfirmed intent)."""
    current = entry.current
    if target is None or person is None or current is None or entry.pending or entry.intent is not None:
        return False
    return current.same(target) and entry.fingerprint == content_fingerprint(target, person)


def after_interruption(entry: LedgerEntry) -> LedgerEntry:
    """The row as the next delivery must see it when the one that held it died with its intent unconfirmed.

    That delivery's plan may have deleted the confirmed registrant (anything but its own target), so the
    registrant is only known to *maybe* exist: it moves to the pending ones, and wanting it again means
    creating it again (which also undeletes it), never updating it in place.
    """
    current, intent = entry.current, entry.intent
    if intent is None or current is None or (intent.target is not None and intent.target.same(current)):
        return entry
    pending = entry.pending if any(current.same(ref) for ref in entry.pending) else (current, *entry.pending)
    return replace(entry, state="new", pending=pending)


def observed(entry: LedgerEntry, webinar_id: str, seen: tuple[RegistrantRef, ...]) -> LedgerEntry:
    """The row corrected by what a reconciliation saw in ``webinar_id``'s registrant list.

    A confirmed registrant of that webinar the list lacks (deleted by hand in ON24) is only known to *maybe*
    exist: it moves to the pending ones, so wanting it again creates it again (which also undeletes it). A
    registrant the list shows with this registration's id may exist: the plan removes it unless it is the target.
    """
    current = entry.current
    state, pending = entry.state, list(entry.pending)
    if current is not None and current.webinar_id == webinar_id and not any(current.same(ref) for ref in seen):
        state = "new"
        if not any(current.same(ref) for ref in pending):
            pending.insert(0, current)
    known = [*pending, *((current,) if state == "registered" and current is not None else ())]
    for ref in seen:
        if not any(ref.same(k) for k in known):
            pending.append(ref)
            known.append(ref)
    return replace(entry, state=state, pending=tuple(pending))


@dataclass(frozen=True)
class Plan:
    """The ON24 calls that bring ON24 to the desired state, in order: deletes first, then the upsert.

    ``patch`` means the target is the confirmed registrant, so an update in place is enough.
    """

    deletes: tuple[RegistrantRef, ...]
    upsert: RegistrantRef | None
    patch: bool = False

    @property
    def calls(self) -> int:
        return len(self.deletes) + (1 if self.upsert is not None else 0)


def plan(entry: LedgerEntry | None, target: RegistrantRef | None) -> Plan:
    """Remove every registrant the row knows may exist except ``target``; then create or update ``target``.

    Args:
        entry: the row as read (None: never seen).
        target: the registrant ON24 should hold, or None for none.
    """
    known = entry.known_registrants() if entry is not None else ()
    deletes = tuple(ref for ref in known if target is None or not ref.same(target))
    if target is None:
        return Plan(deletes, None)
    current = entry.current if entry is not None else None
    in_pending = entry is not None and any(target.same(ref) for ref in entry.pending)
    patch = current is not None and current.same(target) and not in_pending
    return Plan(deletes, target, patch)


def forget_plan(entry: LedgerEntry | None, email: str | None) -> Plan:
    """A forget's calls: every registrant that may exist, and also the one a cancel left in ON24.

    A cancel is ON24's soft delete: the registrant stays in the event, name and email kept, flagged deleted, and the
    row no longer lists it. Erasure must reach it too (``POST /forget`` answers 404, "done", when nothing is there).
    ``email``: the address the forget was given, for a row whose own the retention already cleared.
    """
    steps = plan(entry, None)
    address = (entry.email if entry is not None else None) or email
    if entry is None or entry.state != "cancelled" or not entry.webinar_id or not address:
        return steps
    left = RegistrantRef(entry.webinar_id, address)
    if any(left.same(ref) for ref in steps.deletes):
        return steps
    return Plan((*steps.deletes, left), None)


def planned(entry: LedgerEntry | None, target: RegistrantRef | None, *, forget: bool, email: str | None) -> Plan:
    """The plan of a message: ``forget_plan`` for a forget (``email``: the address it was given), else ``plan``."""
    return forget_plan(entry, email) if forget else plan(entry, target)


def remaining_after(
    entry: LedgerEntry | None,
    done: Plan,
    deleted: tuple[RegistrantRef, ...],
    confirmed: bool,
    *,
    unsure: RegistrantRef | None = None,
) -> tuple[RegistrantRef | None, tuple[RegistrantRef, ...]]:
    """What ON24 may hold once (part of) a plan ran: the confirmed registrant and the pending ones.

    Args:
        entry: the row the plan was made from.
        done: the plan.
        deleted: the registrants whose delete ON24 confirmed.
        confirmed: whether ON24 confirmed the upsert.
        unsure: a registrant whose delete failed: ON24 may have applied it all the same (an answer lost, or
            a request applied after the client gave up), so it is no longer known to exist.

    Returns:
        ``(current, pending)``: ``current`` is the registrant ON24 holds for sure (the target when the upsert
        was confirmed, else the old confirmed one if no delete touched it); ``pending`` is every other
        registrant that may exist, the unconfirmed target included. A pending target is created again
        rather than updated in place, which also brings back one that a lost delete removed.
    """
    known = entry.known_registrants() if entry is not None else ()
    left = [ref for ref in known if not any(ref.same(d) for d in deleted)]
    if done.upsert is not None and not any(done.upsert.same(ref) for ref in left):
        left.append(done.upsert)
    if confirmed and done.upsert is not None:
        current: RegistrantRef | None = done.upsert
    else:
        old = entry.current if entry is not None else None
        kept = old is not None and any(old.same(ref) for ref in left) and not (unsure and old.same(unsure))
        current = old if kept else None
    pending = tuple(ref for ref in left if current is None or not ref.same(current))
    return current, pending
