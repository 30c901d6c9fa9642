"""Step 3, act: run the plan under the lease (removals first, then the create or update), then record it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from shared.errors import CredentialsRejectedError, NotFoundError, PermanentError
from shared.messages import RegistrationCommand
from shared.registration.lease import SlotLater, decided, interrupted, keep_lease, release, with_rank
from shared.registration.ports import (
    DISABLED,
    CallPacer,
    CrmRegistrations,
    Desired,
    Disabled,
    Outcome,
    OutcomeStatus,
    RegistrationPorts,
)
from shared.registration.record import tell_crm
from shared.registration.rules import (
    Rank,
    planned,
    remaining_after,
)
from shared.store.ledger import LedgerEntry, RegistrantRef
from shared.store.pacing import PaceLater
from shared.webinars import Registrations

_log = logging.getLogger(__name__)


# ---- step 3: act ----------------------------------------------------------------------------------------------
def wait_budget(ports: RegistrationPorts) -> float:
    """Seconds a call may wait for its ON24 slot: the delivery's budget, or what is left of RetryParked's run."""
    if ports.pace_until is None:
        return ports.pace_wait_seconds
    return max(ports.pace_wait_seconds, ports.pace_until - time.monotonic())


def act(
    ports: RegistrationPorts,
    cmd: RegistrationCommand,
    crm: CrmRegistrations | None,
    provider: Registrations,
    leased: LedgerEntry,
    rank: Rank,
    desired: Desired,
    org_read_at: float,
    pacer: Callable[[str], CallPacer | None] = lambda _kind: None,
) -> Outcome:
    """Run the plan under the lease, then record its outcome (in CRM, then in the ledger).

    Each ON24 call first takes its slot from ``pacer`` (the account's shared limit for its kind, issue 22);
    a slot beyond ``ports.pace_wait_seconds`` raises ``SlotLater`` before the call, the lease given back.
    """
    email = cmd.person.email if cmd.person else None
    steps = planned(leased, desired.target, forget=desired.status == "forgotten", email=email)
    deleted: list[RegistrantRef] = []
    confirmed: str | None = None  # the registrant id the provider confirmed
    lease = leased
    calls = 0
    where: str | None = None  # the ON24 event of the call under way
    deleting: RegistrantRef | None = None  # the registrant whose delete is under way

    def before_call(ref: RegistrantRef) -> None:
        nonlocal lease, calls, org_read_at, where
        pace = pacer("forget" if desired.status == "forgotten" and ref in steps.deletes else "registrant")
        if pace is not None:
            try:
                pace.acquire_within(wait_budget(ports))
            except PaceLater as exc:
                until = ports.clock() + timedelta(seconds=exc.seconds)
                raise SlotLater(f"registration {cmd.registration_id} (org {cmd.org_id}): {exc}", until=until) from exc
        lease = keep_lease(ports, cmd, lease)
        if calls > 0 or time.monotonic() - org_read_at > ports.org_recheck_seconds:
            if ports.credentials.get(cmd.org_id) is None:
                raise Disabled
            org_read_at = time.monotonic()
        calls += 1
        where = ref.webinar_id

    try:
        remove = provider.forget if desired.status == "forgotten" else provider.remove
        for ref in steps.deletes:
            before_call(ref)
            deleting = ref
            remove(ref.webinar_id, ref.email)
            deleting = None
            deleted.append(ref)
        if steps.upsert is not None:
            person = desired.person
            assert person is not None
            before_call(steps.upsert)
            if steps.patch:
                try:
                    confirmed = provider.update(steps.upsert.webinar_id, person, registration_id=cmd.registration_id)
                except NotFoundError:  # ON24 lost it (or it was forgotten): register again
                    before_call(steps.upsert)
                    confirmed = provider.register(steps.upsert.webinar_id, person, registration_id=cmd.registration_id)
            else:
                confirmed = provider.register(steps.upsert.webinar_id, person, registration_id=cmd.registration_id)
    except Disabled:
        current, pending = remaining_after(leased, steps, tuple(deleted), False)
        stopped = interrupted(lease, current, pending, failed=False)
        release(ports, cmd, provider, lease, replace(stopped, last_outcome=f"skipped: {DISABLED}", reason=DISABLED))
        return Outcome("skipped", DISABLED, lease.webinar_id, lease.registrant_id)
    except (PermanentError, ValueError) as exc:
        reason = f"ON24 refused the change in event {where}: {exc}"
        if isinstance(exc, CredentialsRejectedError):  # the whole org is affected: show it on the org's status
            ports.credentials.set_status(cmd.org_id, "rejected", f"ON24 rejected the org's credentials: {exc}")
            if ports.parked is not None:  # not the registration's fault: the delivery parks it until a save
                current, pending = remaining_after(leased, steps, tuple(deleted), False, unsure=deleting)
                release(ports, cmd, provider, lease, interrupted(lease, current, pending, failed=False), must=False)
                raise
        current, pending = remaining_after(leased, steps, tuple(deleted), False, unsure=deleting)
        failed = with_rank(replace(interrupted(lease, current, pending, failed=True), reason=reason), rank)
        failed = replace(failed, webinar_id=failed.webinar_id or where)  # PullMetrics finds the webinar
        failed = release(ports, cmd, provider, lease, replace(failed, last_outcome="failed"))
        tell_crm(cmd, crm, failed, failed=True, removed=False)
        return Outcome("failed", reason, where, lease.registrant_id, provider_answered=True)
    except BaseException:
        # Transient faults and anything unexpected: give the row back, knowing what ON24 may now hold.
        current, pending = remaining_after(leased, steps, tuple(deleted), False, unsure=deleting)
        release(ports, cmd, provider, lease, interrupted(lease, current, pending, failed=False), must=False)
        raise

    current, pending = remaining_after(leased, steps, tuple(deleted), confirmed is not None)
    status: OutcomeStatus = desired.status
    if desired.target is not None:
        status = "updated" if leased.current is not None else "registered"
    done = decided(
        lease,
        rank,
        desired,
        current=current,
        pending=pending,
        status=status,
        registrant_id=confirmed,
    )
    try:
        synced = tell_crm(cmd, crm, done, failed=False, removed=bool(deleted))
    except BaseException:
        release(ports, cmd, provider, lease, done, must=False)
        raise
    final = release(ports, cmd, provider, lease, replace(done, crm_settled=synced))
    return Outcome(status, desired.reason, final.webinar_id, final.registrant_id, provider_answered=True)
