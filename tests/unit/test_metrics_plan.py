"""The pure parts of PullMetrics: windows, due-ness, priority, matching and check-in fields."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.crm import checkin_id
from shared.emailhash import EmailHasher
from shared.metrics.checkins import METRICS_HASH_VERSION, Matcher, checkin_fields, metrics_hash
from shared.metrics.index import MatchIndex
from shared.metrics.schedule import is_due, priority, pull_window, with_schedule
from shared.on24 import Attendee, On24Event
from shared.on24.provider import attendance_of, schedule_of
from shared.store.ledger import LedgerEntry
from shared.store.sync_state import WebinarSyncState
from shared.webinars import AttendanceRow

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
REG = "3f2a9c1e-7b4d-4e8a-a1c2-5d6e7f809a1b"


def state(**changes: object) -> WebinarSyncState:
    return WebinarSyncState(org_id="org", webinar_id="42", **changes)  # type: ignore[arg-type]


def entry(reg: str = REG, **changes: object) -> LedgerEntry:
    base: dict[str, object] = {
        "org_id": "org",
        "registration_id": reg,
        "state": "registered",
        "registrant_id": "9001",
        "email": "Ada@Example.com",
    }
    base.update(changes)
    return LedgerEntry(**base)  # type: ignore[arg-type]


def row(**on24_fields: Any) -> AttendanceRow:
    """An attendance row as the ON24 adapter makes it from ON24's attendee fields."""
    return attendance_of(Attendee(**on24_fields))


def test_checkin_id_is_deterministic_per_org_and_registration() -> None:
    assert checkin_id("org", REG) == checkin_id("ORG", REG.upper())
    assert checkin_id("org", REG) != checkin_id("other-org", REG)
    assert len(checkin_id("org", REG)) == 36


def test_checkin_fields_sum_live_and_on_demand_and_count_interactions() -> None:
    first = datetime(2026, 11, 20, 10, 2, tzinfo=UTC)
    attendee = row(
        liveminutes=40,
        cumulativeliveminutes=45,
        archiveminutes=10,
        askedquestions=2,
        answeredpolls=3,
        firstliveactivity=first,
        lastliveactivity=first + timedelta(minutes=45),
        firstarchiveactivity=first + timedelta(hours=3),
        lastarchiveactivity=first + timedelta(hours=3, minutes=10),
    )
    fields = checkin_fields(entry(crm_event_id="e1", contact_id="c1"), attendee)
    assert fields["msevtmgt_viewingdurationinmins"] == 55, "cumulative live minutes win over a single launch"
    assert fields["msevtmgt_numberofquestionsasked"] == 5
    assert fields["msevtmgt_checkintype"] == 100000001
    assert fields["msevtmgt_checkintime"] == first
    assert fields["msevtmgt_checkouttime"] == first + timedelta(hours=3, minutes=10)
    assert fields["msevtmgt_RegistrationId@odata.bind"] == f"/msevtmgt_eventregistrations({REG})"
    assert fields["msevtmgt_Event@odata.bind"] == "/msevtmgt_events(e1)"
    assert fields["msevtmgt_Contact@odata.bind"] == "/contacts(c1)"


def test_checkin_fields_tolerate_missing_metrics() -> None:
    fields = checkin_fields(entry(), row())
    assert fields["msevtmgt_viewingdurationinmins"] == 0 and fields["msevtmgt_numberofquestionsasked"] == 0
    assert "msevtmgt_checkintime" not in fields and "msevtmgt_Event@odata.bind" not in fields


def test_hash_changes_only_with_the_metrics() -> None:
    a = checkin_fields(entry(), row(liveminutes=5))
    assert metrics_hash(a) == metrics_hash(dict(reversed(list(a.items()))))
    assert metrics_hash(a) != metrics_hash(checkin_fields(entry(), row(liveminutes=6)))


def test_matcher_prefers_registration_id_then_registrant_id_then_email() -> None:
    other = "0e0e0e0e-1111-4222-8333-444444444444"
    index = MatchIndex("org", "42", METRICS_HASH_VERSION, EmailHasher("local:test#match-index", b"k" * 32))
    index.refresh(
        [
            entry(),
            entry(other, registrant_id="7000", email="b@example.com"),
            entry("11111111-1111-4111-8111-111111111111", state="failed", email="c@example.com"),
        ],
        NOW,
    )
    matcher = Matcher(index.email_key, index.rows.values())
    assert matcher.match(row(exteventusercd=REG.upper(), eventuserid="7000")).registration_id == REG
    assert matcher.match(row(exteventusercd="", eventuserid="7000", email="x@y")).registration_id == other
    assert matcher.match(row(email="ADA@example.COM")).registration_id == REG
    assert matcher.match(row(email="c@example.com")) is None, "failed registrations are not matched"
    assert matcher.match(row(email="walk-in@example.com")) is None


