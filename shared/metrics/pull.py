"""One webinar's pull: refresh its schedule, read its attendance pages, write check-ins, move its bookmark.

A pull that runs out of its share of the run (or writes ``chunk_rows`` check-ins) saves a *checkpoint* in the
webinar's sync state (window, next page, anchor, counts) and the next run resumes there. After a pull that spanned
runs the bookmark is set to the start of the window it resumed, so the next pull re-reads that window.

A provider that answers "no such webinar" (404/410) for a webinar's schedule does not end it: one answer may be a
provider fault, a token scoped to the wrong sub-account, or a webinar restored later, and ending it would close its
window at once and let retention clear the emails that a later cancel or forget needs. The webinar is re-checked
with backoff (``NOT_FOUND_BACKOFF``, doubling, capped), keeping its schedule; only after ``NOT_FOUND_CHECKS``
consecutive such answers over at least ``NOT_FOUND_PERIOD`` is it marked ``gone``: its window then ends no earlier
than its real one would, and retention waits the grace after that (``shared.privacy.closes_at``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, Protocol

from shared.emailhash import EmailHasher
from shared.errors import NotFoundError, TransientError
from shared.fieldmap import EMPTY, FieldMapping
from shared.metrics.checkins import CheckinSink, CheckinWriter, Matcher, index_version
from shared.metrics.index import MatchIndex, PageMark
from shared.metrics.noshow import closing_due, whole_window_start, write_no_shows
from shared.metrics.recent import RecentRows
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
from shared.store.ledger import LedgerReader
from shared.store.sync_state import WebinarSyncState
from shared.webinars import Attendance, AttendancePage

_log = logging.getLogger(__name__)

PullStatus = Literal["ok", "partial", "busy", "not found", "skipped", "not due", "error"]
"""``ok`` done; ``partial`` left for the next run; ``busy`` another run holds it; ``not found`` the provider has no
such webinar; ``skipped`` no Dataverse URL; ``not due`` nothing to do yet; ``error`` it failed (reason recorded)."""
NOT_FOUND_BACKOFF = timedelta(hours=1)  # the first re-check; it doubles per answer, up to NOT_FOUND_MAX_BACKOFF
NOT_FOUND_MAX_BACKOFF = timedelta(days=1)
NOT_FOUND_CHECKS = 10
NOT_FOUND_PERIOD = timedelta(days=30)
# What the match index needs of a ledger row (reading 100,000 whole rows costs twice as much).
MATCH_COLUMNS = ("State", "EventUserId", "Email", "CrmEventId", "ContactId", "MetricsHash")


@dataclass
class WebinarReport:
    org_id: str
    webinar_id: str
    status: PullStatus
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None




class IndexStore(Protocol):
    """Where each webinar's match index is kept (``shared.store.blobs.MatchIndexes``)."""

    def load(self, org_id: str, webinar_id: str) -> tuple[bytes | None, str | None]: ...
    def save(self, org_id: str, webinar_id: str, data: bytes, etag: str | None) -> str | None: ...


class PullState(Protocol):
    def save(self, state: WebinarSyncState) -> WebinarSyncState | None: ...


@dataclass(frozen=True)
class Pull:
    """What one pull works with: the org's provider account and CRM, the stores, and its limits."""

    org_id: str
    provider: Attendance
    crm: CheckinSink
    ledger: LedgerReader
    indexes: IndexStore
    sync: PullState
    clock: Callable[[], datetime]
    monotonic: Callable[[], float]
    grace: timedelta
    lookback: timedelta
    chunk_rows: int
    max_parallel: int
    email_key: EmailHasher
    """Keys the match index's email hashes (``shared.emailhash``, purpose ``match-index``)."""
    mapping: FieldMapping = EMPTY
    """The org's field mapping (``shared.fieldmap``): extra check-in and registration columns, the no-show."""
    recent: RecentRows | None = None
    """The timer run's read of the org's recently written ledger rows (``shared.metrics.recent``); None: the
    webinar's index refresh queries its own rows (an on-demand pull)."""


class _OutOfTime(Exception):
    pass


def pull_webinar_now(
    pull: Pull, state: WebinarSyncState, *, signpost: datetime, deadline: float, force: bool = False
) -> WebinarReport:
    """Pull one webinar (``force``: even when it is not due, for an on-demand pull) until done or ``deadline``."""
    now = pull.clock()
    if state.recheck_at is not None and now < state.recheck_at and not force:  # the provider did not know it
        return WebinarReport(pull.org_id, state.webinar_id, "not found", error=state.last_error)
    stale = state.meta_fetched_at is None or now - state.meta_fetched_at >= META_REFRESH
    if stale or state.recheck_at is not None:
        refreshed = _refresh_schedule(pull, state, now)
        if isinstance(refreshed, WebinarReport):
            return refreshed
        state = refreshed
    closing = closing_due(pull.mapping, state, now)  # the no-show pass (shared.metrics.noshow)
    if not force and not closing and not is_due(state, signpost):
        return WebinarReport(pull.org_id, state.webinar_id, "not due")
    return _read_and_write(pull, state, now=now, signpost=signpost, deadline=deadline, closing=closing)


