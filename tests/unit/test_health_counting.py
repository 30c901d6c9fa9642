"""The registration counts from the tally's UTC time texts (compared as text, not parsed per row) equal the counts
from the same instants parsed as times: the 24-hour window's edge, whole seconds, failures and the last success."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from shared.health.counting import KEEP_HOURS, Contribution, count_contributions

NOW = datetime(2026, 12, 6, 23, 30, 15, 250_000, tzinfo=UTC)
OUTCOMES = ("registered", "updated", "cancelled", "failed", "skipped")
BERLIN = timezone(timedelta(hours=1))


def offsets() -> st.SearchStrategy[timedelta]:
    """Around the window's edge (to the microsecond and whole seconds) and anywhere in the last two days."""
    edge = NOW - KEEP_HOURS
    return st.one_of(
        st.integers(-3, 3).map(lambda us: (NOW - edge) + timedelta(microseconds=us)),
        st.integers(-3, 3).map(lambda s: (NOW - edge.replace(microsecond=0)) + timedelta(seconds=s)),
        st.integers(0, 48 * 3600).map(lambda s: timedelta(seconds=s)),
        st.integers(0, 48 * 3600 * 10**6).map(lambda us: timedelta(microseconds=us)),
    )


@given(st.lists(st.tuples(st.sampled_from(OUTCOMES), offsets(), st.booleans()), min_size=1, max_size=40))
def test_counting_utc_texts_equals_counting_parsed_times(rows: list[tuple[str, timedelta, bool]]) -> None:
    people = ("jörg.müller", "åsa.ødegård", "иван.петров")
    as_utc, as_berlin = [], []
    for i, (outcome, ago, at_provider) in enumerate(rows):
        at = NOW - ago
        reason = f"ON24 answered 500 for {people[i % 3]}" if outcome == "failed" else ""
        registration = f"reg-{i:03}"
        as_utc.append((registration, Contribution(outcome, at_provider, "7001", at.isoformat(), reason)))
        as_berlin.append(
            (registration, Contribution(outcome, at_provider, "7001", at.astimezone(BERLIN).isoformat(), reason))
        )
    assert count_contributions(as_utc, NOW) == count_contributions(as_berlin, NOW)
