"""A duplicate is cheap in either message format: at most one Table Storage call and no CRM read (issue 22).

A duplicate is a message whose content was decided already: Service Bus redelivering it, or Dataverse posting
the same step twice. Its ledger row, read first by (org, registration), shows that the message's rank is not
newer than the last decided one, before the org row, the tombstones or CRM are read. Counted on the wire:
Table Storage requests (Azurite) and Dataverse requests (the stand-in).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.builders import CrmOrg, dataverse_body
from tests.e2e.test_registration_adversity import ORG, T0, canonical, crm, deliver, env, row, table_calls
from tests.functions import dataverse_properties

__all__ = ["crm", "env", "table_calls"]  # fixtures


def test_a_canonical_duplicate_costs_one_table_call_and_no_on24_call(
    crm: CrmOrg, on24: Any, dataverse: Any, table_calls: list[str]
) -> None:
    reg = str(uuid.uuid4())
    message = canonical(reg, crm, "register", T0, "jorg.muller@firma.de")
    message_id, enqueued = uuid.uuid4().hex, datetime.now(UTC)
    deliver(message, message_id=message_id, enqueued_time=enqueued, delivery_count=1)
    assert row(reg).state == "registered"
    table_calls.clear()
    dataverse.reset_log()
    on24.reset_log()

    deliver(message, message_id=message_id, enqueued_time=enqueued, delivery_count=2)  # Service Bus again

    assert len(table_calls) <= 1, table_calls
    assert dataverse.count() == 0 and on24.count() == 0


def test_a_dataverse_format_duplicate_costs_one_table_call_and_no_crm_read(
    crm: CrmOrg, on24: Any, dataverse: Any, table_calls: list[str]
) -> None:
    reg = crm.registration(crm.contact("Åsa", "Ødegård", "asa.odegard@firma.no"))
    body = dataverse_body(org_id=ORG, registration_id=reg, message="Create", at=T0 + timedelta(minutes=1))
    properties = dataverse_properties("Create")
    deliver(body, application_properties=properties, message_id=uuid.uuid4().hex)
    assert row(reg).state == "registered"
    table_calls.clear()
    dataverse.reset_log()
    on24.reset_log()

    deliver(body, application_properties=properties, message_id=uuid.uuid4().hex)  # Dataverse posts it again

    assert len(table_calls) <= 1, table_calls
    assert dataverse.count() == 0, "the duplicate is known before CRM is read"
    assert on24.count() == 0
