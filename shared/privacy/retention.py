"""Retention, run by the PullMetrics timer within its budget: purges still running, rejected bodies past their
retention, and the emails of closed webinars' ledger rows (see the package docstring)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta

from shared.privacy.ports import HousekeepingReport, PrivacyOptions, PrivacyPorts
from shared.privacy.purge import BATCH_ROWS, counts_text, purge_step
from shared.store.ledger import LedgerEntry
from shared.store.purges import PURGED_PARTS
from shared.store.sync_state import WebinarSyncState
from shared.store.tombstones import TOMBSTONE_RETENTION

_log = logging.getLogger(__name__)


RETENTION_RECHECK = timedelta(days=1)  # a cleared webinar is looked at again daily, for rows written since
RETENTION_OVERLAP = timedelta(minutes=10)  # clock differences between instances writing UpdatedAt
CLEAR_BATCH = 100  # ledger rows cleared per entity group transaction


def closes_at(state: WebinarSyncState, grace: timedelta) -> datetime | None:
    """When the webinar's ledger rows may drop their emails: the end of its metrics window (on-demand end plus
    grace, already in ``window_end``), as ON24's schedule says it. For a webinar ON24 currently says it does not
    know (``not found``, re-checked with backoff) or stopped knowing for good (``gone``, see
    ``shared.metrics.pull``), its window end plus the grace again: a removal may still need the emails.
    None while the window is unknown or a pull of it is unfinished (matching may still need the emails)."""
    if state.window_end is None or state.pending_end is not None:
        return None
    return state.window_end + grace if state.status in ("not found", "gone") else state.window_end


def retention_due(state: WebinarSyncState, now: datetime, grace: timedelta) -> bool:
    """A closed webinar whose rows were never cleared, whose pass is unfinished, or last cleared a day ago."""
    closed = closes_at(state, grace)
    if closed is None or now < closed:
        return False
    if state.retention_cursor is not None or state.retention_cleared_at is None:
        return True
    return now - state.retention_cleared_at >= RETENTION_RECHECK


def why_kept(entry: LedgerEntry, now: datetime) -> str | None:
    """Why a row must keep its personal data for now (registration work on it is not finished), or None."""
    if entry.lease_id and entry.lease_until and entry.lease_until > now:
        return "leased"
    if entry.quiet_until and entry.quiet_until > now:
        return "quiet"
    if entry.intent is not None:
        return "intent"
    current = entry.current
    if any(current is None or not ref.same(current) for ref in entry.pending):
        return "pending"
    return None


# ---- the timer's share: purges, expiry, retention ---------------------------------------------------------------
def housekeeping(ports: PrivacyPorts, options: PrivacyOptions, *, budget_seconds: float) -> HousekeepingReport:
    """One timer run's privacy work, oldest obligation first, within ``budget_seconds``; what is left waits
    for the next run (every step resumes where it stopped). One step's failure is logged and the others run.

    Raises:
        Nothing: storage faults are recorded in the report (the metrics run that follows meets them too).
    """
    deadline = ports.monotonic() + budget_seconds
    report = HousekeepingReport()
    steps: list[tuple[str, Callable[[PrivacyPorts, PrivacyOptions, float, HousekeepingReport], None]]] = [
        ("purges", _continue_purges),
        ("rejected bodies", _expire_rejected),
        ("forget tombstones", _expire_tombstones),
        ("ledger retention", _clear_closed_webinars),
    ]
    for name, step in steps:
        if ports.monotonic() >= deadline:
            report.out_of_time = True
            break
        try:
            step(ports, options, deadline, report)
        except Exception as exc:
            report.errors.append(f"{name}: {type(exc).__name__}: {exc}"[:500])
            _log.error("housekeeping: %s failed: %s", name, exc, extra={"error": type(exc).__name__})
    return report


def _continue_purges(ports: PrivacyPorts, options: PrivacyOptions, deadline: float, report: HousekeepingReport) -> None:
    for request in ports.purges.list():
        if ports.monotonic() >= deadline:
            report.out_of_time = True
            return
        ports.orgs.delete(request.org_id)  # the off switch stays off while the purge runs
        outcome = purge_step(ports, request, max_rows=None, deadline=deadline)
        swept = {part: outcome.request.deleted[part] - request.deleted.get(part, 0) for part in PURGED_PARTS}
        report.purged[request.org_id] = swept
        if outcome.closed:
            report.purges_closed.append(request.org_id)
        else:
            report.out_of_time = report.out_of_time or not outcome.finished
        _log.info(
            "housekeeping: purge of org %s: %s this run; %s",
            request.org_id,
            counts_text(swept),
            "finished" if outcome.closed else "final check pending" if outcome.finished else "continues next run",
            extra={"org_id": request.org_id, "purge_finished": outcome.closed},
        )


def _expire_rejected(ports: PrivacyPorts, options: PrivacyOptions, deadline: float, report: HousekeepingReport) -> None:
    cutoff = ports.clock() - options.rejected_retention
    while ports.monotonic() < deadline:  # rows kept before issue 18 go to their org's partition first
        if ports.rejected.move_legacy(limit=BATCH_ROWS)[1]:
            break
    while ports.monotonic() < deadline:
        deleted, finished = ports.rejected.expire(cutoff, limit=BATCH_ROWS)
        report.rejected_expired += deleted
        if finished:
            break
    else:
        report.out_of_time = True
    if report.rejected_expired:
        _log.info(
            "housekeeping: %d rejected messages (with their body blobs) kept longer than %d days deleted",
            report.rejected_expired,
            options.rejected_retention.days,
            extra={"rejected_expired": report.rejected_expired},
        )


def _expire_tombstones(
    ports: PrivacyPorts, options: PrivacyOptions, deadline: float, report: HousekeepingReport
) -> None:
    """Tombstones outlive every way a register ranked before their forget can come back (``TOMBSTONE_RETENTION``),
    kept rejected bodies included."""
    cutoff = ports.clock() - max(TOMBSTONE_RETENTION, options.rejected_retention)
    while ports.monotonic() < deadline:
        deleted, finished = ports.tombstones.expire(cutoff, limit=BATCH_ROWS)
        report.tombstones_expired += deleted
        if finished:
            return
    report.out_of_time = True


def _clear_closed_webinars(
    ports: PrivacyPorts, options: PrivacyOptions, deadline: float, report: HousekeepingReport
) -> None:
    now = ports.clock()
    due = [s for s in ports.sync.list_all() if retention_due(s, now, options.grace)]
    # Unfinished passes first, then never cleared, then the webinar that closed longest ago.
    due.sort(key=lambda s: (s.retention_cursor is None, s.retention_cleared_at is not None, s.window_end or now))
    for index, state in enumerate(due):
        if ports.monotonic() >= deadline:
            report.webinars_left += len(due) - index
            report.out_of_time = True
            return
        _clear_webinar(ports, state, now, deadline, report)


def _clear_webinar(
    ports: PrivacyPorts, state: WebinarSyncState, now: datetime, deadline: float, report: HousekeepingReport
) -> None:
    """One retention pass over a closed webinar's rows that hold personal data; it stops at ``deadline`` with a
    cursor and resumes there. Only a pass run whole within one run, leaving nothing, marks the webinar cleared."""
    resumed = state.retention_cursor is not None
    # The webinar's match index holds registrant ids and keyed email hashes: it goes with the emails (idempotent).
    ports.indexes.delete(state.org_id, state.webinar_id)
    since = None if resumed or state.retention_cleared_at is None else state.retention_cleared_at - RETENTION_OVERLAP
    rows = ports.ledger.personal_rows(state.org_id, state.webinar_id, after=state.retention_cursor, updated_since=since)
    kept: dict[str, int] = {}
    cleared = 0
    last_key: str | None = None
    stopped = False
    for chunk in _chunks(rows, CLEAR_BATCH):
        clear = []
        for entry in chunk:
            reason = why_kept(entry, now)
            if reason is None:
                clear.append(entry)
            else:
                kept[reason] = kept.get(reason, 0) + 1
        done = ports.ledger.clear_personal_data(clear, ports.email_hash)
        cleared += len(done)
        if len(done) < len(clear):
            kept["changed"] = kept.get("changed", 0) + len(clear) - len(done)
        last_key = chunk[-1].registration_id
        if ports.monotonic() >= deadline:
            stopped = True
            break
    left = sum(kept.values())
    if stopped:
        saved = replace(state, retention_cursor=last_key)
        report.out_of_time = True
        report.webinars_left += 1
    elif left or resumed:
        saved = replace(state, retention_cursor=None)  # due again next run: a whole pass must find nothing kept
        report.webinars_left += 1
    else:
        saved = replace(state, retention_cursor=None, retention_cleared_at=now)
        report.webinars_cleared += 1
    ports.sync.save(saved)
    report.rows_cleared += cleared
    for reason, count in kept.items():
        report.rows_kept[reason] = report.rows_kept.get(reason, 0) + count
    if cleared or left:
        _log.info(
            "housekeeping: webinar %s of org %s (window closed): personal data cleared from %d ledger rows%s",
            state.webinar_id,
            state.org_id,
            cleared,
            f"; {left} rows keep it until their registration work is finished ({counts_text(kept)})" if left else "",
            extra={"org_id": state.org_id, "on24_event_id": state.webinar_id, "cleared": cleared, "kept": left},
        )


def _chunks(items: Iterable[LedgerEntry], size: int) -> Iterator[list[LedgerEntry]]:
    chunk: list[LedgerEntry] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
