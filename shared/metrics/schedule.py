"""When and what a metrics pull reads: pure rules over a webinar's sync state (tested with plain values).

A webinar is pulled from its start until its on-demand window closes plus a grace period; recently live webinars
every run, older ones hourly. A pull reads [bookmark - look-back, run start]; one too large for a run resumes at its
recorded page, found again by the *anchor* (short hashes of the last page's attendees) wherever the list moved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.store.sync_state import WebinarSyncState
from shared.webinars import AttendanceRow, WebinarSchedule

META_REFRESH = timedelta(hours=6)
HOT_PERIOD = timedelta(days=3)
COLD_REFRESH = timedelta(hours=1)
START_MARGIN = timedelta(days=1)
MAX_STEP_BACK_PAGES = 3  # how far back a resumed pull looks for its anchor before re-reading its window
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def with_schedule(
    state: WebinarSyncState, schedule: WebinarSchedule, *, now: datetime, grace: timedelta
) -> WebinarSyncState:
    """Record the webinar's schedule: pull from its start until its on-demand window closes, plus grace."""
    start, end = schedule.starts_at, schedule.ends_at
    return replace(
        state,
        live_start=start.astimezone(UTC) if start else None,
        window_end=(end.astimezone(UTC) + grace) if end else None,
        meta_fetched_at=now,
    )


def is_due(state: WebinarSyncState, now: datetime) -> bool:
    """Unfinished, new, recently live (every run) or on demand (hourly) webinars are due; never one the provider
    stopped knowing for good (``gone``, see ``shared.metrics.pull``)."""
    if state.status == "gone" or (state.recheck_at is not None and now < state.recheck_at):
        return False  # the provider did not know it: not before its re-check
    if state.pending_end is not None or state.last_success_at is None:
        return True
    if state.window_end is not None and now > state.window_end:
        return False
    if state.live_start is not None and now < state.live_start - START_MARGIN:
        return False
    recently_live = state.live_start is None or now - state.live_start < HOT_PERIOD
    return recently_live or now - state.last_success_at >= COLD_REFRESH


def next_due(state: WebinarSyncState, now: datetime) -> datetime | None:
    """The earliest time at or after ``now`` at which ``is_due`` holds (the first run from then pulls the
    webinar); None when no run will pull it again (its window has closed, or it is gone)."""
    if state.status == "gone":
        return None
    due = max(now, state.recheck_at) if state.recheck_at is not None else now  # the provider did not know it
    if state.pending_end is not None or state.last_success_at is None:
        return due
    if state.live_start is not None and due < state.live_start - START_MARGIN:
        due = state.live_start - START_MARGIN
    if state.live_start is not None and due - state.live_start >= HOT_PERIOD:
        due = max(due, state.last_success_at + COLD_REFRESH)
    if state.window_end is not None and due > state.window_end:
        return None
    return due


def priority(state: WebinarSyncState) -> tuple[int, float, float]:
    """Sort key: unfinished pulls first, then the one attempted longest ago (never: first), then the most recent
    webinar. Webinars a run did not reach come first in the next run, so many orgs share runs fairly."""
    started = state.live_start.timestamp() if state.live_start else float("inf")
    attempted = (state.last_attempt_at or _EPOCH).timestamp()
    return (0 if state.pending_end is not None else 1, attempted, -started)


def attendee_key(row: AttendanceRow) -> str:
    """A short, stable, non-reversible key of an attendee (for resume anchors; no email is stored)."""
    identity = row.registrant_id or (row.email or "").casefold() or (row.registration_id or "").lower()
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12] if identity else ""


def anchor_position(page: Sequence[AttendanceRow], anchor: Sequence[str]) -> int | None:
    """Index just after the last attendee of ``page`` that the anchor (the last page written) holds; None if none.

    The relative order of the attendees that stay in the list does not change between runs, so everything after
    that attendee is new to the pull, whatever moved in or out before it.
    """
    wanted = set(anchor) - {""}
    positions = [index for index, attendee in enumerate(page) if attendee_key(attendee) in wanted]
    return positions[-1] + 1 if positions else None


def pull_window(
    state: WebinarSyncState, *, signpost: datetime, lookback: timedelta
) -> tuple[datetime | None, datetime, int]:
    """(start, end, next page) of the next pull: the pending one if a run stopped midway, else a new one
    from the bookmark minus the look-back (or the webinar's start) up to the run's signpost."""
    if state.pending_end is not None:
        return state.pending_start, state.pending_end, state.pending_page
    floor = state.live_start - START_MARGIN if state.live_start else None
    start = state.replication_key_value - lookback if state.replication_key_value else floor
    if start is not None and floor is not None:
        start = max(start, floor)
    if start is not None and start > signpost:
        start = signpost
    return start, signpost, 0


def bookmark_after(state: WebinarSyncState, start: datetime | None, end: datetime, *, resumed: bool) -> datetime | None:
    """The bookmark once a pull over [start, end] completed: its end, or, when the pull spanned runs (attendees
    may have moved in behind its cursor), no later than the start of the window it resumed."""
    if resumed:
        return start
    return max(end, state.replication_key_value or end)
