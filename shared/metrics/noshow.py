"""No-shows: once a webinar's pull window has closed, registrants with no attendance get the registration column
the org's field mapping names (``noShow``), once.

Why a closing pass: "no attendance" is only known for sure after reading the whole attendance list. The first
run after the window closes pulls the webinar once more over its whole window (unchanged pages are skipped by their
fingerprint and keep their page marks), so every attendee has been matched to its registration on some page; a
registration still unmatched (no page, no check-in hash) never attended. A cancelled registration is not a no-show.
The webinar's sync state records the fingerprint of the ``noShow`` entry the no-shows were written under
(``no_show_mark``): a later run does nothing, a changed ``noShow`` writes them once more (other mapping changes
do not), a write that failed is retried next run.
"""

from __future__ import annotations

from datetime import datetime

from shared.fieldmap import FieldMapping
from shared.metrics.checkins import CheckinSink
from shared.metrics.index import MatchIndex
from shared.metrics.schedule import START_MARGIN
from shared.store.sync_state import WebinarSyncState


def closing_due(mapping: FieldMapping, state: WebinarSyncState, now: datetime) -> bool:
    """Whether the webinar needs its closing pass: a no-show column is mapped, the window has closed, the
    provider still knows the webinar, and the no-shows were not written under this mapping yet."""
    if mapping.no_show is None or state.window_end is None or now <= state.window_end:
        return False
    if state.status == "gone" or state.recheck_at is not None:
        return False
    return state.no_show_mark != mapping.no_show_fingerprint


def whole_window_start(state: WebinarSyncState) -> datetime | None:
    """The start of a pull that reads the webinar's whole attendance list (as its first pull does)."""
    return state.live_start - START_MARGIN if state.live_start else None


def no_shows(index: MatchIndex) -> list[str]:
    """Registrations of the webinar (not cancelled) that no attendee matched: on no page, with no check-in."""
    return sorted(
        reg
        for reg, row in index.rows.items()
        if row.state == "registered" and row.page < 0 and row.metrics_hash is None
    )


def write_no_shows(
    crm: CheckinSink, mapping: FieldMapping, index: MatchIndex, *, max_parallel: int
) -> tuple[int, dict[str, str]]:
    """Set the mapped no-show column on every no-show, in ``$batch``; returns (written, failed with reasons)."""
    if mapping.no_show is None:
        return 0, {}
    values = {mapping.no_show.column: mapping.no_show.value}
    rows = [(reg, dict(values)) for reg in no_shows(index)]
    if not rows:
        return 0, {}
    result = crm.update_registrations(rows, max_parallel=max_parallel)
    return len(result.succeeded), dict(result.failed)
