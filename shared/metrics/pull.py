"""One webinar's pull: refresh its schedule, read its attendance pages, write check-ins, move its bookmark.

A pull that runs out of its share of the run (or writes ``chunk_rows`` check-ins) saves a *checkpoint* in the
webinar's sync state (window, next page, anchor, counts) and the next run resumes there. After a pull that spanned
runs the bookmark is set to the start of the window it resumed, so the next pull re-reads that window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, Protocol

from shared.errors import NotFoundError
from shared.metrics.checkins import CheckinSink, CheckinWriter, HashStore, Matcher
from shared.metrics.schedule import (
    MAX_STEP_BACK_PAGES,
    META_REFRESH,
    anchor_position,
    attendee_key,
    bookmark_after,
    is_due,
    pull_window,
    with_schedule,
)
from shared.store.ledger import LedgerEntry
from shared.store.sync_state import WebinarSyncState
from shared.webinars import Attendance, AttendanceRow

_log = logging.getLogger(__name__)

PullStatus = Literal["ok", "partial", "busy", "not found", "skipped", "not due", "error"]
"""``ok`` done; ``partial`` left for the next run; ``busy`` another run holds it; ``not found`` the provider has no
such webinar; ``skipped`` no Dataverse URL; ``not due`` nothing to do yet; ``error`` it failed (reason recorded)."""
# What matching and check-in fields need of a ledger row (reading 100,000 whole rows costs twice as much).
MATCH_COLUMNS = ("State", "EventUserId", "Email", "CrmEventId", "ContactId", "MetricsHash")


@dataclass
class WebinarReport:
    org_id: str
    webinar_id: str
    status: PullStatus
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None


class PullLedger(HashStore, Protocol):
    def entries(
        self, org_id: str, *, webinar_id: str | None = None, columns: Sequence[str] | None = None
    ) -> Iterator[LedgerEntry]: ...


class PullState(Protocol):
    def save(self, state: WebinarSyncState) -> WebinarSyncState | None: ...


@dataclass(frozen=True)
class Pull:
    """What one pull works with: the org's provider account and CRM, the stores, and its limits."""

    org_id: str
    provider: Attendance
    crm: CheckinSink
    ledger: PullLedger
    sync: PullState
    clock: Callable[[], datetime]
    monotonic: Callable[[], float]
    grace: timedelta
    lookback: timedelta
    chunk_rows: int
    max_parallel: int


class _OutOfTime(Exception):
    pass


def pull_webinar_now(
    pull: Pull, state: WebinarSyncState, *, signpost: datetime, deadline: float, force: bool = False
) -> WebinarReport:
    """Pull one webinar (``force``: even when it is not due, for an on-demand pull) until done or ``deadline``."""
    now = pull.clock()
    if state.meta_fetched_at is None or now - state.meta_fetched_at >= META_REFRESH:
        refreshed = _refresh_schedule(pull, state, now)
        if isinstance(refreshed, WebinarReport):
            return refreshed
        state = refreshed
    if not force and not is_due(state, signpost):
        return WebinarReport(pull.org_id, state.webinar_id, "not due")
    return _read_and_write(pull, state, now=now, signpost=signpost, deadline=deadline)


def _refresh_schedule(pull: Pull, state: WebinarSyncState, now: datetime) -> WebinarSyncState | WebinarReport:
    try:
        state = with_schedule(state, pull.provider.schedule(state.webinar_id), now=now, grace=pull.grace)
    except NotFoundError as exc:
        gone = replace(
            state,
            status="not found",
            last_error=str(exc),
            last_attempt_at=now,
            window_end=now,
            meta_fetched_at=now,
            last_success_at=now,
        )
        pull.sync.save(gone)
        return WebinarReport(pull.org_id, state.webinar_id, "not found", error=str(exc))
    saved = pull.sync.save(state)
    if saved is None:
        return WebinarReport(pull.org_id, state.webinar_id, "busy", error="another run is syncing this webinar")
    return saved


