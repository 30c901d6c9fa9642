"""The naive RegisterAttendee the benchmark compares against: no ledger, one ON24 call per message, duplicates too.

It is what one would write first: parse the message, open the org's credentials, read CRM for what the message
does not carry, register the person in ON24, write the registrant id back to CRM. It shares the production
clients, parser and CRM reading (so the comparison measures the protocol, not different HTTP stacks), but keeps
no state: a redelivered message registers again (ON24's answer to a second POST for the same email is the
existing registrant, but the call is made and paid for), a crash between ON24 and CRM loses the id, and an
older message can undo a newer one. Benchmark use only; never deployed.
"""

from __future__ import annotations

import azure.functions as func

from shared.app import get_app
from shared.crm import PUBLISHING_STATE_PUBLISHED
from shared.messages import ContactErasure, parse_message
from shared.registration.decide import resolve


def naive_main(msg: func.ServiceBusMessage) -> None:
    app = get_app()
    properties = msg.application_properties
    cmd = parse_message(msg.get_body(), content_type=msg.content_type, application_properties=properties)
    if isinstance(cmd, ContactErasure):
        return
    org = app.credentials.get(cmd.org_id)
    if org is None:
        return
    crm = app.crm_for(org)
    desired = resolve(cmd, None, crm, priority=0)
    if desired.target is None or desired.person is None:
        return
    provider = app.provider_for(org)
    registrant = provider.register(desired.target.webinar_id, desired.person, registration_id=cmd.registration_id)
    if crm is not None:
        crm.update_registration_sync(
            cmd.registration_id, registrant_id=registrant, synced=True, publishing_state=PUBLISHING_STATE_PUBLISHED
        )
