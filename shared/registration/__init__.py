"""RegisterAttendee's use case: bring ON24 to what a registration's newest CRM change says, exactly once.

A delivery runs in four steps, each a module of this package (the rules themselves are pure, in
``shared.registration.rules``):

1. **Read and decide** without holding anything: the org's credentials row (no row: the integration is
   off, skip), the ledger row, and, when the message does not carry them, the CRM registration, event and
   contact. A stale message or a redelivery ends here with no ON24 call. All slow work (CRM reads, opening
   the credentials, Key Vault) happens now, before any lease is taken.
2. **Claim**: one etag-guarded write takes a lease on the row and records the intent (action, ON24 event,
   email) and the target as a pending registrant, before ON24 is touched.
3. **Act**: delete every registrant the row knows may exist except the target, then create or update the
   target. Before each ON24 call the lease must outlast the call's bound plus the time an unanswered
   request may still land; otherwise it is extended (or, if another delivery took the row over, the call
   is not made). Before a second call, and before the first when reading took long, the credentials row is
   read again, so an off switch stops a change between two calls.
4. **Record**: write the outcome back to CRM, then release the row with what ON24 now holds.

Nothing else writes over a live lease: skip and failure records wait for it, or raise a transient error.
Transient faults propagate (Service Bus redelivers); permanent ones are recorded in the ledger and in CRM
(publishing state = webinar provider error) and the message completes.
"""

from shared.registration.deliver import (
    REJECTED_PROBE,
    forget_registration,
    handle_contact_erasure,
    handle_registration,
    park,
)
from shared.registration.ports import DISABLED, Outcome, OutcomeStatus, RegistrationPorts, Repair

__all__ = [
    "DISABLED",
    "REJECTED_PROBE",
    "Outcome",
    "OutcomeStatus",
    "RegistrationPorts",
    "Repair",
    "forget_registration",
    "handle_contact_erasure",
    "handle_registration",
    "park",
]