def _read_and_write(
    pull: Pull, state: WebinarSyncState, *, now: datetime, signpost: datetime, deadline: float
) -> WebinarReport:
    resumed = state.pending_end is not None
    start, end, _ = pull_window(state, signpost=signpost, lookback=pull.lookback)
    matcher = Matcher(pull.ledger.entries(pull.org_id, webinar_id=state.webinar_id, columns=MATCH_COLUMNS))
    writer = CheckinWriter(pull.org_id, state.webinar_id, pull.crm, pull.ledger, matcher, pull.max_parallel)
    counts = writer.counts
    if resumed:  # resumed pull: keep its tally
        counts.update({k: v for k, v in state.counts.items() if k in counts})
    first_state = state
    try:
        for page, new, whole in _pages(pull.provider, first_state, start, end, resumed=resumed):
            writer.take(new)
            if writer.pending >= pull.chunk_rows or pull.monotonic() >= deadline:
                writer.flush()
                saved = pull.sync.save(
                    replace(
                        state,
                        pending_start=start,
                        pending_end=end,
                        pending_page=page + 1,
                        pending_anchor=tuple(k for k in map(attendee_key, whole) if k),
                        counts=dict(counts),
                        status="in progress",
                        last_attempt_at=now,
                    )
                )
                if saved is None:
                    return WebinarReport(pull.org_id, state.webinar_id, "busy", counts, "another run took over")
                state = saved
                if pull.monotonic() >= deadline:
                    raise _OutOfTime
        writer.flush()
    except _OutOfTime:
        _log.info(
            "metrics: webinar %s of org %s continues next run (page %d)",
            state.webinar_id,
            pull.org_id,
            state.pending_page,
            extra={"org_id": pull.org_id, "on24_event_id": state.webinar_id, **counts},
        )
        return WebinarReport(pull.org_id, state.webinar_id, "partial", counts)
    return _finish(pull, state, counts, now=now, window=(start, end), resumed=resumed)


def _pages(
    provider: Attendance, state: WebinarSyncState, start: datetime | None, end: datetime, *, resumed: bool
) -> Iterator[tuple[int, Sequence[AttendanceRow], Sequence[AttendanceRow]]]:
    """(page index, the attendees on it new to this pull, the whole page), in list order."""
    first = 0
    if resumed and state.pending_page > 0:
        page_index, rows, position = _resume(provider, state, start, end)
        if page_index >= 0:
            yield page_index, rows[position:], rows
            first = page_index + 1
    for page_index, rows in provider.attendance_pages(state.webinar_id, start=start, end=end, first_page=first):
        yield page_index, rows, rows


def _resume(
    provider: Attendance, state: WebinarSyncState, start: datetime | None, end: datetime
) -> tuple[int, list[AttendanceRow], int]:
    """Where a resumed pull picks up: (page index, that page's attendees, how many of them were written).

    Re-reads the page before the recorded one (and up to ``MAX_STEP_BACK_PAGES`` more, if the list moved up
    by more than a page) and continues after the last anchored attendee found. Without an anchor, or when none
    is found, the pending window is read again from page 0 (idempotent writes; unchanged rows are skipped).
    """
    if state.pending_anchor:
        last = state.pending_page - 1
        for page_index in range(last, max(-1, last - 1 - MAX_STEP_BACK_PAGES), -1):
            pages = provider.attendance_pages(state.webinar_id, start=start, end=end, first_page=page_index)
            page = next(iter(pages), None)
            position = anchor_position(page[1], state.pending_anchor) if page is not None else None
            if page is not None and position is not None:
                return page[0], page[1], position
        _log.info(
            "metrics: webinar %s of org %s: the list moved too far since the last run; re-reading its window",
            state.webinar_id,
            state.org_id,
            extra={"org_id": state.org_id, "on24_event_id": state.webinar_id},
        )
    return -1, [], 0


def _finish(
    pull: Pull,
    state: WebinarSyncState,
    counts: dict[str, int],
    *,
    now: datetime,
    window: tuple[datetime | None, datetime],
    resumed: bool,
) -> WebinarReport:
    """The pull is complete: move the bookmark, clear the checkpoint, log the counts."""
    start, end = window
    done = replace(
        state,
        replication_key_value=bookmark_after(state, start, end, resumed=resumed),
        pending_start=None,
        pending_end=None,
        pending_page=0,
        pending_anchor=(),
        last_success_at=now,
        last_attempt_at=now,
        status="ok",
        last_error=None,
        counts=dict(counts),
    )
    pull.sync.save(done)
    _log.info(
        "metrics: webinar %s of org %s synced: %s",
        state.webinar_id,
        pull.org_id,
        ", ".join(f"{k} {v}" for k, v in counts.items()),
        extra={"org_id": pull.org_id, "on24_event_id": state.webinar_id, **counts},
    )
    if counts["unmatched"]:
        _log.warning(
            "metrics: %d attendees of webinar %s (org %s) match no CRM registration (walk-ins)",
            counts["unmatched"],
            state.webinar_id,
            pull.org_id,
            extra={"org_id": pull.org_id, "on24_event_id": state.webinar_id},
        )
    return WebinarReport(pull.org_id, state.webinar_id, "ok", counts)