def _refresh_schedule(pull: Pull, state: WebinarSyncState, now: datetime) -> WebinarSyncState | WebinarReport:
    try:
        state = with_schedule(state, pull.provider.schedule(state.webinar_id), now=now, grace=pull.grace)
    except NotFoundError as exc:
        pull.sync.save(not_found(state, now, str(exc)))
        return WebinarReport(pull.org_id, state.webinar_id, "not found", error=str(exc))
    if state.recheck_at is not None or state.not_found_count:  # found again: the streak ends
        recovered = "new" if state.status in ("not found", "gone") else state.status
        state = replace(state, status=recovered, not_found_count=0, not_found_since=None, recheck_at=None)
    saved = pull.sync.save(state)
    if saved is None:
        return WebinarReport(pull.org_id, state.webinar_id, "busy", error="another run is syncing this webinar")
    return saved


def not_found(state: WebinarSyncState, now: datetime, error: str) -> WebinarSyncState:
    """The webinar's state after the provider said it has no such webinar (see the module docstring)."""
    count, since = state.not_found_count + 1, state.not_found_since or now
    if count >= NOT_FOUND_CHECKS and now - since >= NOT_FOUND_PERIOD:
        _log.warning(
            "metrics: webinar %s of org %s: the provider has not known it for %d checks since %s; marked gone",
            state.webinar_id,
            state.org_id,
            count,
            since.isoformat(),
            extra={"org_id": state.org_id, "on24_event_id": state.webinar_id},
        )
        return replace(
            state,
            status="gone",
            last_error=f"{error} ({count} checks since {since.isoformat()})",
            last_attempt_at=now,
            not_found_count=count,
            not_found_since=since,
            recheck_at=None,
            window_end=max(state.window_end or now, now),  # never before its real end
            meta_fetched_at=now,
            last_success_at=state.last_success_at or now,
        )
    wait = min(NOT_FOUND_MAX_BACKOFF, NOT_FOUND_BACKOFF * 2 ** (count - 1))
    return replace(
        state,
        status="not found",
        last_error=error,
        last_attempt_at=now,
        not_found_count=count,
        not_found_since=since,
        recheck_at=now + wait,
    )


def _read_and_write(
    pull: Pull, state: WebinarSyncState, *, now: datetime, signpost: datetime, deadline: float, closing: bool = False
) -> WebinarReport:
    resumed = state.pending_end is not None
    start, end, _ = pull_window(state, signpost=signpost, lookback=pull.lookback)
    if closing and not resumed:  # the no-show pass reads the whole list
        start = whole_window_start(state)
    index = _match_index(pull, state.webinar_id, now)
    matcher = Matcher(index.email_key, index.rows.values())
    writer = CheckinWriter(pull.org_id, state.webinar_id, pull.crm, index, matcher, pull.max_parallel, pull.mapping)
    counts = writer.counts
    if resumed:  # resumed pull: keep its tally
        counts.update({k: v for k, v in state.counts.items() if k in counts})
    first_state = state
    try:
        for page, position in _pages(pull.provider, first_state, start, end, resumed=resumed):
            mark = index.unchanged(page.index, page.fingerprint) if position == 0 else None
            if mark is not None:
                writer.skip(mark.size, mark.matched, mark.unmatched)
            else:
                matched, unmatched = writer.take(page.rows[position:])
                if position == 0:  # a page read whole: remember it as it is once its check-ins are written
                    index.mark_page(page.index, PageMark(page.fingerprint, page.size, len(matched), unmatched), matched)
            out_of_time = pull.monotonic() >= deadline
            if writer.pending >= pull.chunk_rows or out_of_time:
                index.unmark_pages_of(writer.flush())
                if out_of_time and index.changed:
                    _save_index(pull, index)
                saved = pull.sync.save(
                    replace(
                        state,
                        pending_start=start,
                        pending_end=end,
                        pending_page=page.index + 1,
                        pending_anchor=tuple(k for k in map(attendee_key, page.rows) if k),
                        counts=dict(counts),
                        status="in progress",
                        last_attempt_at=now,
                    )
                )
                if saved is None:
                    return WebinarReport(pull.org_id, state.webinar_id, "busy", counts, "another run took over")
                state = saved
                if out_of_time:
                    raise _OutOfTime
        index.unmark_pages_of(writer.flush())
        if closing and start == whole_window_start(state) and not writer.counts["failed"]:
            state = _mark_no_shows(pull, state, index, counts)
        if index.changed:
            _save_index(pull, index)
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


