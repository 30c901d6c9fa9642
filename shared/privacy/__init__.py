"""Privacy: how long personal data is kept, and how one person or a whole org is erased.

Three use cases:

- **Retention** (``housekeeping``, run by the PullMetrics timer within its budget). Once a webinar's metrics
  window has closed (its on-demand end plus ``METRICS_GRACE_DAYS``: the sync-state row's ``window_end``) and
  no pull of it is unfinished, its ledger rows drop their emails (``Email`` and the emails in ``Pending``;
  ``EmailHash`` keeps a keyed hash, so an erasure given the address still finds the row and reaches ON24).
  The ids that keep redelivery and ordering safe stay: registration id, ON24 event id, ON24 registrant id,
  message rank, CRM ids. A row that is busy (a live lease, its quiet time, an unfinished intent, pending
  registrants still to reconcile) is left for a later pass; every write is conditional on the version read,
  so none lands over a lease. Each webinar keeps a bookmark in its sync-state row: where an unfinished pass
  stopped (``retention_cursor``) and when a pass last left nothing behind (``retention_cleared_at``; a day
  later the webinar is checked again, for rows written since). Rejected message bodies (and their blobs)
  are deleted ``REJECTED_RETENTION_DAYS`` after they were kept; forget tombstones ``TOMBSTONE_RETENTION`` after
  their erasure.
- **Erasure of one person** (``forget_person``, the admin route ``POST .../webinar/forget``): first a tombstone
  by the address's keyed hash (``shared.store.tombstones``: a register ranked before the erasure that arrives
  later never registers the person again), then every ledger row of the org holding the email (confirmed or
  pending, any case, any webinar, or its keyed hash after retention) gets a tombstone by id and is forgotten through
  RegisterAttendee's own erasure (``shared.registration.forget_registration``: ON24's forget, then only ids
  and the message order stay), and so is every registration known only by a parked message holding the email;
  the org's kept rejected bodies and the parked messages (older than the erasure) that mention the email are
  deleted. The audit line says who, when and how many, never the email.
- **Leaving** (``purge_org``, ``DELETE .../webinar/credentials?purge=true``): after the credentials row is
  deleted (the off switch), a purge request is recorded, then the org's ledger partition, parked
  registrations, sync state and rejected bodies are deleted in bounded batches. What the request does not
  finish, the timer does (``housekeeping``); the request is closed by a sweep that runs after
  ``PURGE_SETTLE`` (work already under way when the org left may still write a row until then) and finds
  nothing left.
"""

from shared.privacy.erasure import (
    ERASED,
    ERASURE_REASON,
    ErasureIncompleteError,
    ErasureReport,
    forget_person,
    mentions,
)
from shared.privacy.ports import ErasureOutcome, HousekeepingReport, PrivacyOptions, PrivacyPorts
from shared.privacy.purge import INLINE_PURGE_ROWS, PURGE_SETTLE, PurgeOutcome, purge_org, purge_view
from shared.privacy.retention import closes_at, housekeeping, retention_due, why_kept

__all__ = [
    "ERASED",
    "ERASURE_REASON",
    "INLINE_PURGE_ROWS",
    "PURGE_SETTLE",
    "ErasureIncompleteError",
    "ErasureOutcome",
    "ErasureReport",
    "HousekeepingReport",
    "PrivacyOptions",
    "PrivacyPorts",
    "PurgeOutcome",
    "closes_at",
    "forget_person",
    "housekeeping",
    "mentions",
    "purge_org",
    "purge_view",
    "retention_due",
    "why_kept",
]
