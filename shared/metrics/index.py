"""A webinar's match index: what PullMetrics needs of its ledger rows, and what it last wrote, in one document.

Why: a pull used to read every ledger row of the webinar (100,000 rows, 200 query pages) to match attendees, and
recorded each written check-in's hash with a merge per row. The index keeps, per registration of the webinar,
the match keys (registration id, registrant id, a keyed hash of the email: never the email; the key is secret,
see ``shared.emailhash``), the check-in's CRM
ids and the hash of what was last written; per attendance page, the page's fingerprint and tallies. A pull loads
it (one blob), brings it up to date with only the ledger rows written since its last refresh, and saves it when
it checkpoints or finishes. An unchanged page then costs its fingerprint: no rows built, matched or hashed.

When a page may be skipped: its fingerprint equals the one recorded when all its matched check-ins were last
written (or found unchanged), the hash version is the same, and no ledger row matched on it (nor, if it had
unmatched attendees, any row at all) changed since. Anything else re-reads the page as before. A lost or
unreadable index is rebuilt from the ledger (its ``MetricsHash`` column seeds the hashes): at worst some
check-ins are written once more, which is idempotent. A save is conditional on the version read; a pull whose
save is refused (another pull of the webinar saved meanwhile) merges with ``forget_writes``.

Format 2 (issue 18): the email hashes are keyed by a secret derived from the credentials key (format 1 keyed them
by the org id, the blob's own name prefix, so anyone who could read the blob could test guessed addresses). The
blob names the key id it was hashed with; a format 1 blob, or one hashed with another key, is rebuilt from the
ledger on its next pull.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from shared.emailhash import EmailHasher
from shared.store.ledger import LedgerEntry

FORMAT: Final = 2
MATCHABLE: Final = ("registered", "cancelled")
REFRESH_OVERLAP: Final = timedelta(minutes=15)
"""Rows are re-read from this long before the last refresh: a registration's write stamps ``UpdatedAt`` just
before it lands, and instances' clocks differ a little. Re-reading a row is harmless."""


@dataclass(slots=True)
class IndexRow:
    """One registration of the webinar, as matching and the check-in need it."""

    registration_id: str
    state: str
    registrant_id: str | None
    email_key: str | None
    crm_event_id: str | None
    contact_id: str | None
    metrics_hash: str | None = None
    page: int = -1  # the attendance page it was last matched on (-1: not seen yet)

    def values(self) -> list[Any]:
        """The stored form: the fields in order (``IndexRow(*values)`` reads it back)."""
        return [
            self.registration_id, self.state, self.registrant_id, self.email_key, self.crm_event_id,
            self.contact_id, self.metrics_hash, self.page,
        ]  # fmt: skip

    def same_keys(self, other: IndexRow) -> bool:
        return (self.state, self.registrant_id, self.email_key, self.crm_event_id, self.contact_id) == (
            other.state, other.registrant_id, other.email_key, other.crm_event_id, other.contact_id
        )  # fmt: skip


@dataclass(slots=True)
class PageMark:
    """A page as last read in full: its fingerprint, attendees, and how many matched a registration."""

    fingerprint: str
    size: int
    matched: int
    unmatched: int


