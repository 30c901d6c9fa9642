"""One read of an org's recently written ledger rows per timer run, shared by the match-index refreshes of its
webinars.

Why: each due webinar's index refresh asked Table Storage for "this webinar's rows written since". Such a query
filters on columns that are not keys, so the service evaluates it over the org's whole partition: a run over 100
due webinars cost 100 scans of a 500,000-row partition although they returned a handful of rows.
Here the run's webinar discovery reads the org's rows written since a little before its own mark once (all
webinars, as far back as the index refreshes ask), and the refreshes whose mark is not older take theirs from it
in memory.

Rows written after that read are not in it: a refresh served from it records the read's start as its mark
(``as_of``), so the next refresh (15 minutes of overlap) reads them. A read of more than ``MAX_ROWS`` rows (a
campaign burst) is not kept: the webinars then query their own rows, as before, and memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Final

from shared.store.ledger import LedgerEntry, LedgerReader

MAX_ROWS: Final = 20_000




class RecentRows:
    """An org's ledger rows written since some time, read once per run (see the module docstring)."""

    def __init__(
        self, ledger: LedgerReader, org_id: str, clock: Callable[[], datetime], *, max_rows: int = MAX_ROWS
    ) -> None:
        self._ledger, self._org_id, self._clock, self._max_rows = ledger, org_id, clock, max_rows
        self._since: datetime | None = None
        self._as_of: datetime | None = None
        self._rows: dict[str, list[LedgerEntry]] = {}
        self._burst = False

    def written_since(
        self, webinar_id: str, since: datetime, columns: Sequence[str]
    ) -> tuple[Iterable[LedgerEntry], datetime]:
        """The webinar's rows written at or after ``since`` and the time they are complete up to (``as_of``)."""
        if not self._burst and (self._since is None or since < self._since):
            self._read(since, columns)
        if self._burst or self._as_of is None:
            as_of = self._clock()
            own = self._ledger.entries(self._org_id, webinar_id=webinar_id, columns=columns, updated_since=since)
            return own, as_of
        rows = [e for e in self._rows.get(webinar_id, ()) if e.updated_at is not None and e.updated_at >= since]
        return rows, self._as_of

    def webinars_since(self, since: datetime, *, read_from: datetime, columns: Sequence[str]) -> set[str] | None:
        """The webinars of the rows written at or after ``since`` (discovery), read from ``read_from`` (earlier:
        as far back as the run's index refreshes will ask) so one read serves both; None after a burst."""
        if not self._burst and (self._since is None or read_from < self._since):
            self._read(read_from, columns)
        if self._burst or self._as_of is None:
            return None
        return {w for w, rows in self._rows.items() if w and any(e.updated_at and e.updated_at >= since for e in rows)}

    def _read(self, since: datetime, columns: Sequence[str]) -> None:
        as_of = self._clock()
        wanted = sorted({*columns, "On24EventId", "UpdatedAt"})
        rows: dict[str, list[LedgerEntry]] = {}
        for count, entry in enumerate(self._ledger.entries(self._org_id, columns=wanted, updated_since=since)):
            if count >= self._max_rows:  # a burst: not kept (an earlier mark would read more); each webinar
                self._since, self._as_of, self._rows, self._burst = None, None, {}, True  # reads its own rows
                return
            rows.setdefault(entry.webinar_id or "", []).append(entry)
        self._since, self._as_of, self._rows = since, as_of, rows
