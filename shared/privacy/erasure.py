"""Erasure of one person (``POST .../webinar/forget``): every registration of the org holding the email is
forgotten through RegisterAttendee's own forget; kept bodies and older parked messages that mention it are deleted."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

from shared.emails import spellings
from shared.errors import TransientError
from shared.privacy.ports import ErasureOutcome, PrivacyPorts
from shared.store.tombstones import TOMBSTONE_SETTLE

_log = logging.getLogger(__name__)


ERASURE_REASON = "erasure requested through the admin API"
ERASED = ("forgotten", "duplicate")  # duplicate: an equal forget was decided already; "stale" is not erased
RECHECK_OVERLAP = timedelta(minutes=10)  # clock differences between instances stamping a row's UpdatedAt


@dataclass(frozen=True)
class ErasureReport:
    erasure_id: str
    registrations: list[tuple[str, ErasureOutcome]]
    """(registration id, what RegisterAttendee's forget did) per registration found."""
    rejected_deleted: int
    parked_deleted: int = 0

    def view(self, org_id: str) -> dict[str, object]:
        def one(registration_id: str, outcome: ErasureOutcome) -> dict[str, object]:
            item: dict[str, object] = {"registrationId": registration_id, "outcome": outcome.status}
            if outcome.status not in ERASED and outcome.reason:
                item["reason"] = outcome.reason  # e.g. the integration is disabled: ON24 cannot be reached
            return item

        return {
            "orgId": org_id,
            "erasureId": self.erasure_id,
            "registrationsFound": len(self.registrations),
            "registrations": [one(reg, outcome) for reg, outcome in self.registrations],
            "rejectedMessagesDeleted": self.rejected_deleted,
            "parkedMessagesDeleted": self.parked_deleted,
        }


class ErasureIncompleteError(TransientError):
    """A fault stopped an erasure part-way: what is done stays done; the same request again finishes it."""


def forget_person(org_id: str, email: str, ports: PrivacyPorts, *, actor: str) -> ErasureReport:
    """Forget everything the org's state holds about the person with ``email``. Idempotent: a repeat finds
    nothing more (forgotten rows keep no email) and reports zero.

    Raises:
        ErasureIncompleteError: ON24 or storage failed transiently part-way (repeat the request).
        ConfigError: the app is misconfigured.
    """
    erasure_id = uuid.uuid4().hex
    requested_at = ports.clock()
    found: list[str] = []
    done: list[tuple[str, ErasureOutcome]] = []
    rejected_deleted = parked_deleted = 0

    def audit(complete: bool) -> None:
        _audit_erasure(org_id, actor, erasure_id, found, done, rejected_deleted, parked_deleted, complete=complete)

    try:
        # The tombstone by address comes first: a register of this person still on its way (no row yet, or one
        # this lookup misses) then finds it and stays undone; those by registration id follow each lookup.
        ports.tombstones.record(org_id, requested_at, email=email)
        settled = ports.monotonic() + TOMBSTONE_SETTLE
        # A registration parked during an outage may be known by its parked message only (no ledger row yet).
        parked = [m for m in ports.parked.for_org(org_id) if mentions(m.command.encode("utf-8"), email)]
        hashed = ports.email_hash(email)
        for since in (None, requested_at - RECHECK_OVERLAP):
            if since is not None:  # a register that checked before the tombstone has claimed its row by now
                ports.sleep(max(0.0, settled - ports.monotonic()))
            # Rows whose email retention cleared keep its keyed hash: their forget is given the address.
            ledger_rows, cleared = ports.ledger.person_rows(
                org_id, contact_id=None, email=email, email_hash=hashed, updated_since=since
            )
            keys = [*ledger_rows, *cleared, *(m.key for m in parked if since is None)]
            new = [key for key in dict.fromkeys(keys) if key not in found]
            ports.tombstones.record(org_id, requested_at, registration_ids=new)
            found.extend(new)
            for registration_id in new:
                given = email if registration_id in cleared else None
                outcome = ports.forget(
                    org_id, registration_id, requested_at=requested_at, reason=ERASURE_REASON, email=given
                )
                done.append((registration_id, outcome))
        # A parked message older than the forget would only be stale when re-driven: it goes now, with the
        # person's data in it (one the forget itself was parked over is already replaced, and stays).
        parked_deleted = sum(1 for m in parked if m.message_at <= requested_at and ports.parked.remove(m))
        rejected_deleted = ports.rejected.delete(
            [m for m in ports.rejected.list_for_org(org_id) if mentions(m.body, email)]
        )
    except TransientError as exc:
        audit(False)
        raise ErasureIncompleteError(
            f"erasure {erasure_id} in org {org_id!r} stopped after {len(done)} of {len(found)} registrations: {exc}"
        ) from exc
    except BaseException:  # every attempt is audited, also one stopped by a configuration fault
        audit(False)
        raise
    audit(True)
    return ErasureReport(erasure_id, done, rejected_deleted, parked_deleted)


def mentions(body: bytes, email: str) -> bool:
    """Whether a kept message body holds the address ``email`` (any case), as raw text or inside a JSON string.

    The whole address must match: ``ann@x.example`` is not found in ``joann@x.example`` or ``ann@x.example.org``.
    An IDN domain is found in its Unicode and its ASCII (punycode) spelling.
    """
    forms = "|".join(re.escape(form) for form in sorted(spellings(email), key=len, reverse=True))
    address = re.compile(r"(?<![\w.%+\-])(?:" + forms + r")(?![\w\-]|\.\w)", re.IGNORECASE)
    text = body.decode("utf-8", "replace")
    if address.search(text):
        return True
    try:
        data = json.loads(text.lstrip("\ufeff"))
    except (ValueError, RecursionError):
        return False
    return any(address.search(value) for value in _strings(data))


def _strings(value: object) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _audit_erasure(
    org_id: str,
    actor: str,
    erasure_id: str,
    found: Sequence[str],
    done: Sequence[tuple[str, ErasureOutcome]],
    rejected_deleted: int,
    parked_deleted: int,
    *,
    complete: bool,
) -> None:
    _log.log(
        logging.INFO if complete else logging.WARNING,
        "audit: erasure %s of one person in org %s by %s: %d of %d registrations forgotten, %d kept and %d parked "
        "messages deleted%s",
        erasure_id,
        org_id,
        actor,
        sum(1 for _, outcome in done if outcome.status in ERASED),
        len(found),
        rejected_deleted,
        parked_deleted,
        "" if complete else " (stopped by a fault; repeat the request)",
        extra={
            "org_id": org_id,
            "actor": actor,
            "audit": "person.forgotten",
            "erasure_id": erasure_id,
            "registrations": len(found),
            "registrations_done": len(done),
            "rejected_messages": rejected_deleted,
            "parked_messages": parked_deleted,
            "complete": complete,
        },
    )
