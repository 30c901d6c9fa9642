"""tools.replay's pure part: which messages are selected, and what a body looks like when it is sent again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tools.replay_rules import Candidate, Filters, assume_utc, describe, keep_order, parse_age, prepare, select

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ORG = "7d1f4c2a-9b3e-4f5a-8c6d-2e1f0a9b8c7d"
REG = "3f2a9c1e-7b4d-4e8a-a1c2-5d6e7f809a1b"
EVENT = "b7e1c2d3-4f5a-4b6c-8d9e-0a1b2c3d4e5f"


def canonical(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "schema": "webinar-registration/1",
        "orgId": ORG,
        "action": "register",
        "registrationId": REG,
        "eventId": EVENT,
        "on24EventId": "4471234",
        "attendee": {"email": "zoe@fabrikam.example", "firstName": "Zoe", "lastName": "Ang"},
    }
    body.update(changes)
    return body


def candidate(body: dict[str, object] | bytes, *, age: timedelta = timedelta(hours=1), **changes: object) -> Candidate:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    fields: dict[str, object] = {
        "source": "dead-letter",
        "ref": "17",
        "message_id": "m-17",
        "body": raw,
        "reason": "MaxDeliveryCountExceeded - Message could not be consumed after 10 delivery attempts.",
        "at": NOW - age,
        "org_id": ORG,
    }
    fields.update(changes)
    return Candidate(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90m", timedelta(minutes=90)), ("12h", timedelta(hours=12)), ("3d", timedelta(days=3)),
     ("2w", timedelta(weeks=2)), ("1d12h", timedelta(hours=36)), (" 5 D ", timedelta(days=5))],
)  # fmt: skip
def test_ages(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["", "3", "3 days", "-1h", "1h and 2m", "h"])
def test_what_is_not_an_age(text: str) -> None:
    with pytest.raises(ValueError, match="not an age"):
        parse_age(text)


def test_filters_by_reason_org_age_and_replayed_oldest_first_with_a_limit() -> None:
    other = "1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6"
    items = [
        candidate(canonical(), ref="a", age=timedelta(hours=5)),
        candidate(canonical(), ref="b", age=timedelta(minutes=5)),
        candidate(canonical(), ref="c", age=timedelta(days=3), reason="TTLExpiredException"),
        candidate(canonical(), ref="d", age=timedelta(hours=2), org_id=other),
        candidate(canonical(), ref="e", age=timedelta(hours=3), replayed_at=NOW),
        candidate(canonical(), ref="f", at=None),
    ]

    def refs(**filters: object) -> list[str]:
        return [c.ref for c in select(items, Filters(**filters), NOW)]  # type: ignore[arg-type]

    assert refs() == ["f", "c", "a", "d", "b"], "oldest first, undated first; replayed left out"
    assert refs(include_replayed=True) == ["f", "c", "a", "e", "d", "b"]
    assert refs(reason="maxdeliverycount") == ["f", "a", "d", "b"]
    assert refs(org_id=ORG.upper()) == ["f", "c", "a", "b"], "org ids are case-insensitive GUIDs"
    assert refs(older_than=timedelta(hours=1)) == ["c", "a", "d"]
    assert refs(newer_than=timedelta(hours=4)) == ["d", "b"]
    assert refs(older_than=timedelta(hours=1), newer_than=timedelta(days=1), limit=1) == ["a"]


def test_keep_order_writes_the_original_time_into_a_canonical_body_without_one() -> None:
    data = canonical()
    assert keep_order(data, candidate(data)) == "occurredAt set to the original time"
    assert data["occurredAt"] == (NOW - timedelta(hours=1)).isoformat()
    own = canonical(occurredAt="2026-11-20T09:00:00Z")
    assert keep_order(own, candidate(own)) is None and own["occurredAt"] == "2026-11-20T09:00:00Z"
    dataverse = {"MessageName": "Create", "OperationCreatedOn": "/Date(1700000000000)/"}
    assert keep_order(dataverse, candidate(dataverse)) is None and "occurredAt" not in dataverse
    undated = canonical()
    assert keep_order(undated, candidate(undated, at=None)) is None


@pytest.mark.parametrize(
    ("value", "fixed"),
    [("2026-11-24T09:15:00", "2026-11-24T09:15:00Z"), ("2026-11-24T09:15:00.1234567", "2026-11-24T09:15:00.1234567Z"),
     ("2026-11-24T09:15", "2026-11-24T09:15Z"), ("2026-11-24T09:15:00+01:00", None), ("yesterday", None),
     ("2026-11-24 09:15:00", "2026-11-24 09:15:00Z")],
)  # fmt: skip
def test_assume_utc_appends_z_to_a_time_without_offset_only(value: str, fixed: str | None) -> None:
    data = canonical(occurredAt=value)
    change = assume_utc(data, candidate(data))
    assert (change is not None) == (fixed is not None)
    assert data["occurredAt"] == (fixed or value)


def test_prepare_says_whether_registerattendee_takes_the_body_now() -> None:
    naive = candidate(canonical(occurredAt="2026-11-24T09:15:00"), source="rejected")
    still = prepare(naive)
    assert not still.ready and "occurredAt" in (still.problem or "")
    fixed = prepare(naive, ["assume-utc"])
    assert fixed.ready and fixed.changes == ("occurredAt read as UTC",)
    assert json.loads(fixed.body)["occurredAt"] == "2026-11-24T09:15:00Z"
    with pytest.raises(KeyError):
        prepare(naive, ["guess"])


def test_a_body_that_needs_no_change_is_sent_byte_for_byte() -> None:
    raw = json.dumps(canonical(occurredAt="2026-11-24T09:15:00Z"), indent=2).encode()
    assert prepare(candidate(raw)).body == raw
    junk = prepare(candidate(b"\xff not json"))
    assert junk.body == b"\xff not json" and not junk.ready


def test_the_operators_line_names_ids_and_reasons_never_the_person() -> None:
    line = describe(prepare(candidate(canonical())), NOW)
    assert "dead-letter 17" in line and ORG in line and "60m" in line and line.endswith("-> ok")
    assert "zoe" not in line.lower() and "fabrikam" not in line
