"""The match index on its own: what it stores (no email), when a page may be skipped, and when it may not."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, timedelta

from shared.crypto import KeyMaterial, derive_key
from shared.emailhash import EmailHasher
from shared.metrics.index import REFRESH_OVERLAP, MatchIndex, PageMark
from shared.store.ledger import LedgerEntry

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
KEY = EmailHasher("local:test#match-index", derive_key(KeyMaterial("local:test", b"k" * 32), "email-hash/match-index"))


def entry(n: int, **changes: object) -> LedgerEntry:
    base: dict[str, object] = {
        "org_id": "org", "registration_id": f"r{n}", "state": "registered", "webinar_id": "42",
        "registrant_id": f"u{n}", "email": f"Person{n}@Example.com", "crm_event_id": "e", "contact_id": f"c{n}",
    }  # fmt: skip
    return LedgerEntry(**{**base, **changes})  # type: ignore[arg-type]


def built(*entries: LedgerEntry) -> MatchIndex:
    index = MatchIndex("org", "42", 1, KEY)
    index.refresh(entries, NOW)
    return index


def test_the_stored_index_holds_no_email_and_reads_back_the_same() -> None:
    index = built(entry(1), entry(2))
    index.mark_page(0, PageMark("fp0", 2, 2, 0), ["r1", "r2"])
    index.set_metrics_hashes("org", {"r1": "h1"})
    data = index.to_bytes()
    assert b"example" not in zlib.decompress(data).lower(), "emails are stored as keyed hashes only"
    again = MatchIndex.from_bytes("org", "42", 1, KEY, data)
    assert again.rows == index.rows and again.pages == index.pages and again.refreshed_at == NOW
    assert again.rows["r1"].email_key == KEY("person1@example.com")


def test_the_email_hash_is_keyed_by_a_secret_not_by_the_org_id() -> None:
    """Format 1 keyed the hash by the org id, the blob's own name: anyone reading the blob could test addresses."""
    import hashlib

    index = built(entry(1))
    stored = index.rows["r1"].email_key
    by_org = hashlib.blake2b(b"person1@example.com", digest_size=12, key=b"org").hexdigest()
    assert stored is not None and stored != by_org and len(stored) == 32
    other = EmailHasher("local:other#match-index", derive_key(KeyMaterial("local:other", b"o" * 32), "x"))
    assert other("person1@example.com") != stored, "without the credentials key the hash cannot be made"
    assert KEY("  PERSON1@example.COM ") == stored, "one compared form: trimmed and casefolded"


def test_a_blob_of_format_1_or_of_another_key_is_rebuilt_from_the_ledger() -> None:
    index = built(entry(1))
    data = index.to_bytes()
    document = json.loads(zlib.decompress(data))
    old = zlib.compress(json.dumps({**document, "format": 1}).encode())
    assert MatchIndex.from_bytes("org", "42", 1, KEY, old).rows == {}, "format 1: hashed by the org id"
    rotated = EmailHasher("kv:secret/v2#match-index", b"r" * 32)
    again = MatchIndex.from_bytes("org", "42", 1, rotated, data)
    assert again.rows == {} and again.refresh_since() is None, "another key: every row is read and hashed again"


def test_a_page_is_skipped_only_with_the_same_fingerprint_and_nothing_changed_on_it() -> None:
    index = built(entry(1), entry(2), entry(3))
    index.mark_page(0, PageMark("fp0", 2, 2, 0), ["r1", "r2"])
    index.mark_page(1, PageMark("fp1", 1, 1, 0), ["r3"])
    assert index.unchanged(0, "fp0") and index.unchanged(1, "fp1")
    assert index.unchanged(0, "other") is None, "another fingerprint: read the page"
    changed = index.refresh([entry(2, contact_id="c-new")], NOW + timedelta(minutes=15))
    assert changed == 1 and index.unchanged(0, "fp0") is None and index.unchanged(1, "fp1")
    assert index.refresh([entry(3)], NOW + timedelta(minutes=30)) == 0, "a row written again unchanged"
    assert index.unchanged(1, "fp1")


def test_a_registration_that_moved_to_another_page_drops_its_old_pages_mark() -> None:
    """Page layouts shift between windows: without this, a change to r1 would dirty page 1 while page 0, when
    its old content came back, would be skipped with r1's stale check-in."""
    index = built(entry(1), entry(2))
    index.mark_page(0, PageMark("fp-a", 2, 2, 0), ["r1", "r2"])
    index.mark_page(1, PageMark("fp-b", 1, 1, 0), ["r1"])
    assert 0 not in index.pages and index.unchanged(1, "fp-b")
    index.refresh([entry(1, contact_id="c-new")], NOW + timedelta(minutes=15))
    assert index.unchanged(1, "fp-b") is None


def test_a_cancelled_or_forgotten_registration_leaves_the_index_and_dirties_its_page() -> None:
    index = built(entry(1), entry(2))
    index.mark_page(0, PageMark("fp0", 2, 2, 0), ["r1", "r2"])
    index.refresh([entry(1, state="forgotten", email=None)], NOW + timedelta(minutes=15))
    assert "r1" not in index.rows and index.unchanged(0, "fp0") is None
    assert b"r1" not in zlib.decompress(index.to_bytes())


def test_marks_of_another_hash_version_and_unreadable_blobs_are_not_trusted() -> None:
    index = built(entry(1))
    index.mark_page(0, PageMark("fp0", 1, 1, 0), ["r1"])
    newer = MatchIndex.from_bytes("org", "42", 2, KEY, index.to_bytes())
    assert newer.pages == {} and "r1" in newer.rows, "rows are kept; every page is read and hashed again"
    broken = MatchIndex.from_bytes("org", "42", 1, KEY, b"not zlib")
    assert broken.rows == {} and broken.refreshed_at is None and broken.refresh_since() is None


def test_the_refresh_rereads_an_overlap_before_the_last_one() -> None:
    index = built(entry(1))
    assert index.refresh_since() == NOW - REFRESH_OVERLAP
