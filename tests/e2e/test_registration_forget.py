# The fixtures env and crm come from the adversity tests (same org, webinars and short timing): their import
# is how pytest finds them (F401) and the parameters that share their names are injections (F811).
# ruff: noqa: F401, F811
"""Erasure through RegisterAttendee: a canonical forget, a Dataverse Delete of a registration or of a contact,
and forget racing register. What a person who asked to be forgotten would check: ON24 no longer holds them,
our ledger keeps ids only, and an older message cannot bring them back.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox.triggers import dataverse_delete_body
from shared.app import get_app
from shared.errors import TransientError
from tests.builders import CrmOrg, dataverse_body
from tests.e2e.test_registration_adversity import (
    ORG,
    T0,
    WEBINAR,
    InBackground,
    active,
    canonical,
    crm,
    deliver,
    deliver_until_done,
    env,
    parked_keys,
    redrive_parked_when_due,
    row,
)
from tests.functions import dataverse_properties


def on24_emails(on24: Any) -> set[str]:
    return {record["email"].lower() for record in on24.registrants(WEBINAR)}


def test_a_canonical_forget_erases_the_person_in_on24_and_in_the_ledger(crm: CrmOrg, on24: Any) -> None:
    reg = str(uuid.uuid4())
    deliver_until_done(canonical(reg, crm, "register", T0, "erase.me@example.com"))
    registrant = row(reg).registrant_id
    deliver_until_done(canonical(reg, crm, "forget", T0 + timedelta(minutes=1)))
    assert "erase.me@example.com" not in on24_emails(on24), "ON24 anonymised the registrant"
    assert f"{registrant}-deleted" in on24_emails(on24)
    entry = row(reg)
    assert entry.state == "forgotten" and entry.email is None and entry.contact_id is None and entry.pending == ()
    assert entry.registrant_id == registrant and entry.webinar_id == str(WEBINAR), "the ids stay"


def test_an_older_register_after_a_forget_does_not_bring_the_person_back(crm: CrmOrg, on24: Any) -> None:
    reg = str(uuid.uuid4())
    deliver_until_done(canonical(reg, crm, "register", T0, "old@example.com"))
    deliver_until_done(canonical(reg, crm, "forget", T0 + timedelta(minutes=5)))
    on24.reset_log()
    deliver_until_done(canonical(reg, crm, "register", T0 + timedelta(minutes=1), "old@example.com"))
    assert on24.count() == 0 and active(on24, reg) == [] and row(reg).state == "forgotten"


def test_a_newer_register_after_a_forget_registers_the_person_again(crm: CrmOrg, on24: Any) -> None:
    reg = str(uuid.uuid4())
    deliver_until_done(canonical(reg, crm, "register", T0, "back@example.com"))
    deliver_until_done(canonical(reg, crm, "forget", T0 + timedelta(minutes=1)))
    deliver_until_done(canonical(reg, crm, "register", T0 + timedelta(minutes=2), "back@example.com"))
    assert active(on24, reg) == [(WEBINAR, "back@example.com")] and row(reg).state == "registered"


def test_a_forget_racing_a_register_ends_with_no_registrant(crm: CrmOrg, on24: Any) -> None:
    reg = str(uuid.uuid4())
    create = on24.hold_next("POST", "/registrant")
    holder = InBackground(lambda: deliver(canonical(reg, crm, "register", T0, "racer@example.com")))
    create.wait_arrived()  # the register holds the row and is inside its ON24 create
    forget = canonical(reg, crm, "forget", T0 + timedelta(seconds=30))
    forget_id, enqueued = uuid.uuid4().hex, datetime.now(UTC)
    deliver(forget, message_id=forget_id, enqueued_time=enqueued)  # parked until the register's lease ends
    assert parked_keys() == [reg]
    create.release()
    assert not holder.join()
    redrive_parked_when_due()
    assert active(on24, reg) == [] and "racer@example.com" not in on24_emails(on24)
    assert row(reg).state == "forgotten"


def test_a_dataverse_delete_of_the_registration_forgets_it(crm: CrmOrg, on24: Any) -> None:
    contact = crm.contact("Del", "Reg", "del.reg@example.com")
    reg = crm.registration(contact)
    deliver_until_done(dataverse_body(org_id=ORG, registration_id=reg, at=T0),
                       application_properties=dataverse_properties("Create"))  # fmt: skip
    deliver_until_done(dataverse_delete_body(org_id=ORG, entity="msevtmgt_eventregistration", row_id=reg,
                                             at=T0 + timedelta(minutes=1)))  # fmt: skip
    assert "del.reg@example.com" not in on24_emails(on24) and row(reg).state == "forgotten"


def test_a_dataverse_delete_of_a_contact_forgets_every_registration_of_it(crm: CrmOrg, on24: Any) -> None:
    contact = crm.contact("Two", "Regs", "two.regs@example.com")
    by_crm = crm.registration(contact)  # Dataverse-sourced: the ledger knows its contact id
    deliver_until_done(dataverse_body(org_id=ORG, registration_id=by_crm, at=T0),
                       application_properties=dataverse_properties("Create"))  # fmt: skip
    other_webinar = str(uuid.uuid4())  # canonical, carrying the attendee: known by email only
    deliver_until_done(canonical(other_webinar, crm, "register", T0, "Two.Regs@Example.com", webinar=880102))
    bystander = str(uuid.uuid4())
    deliver_until_done(canonical(bystander, crm, "register", T0, "someone.else@example.com"))
    deliver_until_done(dataverse_delete_body(org_id=ORG, entity="contact", row_id=contact,
                                             at=T0 + timedelta(minutes=1), email="two.regs@example.com"))  # fmt: skip
    assert row(by_crm).state == "forgotten" and row(other_webinar).state == "forgotten"
    assert active(on24, by_crm) == [] and active(on24, other_webinar) == []
    assert row(bystander).state == "registered", "nobody else is touched"


def test_forgetting_a_registration_never_seen_is_recorded_without_an_on24_call(
    env: dict[str, str], on24: Any, crm: CrmOrg
) -> None:
    reg = str(uuid.uuid4())
    deliver_until_done(canonical(reg, crm, "forget", T0))
    assert on24.count() == 0 and row(reg).state == "forgotten"
    assert get_app().ledger.get(ORG, reg) is not None