@dataclass
class MatchIndex:
    org_id: str
    webinar_id: str
    hash_version: int | str
    email_key: EmailHasher
    """The keyed hash that stands for an email in the index (``shared.emailhash``, purpose ``match-index``)."""
    rows: dict[str, IndexRow] = field(default_factory=dict)
    pages: dict[int, PageMark] = field(default_factory=dict)
    refreshed_at: datetime | None = None
    dirty_pages: set[int] = field(default_factory=set)
    changed: bool = False
    """Whether anything worth saving changed since it was loaded (an unchanged re-run saves nothing)."""
    etag: str | None = None
    """The stored version it was read from (None: none stored): a save is conditional on it."""
    written: set[str] = field(default_factory=set)
    """Registrations whose check-ins this pull wrote (see ``forget_writes``)."""

    # ---- keeping up with the ledger -------------------------------------------------------------------
    def refresh_since(self) -> datetime | None:
        """Read the ledger rows written at or after this (None: all of the webinar's rows)."""
        return None if self.refreshed_at is None else self.refreshed_at - REFRESH_OVERLAP

    def refresh(self, entries: Iterable[LedgerEntry], now: datetime) -> int:
        """Take in ledger rows written since the last refresh; returns how many changed what a pull matches.

        Pages on which a changed registration was matched become dirty (read in full); if any changed, so do
        pages that had unmatched attendees (the change may make one of them match).
        """
        changed = 0
        for entry in entries:
            reg = entry.registration_id
            old = self.rows.get(reg)
            if entry.state not in MATCHABLE:
                if old is not None:
                    del self.rows[reg]
                    self._dirty(old)
                    changed += 1
                continue
            new = IndexRow(
                reg,
                entry.state,
                entry.registrant_id or None,
                self.email_key(entry.email),
                entry.crm_event_id,
                entry.contact_id,
                old.metrics_hash if old is not None else entry.metrics_hash,
                old.page if old is not None else -1,
            )
            if old is None or not old.same_keys(new):
                self.rows[reg] = new
                self._dirty(new)
                changed += 1
        if changed:
            self.dirty_pages |= {index for index, mark in self.pages.items() if mark.unmatched}
            self.changed = True
        self.refreshed_at = now
        return changed

    def _dirty(self, row: IndexRow) -> None:
        if row.page >= 0:
            self.dirty_pages.add(row.page)

    # ---- pages ----------------------------------------------------------------------------------------
    def unchanged(self, index: int, fingerprint: str) -> PageMark | None:
        """The page's mark when it can be skipped (see the module docstring), else None."""
        mark = self.pages.get(index)
        if mark is None or mark.fingerprint != fingerprint or index in self.dirty_pages:
            return None
        return mark

    def mark_page(self, index: int, mark: PageMark, matched: Iterable[str]) -> None:
        """Record a page read in full. Keeps the invariant the skip relies on: every registration matched on a
        marked page points back at it (a registration now on another page drops its old page's mark)."""
        if self.pages.get(index) != mark:
            self.pages[index] = mark
            self.changed = True
        self.dirty_pages.discard(index)
        for reg in matched:
            row = self.rows.get(reg)
            if row is not None:
                if row.page not in (-1, index):
                    self.pages.pop(row.page, None)
                if row.page != index:
                    row.page = index
                    self.changed = True

    def unmark_pages_of(self, registration_ids: Iterable[str]) -> None:
        """Check-ins that were not written: their pages must be read in full next time."""
        for reg in registration_ids:
            row = self.rows.get(reg)
            if row is not None and row.page >= 0 and self.pages.pop(row.page, None) is not None:
                self.changed = True

    # ---- hashes (the check-in writer's HashStore) -----------------------------------------------------
    def set_metrics_hashes(self, org_id: str, hashes: dict[str, str]) -> None:
        for reg, value in hashes.items():
            row = self.rows.get(reg)
            if row is not None and row.metrics_hash != value:
                row.metrics_hash = value
                self.changed = True
            self.written.add(reg)

    def forget_writes(self, registration_ids: Iterable[str]) -> None:
        """Another pull of the webinar wrote check-ins at the same time: CRM holds whichever write landed last, so
        these registrations' hashes and pages are dropped, and the next pull reads and writes them again."""
        for reg in registration_ids:
            row = self.rows.get(reg)
            if row is not None:
                row.metrics_hash = None
                if row.page >= 0:
                    self.pages.pop(row.page, None)
                self.changed = True

    # ---- storage form ----------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        document: dict[str, Any] = {
            "format": FORMAT,
            "keyId": self.email_key.key_id,
            "hashVersion": self.hash_version,
            "refreshedAt": self.refreshed_at.isoformat() if self.refreshed_at else None,
            "rows": [r.values() for r in self.rows.values()],
            "pages": {
                str(i): [m.fingerprint, m.size, m.matched, m.unmatched]
                for i, m in self.pages.items()
                if i not in self.dirty_pages
            },
        }
        return zlib.compress(json.dumps(document, separators=(",", ":")).encode("utf-8"), 1)

    @classmethod
    def from_bytes(
        cls,
        org_id: str,
        webinar_id: str,
        hash_version: int | str,
        email_key: EmailHasher,
        data: bytes | None,
        etag: str | None = None,
    ) -> MatchIndex:
        """The stored index, or an empty one (rebuilt from the ledger) when there is none, it cannot be read, or its
        email hashes were made with another key or format.

        Page marks recorded under another hash version are dropped: every page is read and re-hashed once.
        """
        index = cls(org_id, webinar_id, hash_version, email_key, etag=etag)
        if not data:
            return index
        try:
            document = json.loads(zlib.decompress(data))
            if document.get("format") != FORMAT or document.get("keyId") != email_key.key_id:
                return index
            for values in document["rows"]:
                row = IndexRow(*values)
                index.rows[row.registration_id] = row
            if document.get("hashVersion") == hash_version:
                index.pages = {int(i): PageMark(*values) for i, values in document["pages"].items()}
            refreshed = document.get("refreshedAt")
            index.refreshed_at = datetime.fromisoformat(refreshed) if refreshed else None
        except (ValueError, TypeError, KeyError, zlib.error):
            return cls(org_id, webinar_id, hash_version, email_key, etag=etag)  # unreadable: rebuild from the ledger
        return index