def _mark_no_shows(pull: Pull, state: WebinarSyncState, index: MatchIndex, counts: dict[str, int]) -> WebinarSyncState:
    """The closing pass read the whole list: write the no-shows; the mark is set only when all were written."""
    written, failed = write_no_shows(pull.crm, pull.mapping, index, max_parallel=pull.max_parallel)
    counts["noShows"] = written
    where = {"org_id": pull.org_id, "on24_event_id": state.webinar_id}
    for reg, reason in list(failed.items())[:5]:
        _log.error("metrics: no-show of registration %s (webinar %s, org %s) refused by Dataverse: %s", reg,
                   state.webinar_id, pull.org_id, reason, extra={**where, "registration_id": reg})  # fmt: skip
    if failed:
        counts["failed"] += len(failed)
        return state
    _log.info("metrics: webinar %s of org %s closed: %d no-shows marked", state.webinar_id, pull.org_id, written,
              extra={"org_id": pull.org_id, "on24_event_id": state.webinar_id})  # fmt: skip
    return replace(state, no_show_mark=pull.mapping.no_show_fingerprint)


def _match_index(pull: Pull, webinar_id: str, now: datetime) -> MatchIndex:
    """The webinar's match index, brought up to date with the ledger rows written since it was last refreshed."""
    stored, etag = pull.indexes.load(pull.org_id, webinar_id)
    index = MatchIndex.from_bytes(pull.org_id, webinar_id, index_version(pull.mapping), pull.email_key, stored, etag)
    since = index.refresh_since()
    if since is not None and pull.recent is not None:  # the run's one read of the org's recent rows
        recent, as_of = pull.recent.written_since(webinar_id, since, MATCH_COLUMNS)
        index.refresh(recent, min(now, as_of))
        return index
    changed = pull.ledger.entries(pull.org_id, webinar_id=webinar_id, columns=MATCH_COLUMNS, updated_since=since)
    index.refresh(changed, now)
    return index


def _save_index(pull: Pull, index: MatchIndex) -> None:
    """Save the index if no other pull saved it meanwhile; else merge into theirs: the check-ins both pulls may
    have written are forgotten there, so the next pull writes them again (CRM holds whichever write was last)."""
    etag = pull.indexes.save(pull.org_id, index.webinar_id, index.to_bytes(), index.etag)
    for _ in range(3):
        if etag is not None:
            index.etag, index.changed = etag, False
            return
        stored = pull.indexes.load(pull.org_id, index.webinar_id)
        theirs = MatchIndex.from_bytes(pull.org_id, index.webinar_id, index.hash_version, index.email_key, *stored)
        theirs.forget_writes(index.written)
        etag = pull.indexes.save(pull.org_id, index.webinar_id, theirs.to_bytes(), theirs.etag)
    raise TransientError(f"the match index of webinar {index.webinar_id} (org {pull.org_id!r}) keeps changing")


def _pages(
    provider: Attendance, state: WebinarSyncState, start: datetime | None, end: datetime, *, resumed: bool
) -> Iterator[tuple[AttendancePage, int]]:
    """(page, how many of its attendees an earlier run of this pull already wrote), in list order."""
    first = 0
    if resumed and state.pending_page > 0:
        page, position = _resume(provider, state, start, end)
        if page is not None:
            yield page, position
            first = page.index + 1
    for page in provider.attendance_pages(state.webinar_id, start=start, end=end, first_page=first):
        yield page, 0


def _resume(
    provider: Attendance, state: WebinarSyncState, start: datetime | None, end: datetime
) -> tuple[AttendancePage | None, int]:
    """Where a resumed pull picks up: (the page, how many of its attendees were written), or (None, 0).

    Re-reads the page before the recorded one (and up to ``MAX_STEP_BACK_PAGES`` more, if the list moved up
    by more than a page) and continues after the last anchored attendee found. Without an anchor, or when none
    is found, the pending window is read again from page 0 (idempotent writes; unchanged rows are skipped).
    """
    if state.pending_anchor:
        last = state.pending_page - 1
        for page_index in range(last, max(-1, last - 1 - MAX_STEP_BACK_PAGES), -1):
            pages = provider.attendance_pages(state.webinar_id, start=start, end=end, first_page=page_index)
            page = next(iter(pages), None)
            position = anchor_position(page.rows, state.pending_anchor) if page is not None else None
            if page is not None and position is not None:
                return page, position
        _log.info(
            "metrics: webinar %s of org %s: the list moved too far since the last run; re-reading its window",
            state.webinar_id,
            state.org_id,
            extra={"org_id": state.org_id, "on24_event_id": state.webinar_id},
        )
    return None, 0


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