def test_window_of_a_first_pull_starts_a_day_before_the_webinar() -> None:
    live = NOW - timedelta(hours=2)
    assert pull_window(state(live_start=live), signpost=NOW, lookback=timedelta(hours=48)) == (
        live - timedelta(days=1),
        NOW,
        0,
    )


def test_window_of_a_later_pull_looks_back_but_not_before_the_webinar() -> None:
    live = NOW - timedelta(days=10)
    bookmark = NOW - timedelta(minutes=15)
    start, end, page = pull_window(
        state(live_start=live, replication_key_value=bookmark), signpost=NOW, lookback=timedelta(hours=48)
    )
    assert (start, end, page) == (bookmark - timedelta(hours=48), NOW, 0)
    start, _, _ = pull_window(
        state(live_start=NOW - timedelta(hours=3), replication_key_value=bookmark),
        signpost=NOW,
        lookback=timedelta(hours=48),
    )
    assert start == NOW - timedelta(hours=3) - timedelta(days=1)


def test_window_of_an_unfinished_pull_is_resumed_as_it_was() -> None:
    pending = state(
        pending_start=NOW - timedelta(days=2),
        pending_end=NOW - timedelta(minutes=20),
        pending_page=7,
        replication_key_value=NOW - timedelta(hours=1),
    )
    assert pull_window(pending, signpost=NOW, lookback=timedelta(hours=48)) == (
        NOW - timedelta(days=2),
        NOW - timedelta(minutes=20),
        7,
    )


def test_due_rules() -> None:
    recent = NOW - timedelta(hours=2)
    assert is_due(state(), NOW), "never pulled"
    assert is_due(state(pending_end=NOW, last_success_at=NOW), NOW), "unfinished"
    assert is_due(state(live_start=recent, last_success_at=NOW - timedelta(minutes=1)), NOW), "recently live"
    old = NOW - timedelta(days=20)
    assert not is_due(state(live_start=old, last_success_at=NOW - timedelta(minutes=30)), NOW), "on demand: hourly"
    assert is_due(state(live_start=old, last_success_at=NOW - timedelta(minutes=61)), NOW)
    assert not is_due(state(live_start=old, window_end=NOW - timedelta(seconds=1), last_success_at=old), NOW)
    assert not is_due(state(live_start=NOW + timedelta(days=5), last_success_at=NOW - timedelta(days=1)), NOW)


def test_priority_puts_unfinished_pulls_then_the_most_recent_webinars_first() -> None:
    a = state(live_start=NOW - timedelta(days=9))
    b = state(live_start=NOW - timedelta(days=1))
    c = state(live_start=NOW - timedelta(days=30), pending_end=NOW)
    assert sorted([a, b, c], key=priority) == [c, b, a]


def test_event_window_runs_to_the_end_of_on_demand_plus_grace() -> None:
    live = NOW - timedelta(days=2)
    event = On24Event(eventid=42, livestart=live, archiveend=live + timedelta(days=90))
    updated = with_schedule(state(), schedule_of(event), now=NOW, grace=timedelta(days=30))
    assert updated.live_start == live and updated.window_end == live + timedelta(days=120)
    empty = schedule_of(On24Event(eventid=42))
    assert with_schedule(state(), empty, now=NOW, grace=timedelta(days=30)).window_end is None


def test_the_standard_check_in_columns_keep_their_version_1_meaning_and_version_2_is_pinned() -> None:
    """Version 1's hash (what every existing ledger row holds, the release before issue 21) of the check-in columns
    built today is unchanged: an org without a field mapping gets the same columns. Version 2's hash of the same
    row is pinned: if it fails, the hash's inputs changed and every check-in in window would be written again. Do
    that only on purpose, by bumping ``METRICS_HASH_VERSION`` (``shared/metrics/checkins.py``) and this pin."""
    first = datetime(2026, 11, 20, 10, 2, tzinfo=UTC)
    known = entry(
        crm_event_id="b7e1c2d3-4f5a-4b6c-8d9e-0a1b2c3d4e5f",
        contact_id="c4d5e6f7-0819-4a2b-9c3d-4e5f60718293",
        registrant_id=None,
        email=None,
    )
    attended = row(
        liveminutes=40,
        cumulativeliveminutes=45,
        archiveminutes=10,
        askedquestions=2,
        answeredpolls=3,
        firstliveactivity=first,
        lastarchiveactivity=first + timedelta(hours=3),
    )
    fields = checkin_fields(known, attended)
    text = json.dumps(fields, sort_keys=True, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))
    assert hashlib.sha256(text.encode("utf-8")).hexdigest()[:32] == "ce6251d895ea8163ba8367e76168560e"
    assert METRICS_HASH_VERSION == 2
    assert metrics_hash(fields) == "2:0f145d32c0dd955e448d2da6a012fb74"
