"""Step 4, record: the outcome written back to CRM, and the records that need no provider call (skips, failures
found before any call, a CRM write-back redone)."""

from __future__ import annotations

import logging
from dataclasses import replace

from shared.crm import (
    PUBLISHING_STATE_PUBLISHED,
    PUBLISHING_STATE_WEBINAR_PROVIDER_ERROR,
)
from shared.errors import NotFoundError, PermanentError
from shared.messages import RegistrationCommand
from shared.registration.lease import guarded, with_rank
from shared.registration.ports import CrmRegistrations, NoOpFound, Outcome, RegistrationPorts
from shared.registration.rules import (
    NoOp,
    Rank,
    no_op,
)
from shared.store.ledger import LedgerEntry, LedgerState

_log = logging.getLogger(__name__)


def no_op_outcome(
    ports: RegistrationPorts, cmd: RegistrationCommand, crm: CrmRegistrations | None, entry: LedgerEntry, kind: NoOp
) -> Outcome:
    if kind == "crm_pending":
        return retry_crm_write(ports, cmd, crm, entry)
    reason = None
    if kind == "stale" and entry.last_message_at is not None:
        reason = f"older than the last applied message ({entry.last_message_at.isoformat()})"
    return Outcome(kind, reason, entry.webinar_id, entry.registrant_id)


def tell_crm(
    cmd: RegistrationCommand, crm: CrmRegistrations | None, entry: LedgerEntry, *, failed: bool, removed: bool
) -> bool:
    """Write the ON24 outcome onto the CRM registration. False when there is no CRM to write to.

    A skip is written only when it removed a registrant (the CRM row then no longer carries its ON24 id).

    Raises:
        TransientError: CRM could not be reached (the outcome is recorded; the redelivery retries this write).
    """
    if crm is None:
        return False
    if entry.state == "forgotten":
        return True  # the person asked to be forgotten: CRM keeps (or has deleted) its own row
    if failed:
        registrant, synced, publishing = entry.current and entry.registrant_id, False, PROVIDER_ERROR
    elif entry.state in ("registered", "cancelled"):
        registrant, synced, publishing = entry.registrant_id, True, PUBLISHING_STATE_PUBLISHED
    elif removed:
        registrant, synced, publishing = None, False, None
    else:
        return True
    try:
        crm.update_registration_sync(
            cmd.registration_id,
            registrant_id=registrant or None,
            synced=synced,
            publishing_state=publishing,
        )
    except NotFoundError:
        _log.warning(
            "CRM registration %s (org %s) no longer exists; ON24 outcome not written back",
            cmd.registration_id,
            cmd.org_id,
            extra={"org_id": cmd.org_id, "registration_id": cmd.registration_id},
        )
    except PermanentError as exc:
        _log.error(
            "CRM refused the ON24 outcome of registration %s (org %s): %s",
            cmd.registration_id,
            cmd.org_id,
            exc,
            extra={"org_id": cmd.org_id, "registration_id": cmd.registration_id},
        )
    return True


PROVIDER_ERROR = PUBLISHING_STATE_WEBINAR_PROVIDER_ERROR


def retry_crm_write(
    ports: RegistrationPorts, cmd: RegistrationCommand, crm: CrmRegistrations | None, entry: LedgerEntry
) -> Outcome:
    """A redelivery of a change whose ON24 effect is recorded but CRM was not told: only tell CRM."""
    tell_crm(cmd, crm, entry, failed=False, removed=False)

    def change(current: LedgerEntry | None) -> LedgerEntry | None:
        same = current is not None and current.last_message_at == entry.last_message_at and current.state == entry.state
        return replace(current, crm_settled=True) if same and current is not None else None

    guarded(ports, cmd, entry, change)
    return Outcome("duplicate", None, entry.webinar_id, entry.registrant_id)


def note_skip(ports: RegistrationPorts, cmd: RegistrationCommand, reason: str) -> Outcome:
    """Record a skip (the integration is off) without changing the effect state or the message order, so a
    replay after the org is switched on again is applied."""

    def change(current: LedgerEntry | None) -> LedgerEntry:
        base = current or LedgerEntry(org_id=cmd.org_id, registration_id=cmd.registration_id, state="skipped")
        return replace(base, last_outcome=f"skipped: {reason}", reason=reason)

    guarded(ports, cmd, ports.ledger.get(cmd.org_id, cmd.registration_id), change)
    return Outcome("skipped", reason)


def record_failure(
    ports: RegistrationPorts, cmd: RegistrationCommand, crm: CrmRegistrations | None, rank: Rank, reason: str
) -> Outcome:
    """A permanent failure found before any ON24 call: record it in the ledger, then flag CRM.

    Raises:
        TransientError: CRM could not be flagged; the redelivery finds the failure and tries again.
    """

    def change(current: LedgerEntry | None) -> LedgerEntry | NoOpFound:
        kind = no_op(current, rank, crm_known=crm is not None)
        if kind is not None and current is not None:
            return NoOpFound(kind, current)
        base = current or LedgerEntry(org_id=cmd.org_id, registration_id=cmd.registration_id)
        state: LedgerState = "registered" if base.state == "registered" else "failed"
        return with_rank(replace(base, state=state, reason=reason, last_outcome="failed"), rank)

    written = guarded(ports, cmd, ports.ledger.get(cmd.org_id, cmd.registration_id), change)
    if isinstance(written, NoOpFound):
        return no_op_outcome(ports, cmd, crm, written.entry, written.kind)
    tell_crm(cmd, crm, written, failed=True, removed=False)
    return Outcome("failed", reason)
