"""What ``python -m tools.replay`` selects and how it changes a body before sending it again: pure functions.

A *candidate* is a message that may be replayed: a dead-lettered message (it failed ``maxDeliveryCount`` times,
transient or configuration faults only) or a body RegisterAttendee rejected and kept (``~rejected``). The
operator filters them by reason, org and age; each selected one is *prepared*: its body gets the transforms
asked for, and is parsed again exactly as RegisterAttendee would, so the dry run shows what will happen.

Transforms (each one is a documented fix for a producer's mistake, never a guess):

- ``keep-order`` (always applied): a canonical body without ``occurredAt`` is ordered by its Service Bus enqueue
  time; sent again it would get a new one and could overtake changes made since. The original time is written
  into ``occurredAt`` (the enqueue time of a dead letter; for a rejected body the time it was rejected, seconds
  after it was enqueued). Dataverse bodies carry ``OperationCreatedOn`` and are left alone.
- ``assume-utc``: a canonical ``occurredAt`` without a UTC offset (e.g. a Power Automate flow that formatted
  ``utcNow()`` as ``yyyy-MM-ddTHH:mm:ss``) was rejected; the producer meant UTC, so ``Z`` is appended.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shared.ids import canonical_org_id
from shared.messages import MessageError, parse_message

Source = Literal["dead-letter", "rejected"]
_AGE = re.compile(r"([0-9]+)\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_NAIVE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?")


@dataclass(frozen=True)
class Candidate:
    """A message that may be sent again.

    Attributes:
        ref: the dead letter's sequence number, or the kept body's row key.
        at: when it was enqueued (dead letter) or rejected (kept body).
        reason: the dead-letter reason and description, or why the body was rejected.
        org_id: the org the body names, if any.
    """

    source: Source
    ref: str
    message_id: str
    body: bytes
    reason: str
    at: datetime | None
    org_id: str | None
    content_type: str | None = "application/json"
    application_properties: Mapping[str, Any] = field(default_factory=dict)
    replayed_at: datetime | None = None


@dataclass(frozen=True)
class Filters:
    """What the operator asked for; None means "any"."""

    reason: str | None = None
    """A case-insensitive part of the reason, e.g. ``MaxDeliveryCountExceeded`` or ``occurredAt``."""
    org_id: str | None = None
    older_than: timedelta | None = None
    newer_than: timedelta | None = None
    include_replayed: bool = False
    limit: int | None = None


@dataclass(frozen=True)
class Prepared:
    """A selected candidate, its body as it will be sent, what changed, and whether RegisterAttendee takes it."""

    candidate: Candidate
    body: bytes
    changes: tuple[str, ...]
    problem: str | None
    """Why RegisterAttendee would reject the body again (it is then not sent); None when it parses."""

    @property
    def ready(self) -> bool:
        return self.problem is None


def parse_age(text: str) -> timedelta:
    """``90m``, ``12h``, ``3d``, ``2w`` (or combinations like ``1d12h``) as a duration.

    Raises:
        ValueError: anything else.
    """
    cleaned = text.strip().lower()
    parts = _AGE.findall(cleaned)
    if not parts or _AGE.sub("", cleaned).strip():
        raise ValueError(f"not an age: {text!r} (use e.g. 90m, 12h, 3d, 2w)")
    return sum((timedelta(**{_UNITS[unit]: int(n)}) for n, unit in parts), timedelta())


def matches(candidate: Candidate, filters: Filters, now: datetime) -> bool:
    """Whether the candidate passes every filter given."""
    if candidate.replayed_at is not None and not filters.include_replayed:
        return False
    if filters.reason and filters.reason.casefold() not in candidate.reason.casefold():
        return False
    if filters.org_id is not None and candidate.org_id != canonical_org_id(filters.org_id):
        return False
    if filters.older_than is not None and (candidate.at is None or now - candidate.at < filters.older_than):
        return False
    return filters.newer_than is None or (candidate.at is not None and now - candidate.at <= filters.newer_than)


def select(candidates: Iterable[Candidate], filters: Filters, now: datetime) -> list[Candidate]:
    """The candidates that pass the filters, oldest first, at most ``filters.limit``."""
    chosen = sorted(
        (c for c in candidates if matches(c, filters, now)), key=lambda c: c.at or datetime.min.replace(tzinfo=UTC)
    )
    return chosen[: filters.limit] if filters.limit is not None else chosen


# ---- transforms ----------------------------------------------------------------------------------------------------
Transform = Callable[[dict[str, Any], Candidate], str | None]


def _canonical(data: dict[str, Any]) -> bool:
    return "schema" in data


def keep_order(data: dict[str, Any], candidate: Candidate) -> str | None:
    """Write the original time into a canonical body that has none (see the module docstring)."""
    if not _canonical(data) or data.get("occurredAt") is not None or candidate.at is None:
        return None
    data["occurredAt"] = candidate.at.astimezone(UTC).isoformat()
    return "occurredAt set to the original time"


def assume_utc(data: dict[str, Any], candidate: Candidate) -> str | None:
    """Append ``Z`` to a canonical ``occurredAt`` that has no offset."""
    value = data.get("occurredAt")
    if not _canonical(data) or not isinstance(value, str) or not _NAIVE_TIME.fullmatch(value.strip()):
        return None
    data["occurredAt"] = value.strip() + "Z"
    return "occurredAt read as UTC"


TRANSFORMS: dict[str, Transform] = {"assume-utc": assume_utc}
ALWAYS: tuple[Transform, ...] = (keep_order,)


def prepare(candidate: Candidate, transforms: Iterable[str] = ()) -> Prepared:
    """The body to send and whether RegisterAttendee will take it.

    Raises:
        KeyError: an unknown transform name.
    """
    chosen = [TRANSFORMS[name] for name in transforms]
    body, changes = candidate.body, []
    try:
        data = json.loads(candidate.body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        for transform in (*chosen, *ALWAYS):
            change = transform(data, candidate)
            if change:
                changes.append(change)
        if changes:
            body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    problem = None
    try:
        parse_message(body, content_type="application/json", application_properties=candidate.application_properties)
    except MessageError as exc:
        problem = str(exc)
    return Prepared(candidate, body, tuple(changes), problem)


def describe(prepared: Prepared, now: datetime) -> str:
    """One line for the operator: no body, no personal data (ids, age, reason, changes, verdict)."""
    c = prepared.candidate
    age = _age(now - c.at) if c.at else "?"
    verdict = "ok" if prepared.ready else f"STILL REJECTED: {prepared.problem}"
    changes = f" [{'; '.join(prepared.changes)}]" if prepared.changes else ""
    return f"{c.source} {c.ref[:16]} age {age} org {c.org_id or '-'}: {c.reason[:80]}{changes} -> {verdict}"


def _age(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes}m"
    if minutes < 48 * 60:
        return f"{minutes // 60}h"
    return f"{minutes // 1440}d"
