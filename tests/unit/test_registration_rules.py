"""The pure registration rules, table by table: message order, no-ops, the ON24 plan and what remains after it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.registration.rules import (
    MAX_CLOCK_SKEW,
    Plan,
    Rank,
    after_interruption,
    content_fingerprint,
    holds_content,
    message_time,
    no_op,
    plan,
    remaining_after,
)
from shared.store.ledger import Intent, LedgerEntry, RegistrantRef
from shared.webinars import Person

T = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
A = RegistrantRef("100", "a@example.com")
A_UPPER = RegistrantRef("100", "A@Example.com")
B = RegistrantRef("100", "b@example.com")
A_ELSEWHERE = RegistrantRef("200", "a@example.com")


def row(**fields: Any) -> LedgerEntry:
    return LedgerEntry(org_id="org", registration_id="reg", **fields)


def registered(ref: RegistrantRef = A, **fields: Any) -> LedgerEntry:
    return row(state="registered", webinar_id=ref.webinar_id, email=ref.email, **fields)


@pytest.mark.parametrize(
    ("occurred", "enqueued", "expected", "clamped"),
    [
        (None, T, T, False),
        (T - timedelta(days=3), T, T - timedelta(days=3), False),
        (T + MAX_CLOCK_SKEW, T, T + MAX_CLOCK_SKEW, False),
        (T + MAX_CLOCK_SKEW + timedelta(seconds=1), T, T, True),
        (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), T, T, True),
    ],
)
def test_message_time_is_clamped_to_the_enqueue_time_when_far_ahead(
    occurred: datetime | None, enqueued: datetime, expected: datetime, clamped: bool
) -> None:
    assert message_time(occurred, enqueued) == (expected, clamped)


def test_ranks_order_by_time_then_cancel_over_update_over_register() -> None:
    assert Rank(T, 2) > Rank(T, 1) > Rank(T, 0)
    assert Rank(T + timedelta(milliseconds=1), 0) > Rank(T, 2)


NO_OP_CASES = [
    # (row, message rank, crm known, expected)
    (None, Rank(T, 0), True, None),
    (row(), Rank(T, 0), True, None),  # a row without a decided message (e.g. only a skip note)
    (registered(last_message_at=T, last_priority=0, crm_settled=True), Rank(T, 0), True, "duplicate"),
    (registered(last_message_at=T, last_priority=0, crm_settled=True), Rank(T, 1), True, None),
    (registered(last_message_at=T, last_priority=1, crm_settled=True), Rank(T, 0), True, "duplicate"),
    (registered(last_message_at=T, last_priority=0), Rank(T - timedelta(seconds=1), 2), True, "stale"),
    (row(state="cancelled", last_message_at=T, last_priority=2), Rank(T, 0), True, "duplicate"),
    (registered(last_message_at=T, last_priority=0, crm_settled=False), Rank(T, 0), True, "crm_pending"),
    (registered(last_message_at=T, last_priority=0, crm_settled=False), Rank(T, 0), False, "duplicate"),
    (row(state="failed", last_message_at=T, last_priority=0, last_outcome="failed"), Rank(T, 0), True, None),
    (registered(last_message_at=T, last_priority=1, last_outcome="failed"), Rank(T, 1), True, None),
    (registered(last_message_at=T, last_priority=1, last_outcome="failed"), Rank(T, 0), True, "duplicate"),
]


@pytest.mark.parametrize(("entry", "rank", "crm_known", "expected"), NO_OP_CASES)
def test_no_op(entry: LedgerEntry | None, rank: Rank, crm_known: bool, expected: str | None) -> None:
    assert no_op(entry, rank, crm_known=crm_known) == expected


PLAN_CASES = [
    # (row, target, expected plan)
    (None, A, Plan((), A, patch=False)),
    (None, None, Plan((), None)),
    (registered(A), A, Plan((), A, patch=True)),
    (registered(A), A_UPPER, Plan((), A_UPPER, patch=True)),  # ON24 compares emails case-insensitively
    (registered(A), B, Plan((A,), B)),  # a new email: remove the old registrant
    (registered(A), A_ELSEWHERE, Plan((A,), A_ELSEWHERE)),  # moved to another webinar
    (registered(A), None, Plan((A,), None)),
    (registered(A, pending=(B,)), None, Plan((A, B), None)),  # a crash left b behind: the cancel removes it too
    (registered(A, pending=(B,)), A, Plan((B,), A, patch=True)),
    (registered(A, pending=(A,)), A, Plan((), A, patch=False)),  # a may be half-done: create again
    (row(state="cancelled", webinar_id="100", email="a@example.com"), A, Plan((), A, patch=False)),
    (row(state="failed", pending=(B,)), A, Plan((B,), A)),
]


@pytest.mark.parametrize(("entry", "target", "expected"), PLAN_CASES)
def test_plan_removes_everything_but_the_target(
    entry: LedgerEntry | None, target: RegistrantRef | None, expected: Plan
) -> None:
    assert plan(entry, target) == expected


REMAINING_CASES = [
    # (row, target, deleted, confirmed, expected current, expected pending)
    (registered(A, pending=(B,)), B, (A,), True, B, ()),  # a move that completed
    (registered(A, pending=(B,)), B, (A,), False, None, (B,)),  # the create of b failed: b may exist
    (registered(A, pending=(B,)), B, (), False, A, (B,)),  # stopped before anything: nothing forgotten
    (registered(A, pending=(B,)), None, (A, B), False, None, ()),  # a completed cancel
    (registered(A, pending=(B,)), None, (A,), False, None, (B,)),  # a cancel stopped half-way
    (registered(A), A, (), True, A, ()),  # an update in place
    (registered(A), A, (), False, A, ()),  # a failed update in place: a is still there
]


def test_a_confirmed_registrant_whose_delete_failed_is_no_longer_known_to_exist() -> None:
    entry = registered(A)
    move = plan(entry, B)
    # The delete of a timed out: ON24 may apply it later. a must then be created again, not updated in place.
    assert remaining_after(entry, move, (), False, unsure=A) == (None, (A, B))
    assert plan(replace(entry, state="new", pending=(A, B)), A) == Plan((B,), A, patch=False)


@pytest.mark.parametrize(("entry", "target", "deleted", "confirmed", "current", "pending"), REMAINING_CASES)
def test_what_remains_after_a_plan_keeps_every_registrant_that_may_exist(
    entry: LedgerEntry,
    target: RegistrantRef | None,
    deleted: tuple[RegistrantRef, ...],
    confirmed: bool,
    current: RegistrantRef | None,
    pending: tuple[RegistrantRef, ...],
) -> None:
    done = plan(entry, target)
    assert remaining_after(entry, done, deleted, confirmed) == (current, pending)


INTERRUPTION_CASES = [
    # (row as the dead delivery left it, expected state, expected pending)
    (registered(A), "registered", ()),  # no intent: nothing was under way
    (registered(A, intent=Intent("update", A, T, 1)), "registered", ()),  # it only updated a in place
    (registered(A, pending=(B,), intent=Intent("update", B, T, 1)), "new", (A, B)),  # it may have deleted a
    (registered(A, intent=Intent("remove", None, T, 2)), "new", (A,)),  # a cancel under way
    (row(state="cancelled", intent=Intent("register", A, T, 0), pending=(A,)), "cancelled", (A,)),
]


@pytest.mark.parametrize(("entry", "state", "pending"), INTERRUPTION_CASES)
def test_after_an_interruption_a_registrant_the_plan_may_have_deleted_is_no_longer_confirmed(
    entry: LedgerEntry, state: str, pending: tuple[RegistrantRef, ...]
) -> None:
    seen = after_interruption(entry)
    assert (seen.state, seen.pending) == (state, pending)
    assert set(seen.known_registrants()) == set(entry.known_registrants()), "nothing is forgotten"


JORG = Person(email="a@example.com", first_name="Jörg", last_name="Müller", company="Bücherei Köln")
HELD = content_fingerprint(A, JORG)


@pytest.mark.parametrize(
    ("entry", "target", "person", "holds"),
    [
        (registered(fingerprint=HELD), A, JORG, True),
        (registered(fingerprint=HELD), A, JORG.model_copy(update={"last_name": "Mueller"}), False),
        (registered(fingerprint=HELD), A, JORG.model_copy(update={"country": "DE"}), False),
        (registered(fingerprint=HELD), A_ELSEWHERE, JORG, False),  # another ON24 event
        (registered(fingerprint=None), A, JORG, False),  # unknown: a claim cleared it, nothing confirmed since
        (registered(fingerprint=HELD, pending=(B,)), A, JORG, False),  # another registrant may exist
        (registered(fingerprint=HELD, intent=Intent("update", A, T, 1)), A, JORG, False),  # an unconfirmed change
        (row(state="cancelled", fingerprint=HELD), A, JORG, False),
        (registered(fingerprint=HELD), None, None, False),  # a removal
    ],
)
def test_holds_content_only_when_on24_holds_exactly_what_the_message_sends(
    entry: LedgerEntry, target: RegistrantRef | None, person: Person | None, holds: bool
) -> None:
    assert holds_content(entry, target, person) is holds


def test_the_fingerprint_keeps_no_field_in_clear() -> None:
    assert all(part not in HELD for part in ("Jörg", "Müller", "example", "Köln")) and len(HELD) == 32
