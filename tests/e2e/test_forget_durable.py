# The fixtures env and crm come from the adversity tests, clock from the parking tests: their import is how pytest
# finds them (F401) and the parameters that share their names are injections (F811).
# ruff: noqa: F401, F811
"""A forget is durable (issue 18, item 6): the forget route leaves tombstones, by registration id and by a keyed
hash of the address, so that a register ranked before the forget never registers the person again, whether it
arrives late, parked during an outage and re-driven by RetryParked, or replayed from the dead-letter queue by
``tools.replay``; even when the forget found no ledger or parked row. A register ranked after the forget
registers the person as usual. (The addresses are our markets' names in the ASCII spelling today's validator
accepts; internationalised addresses come with issue 18's item 1.) Real parts: Azurite, the ON24 and Dataverse
stand-ins, the function folders."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from ForgetAttendee import main as forget_main
from sandbox.servicebus import InMemoryServiceBus
from shared.app import get_app
from shared.store.tombstones import FORGOTTEN_PARTITION
from tests.builders import CrmOrg, canonical_body
from tests.e2e.test_parking import ORG as PARKING_ORG
from tests.e2e.test_parking import clock, deliver, register, run_retry_parked
from tests.e2e.test_registration_adversity import (
    ORG,
    T0,
    WEBINAR,
    InBackground,
    active,
    canonical,
    crm,
    deliver_until_done,
    env,
    row,
)
from tests.e2e.test_replay import deliver_from, replay_with
from tests.functions import admin_request, json_body
from tests.unit.test_replay_shell import QUEUE

FORGET_ROUTE = "orgs/{orgId}/webinar/forget"


def forget(org: str, email: str) -> dict[str, Any]:
    response = forget_main(admin_request("POST", FORGET_ROUTE, {"orgId": org}, {"email": email}))
    assert response.status_code == 200, response.get_body()
    answer: dict[str, Any] = json_body(response)
    return answer


def tombstone_rows(env: dict[str, str], org: str) -> list[dict[str, Any]]:
    service = TableServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    table = service.get_table_client(env["STATE_TABLE_PREFIX"] + "ledger")
    rows = table.query_entities("PartitionKey eq @p", parameters={"p": f"{FORGOTTEN_PARTITION}|{org}"})
    return [dict(r) for r in rows]


def test_a_late_register_ranked_before_the_forget_never_registers_the_person(
    env: dict[str, str], crm: CrmOrg, on24: Any
) -> None:
    reg = str(uuid.uuid4())
    answer = forget(ORG, "Joerg.Mueller@Firma.example")  # the register is still on its way: no row anywhere
    assert answer["registrationsFound"] == 0
    rows = tombstone_rows(env, ORG)
    assert len(rows) == 1 and rows[0]["RowKey"].startswith("e|")
    assert "mueller" not in json.dumps(rows, default=str).lower(), "a keyed hash, never the address"

    on24.reset_log()
    deliver_until_done(canonical(reg, crm, "register", T0, "joerg.mueller@firma.example"))  # sent an hour before
    assert on24.count() == 0, "no ON24 call for a forgotten person"
    entry = row(reg)
    assert entry.state == "forgotten" and entry.email is None and entry.pending == ()
    assert entry.reason and "forgotten by an erasure" in entry.reason and "mueller" not in entry.reason.lower()

    deliver_until_done(canonical(reg, crm, "update", T0 + timedelta(minutes=5), "joerg.mueller@firma.example"))
    assert on24.count() == 0 and row(reg).state == "forgotten", "an update sent before the forget is stopped too"


def test_a_register_ranked_after_the_forget_registers_the_person_again(
    env: dict[str, str], crm: CrmOrg, on24: Any
) -> None:
    forget(ORG, "asa.odegard@firma.example")
    reg = str(uuid.uuid4())
    later = datetime.now(UTC) + timedelta(seconds=5)
    deliver_until_done(canonical(reg, crm, "register", later, "Asa.Odegard@firma.example"))
    assert row(reg).state == "registered" and active(on24, reg) == [(WEBINAR, "Asa.Odegard@firma.example")]


def test_a_forgotten_registration_id_stops_a_late_register_with_another_address(
    env: dict[str, str], crm: CrmOrg, on24: Any
) -> None:
    reg = str(uuid.uuid4())
    deliver_until_done(canonical(reg, crm, "register", T0, "ivan.petrov@firma.example"))
    answer = forget(ORG, "ivan.petrov@firma.example")
    assert answer["registrations"] == [{"registrationId": reg, "outcome": "forgotten"}]
    assert {r["RowKey"] for r in tombstone_rows(env, ORG)} >= {f"r|{reg}"}
    get_app().ledger.delete_org_rows(ORG, limit=100)  # the ledger row is gone (e.g. lost): the tombstone stays
    on24.reset_log()
    deliver_until_done(canonical(reg, crm, "update", T0 + timedelta(minutes=1), "i.petrov@firma.example"))
    assert on24.count() == 0 and row(reg).state == "forgotten"


def test_a_register_replayed_from_the_dead_letters_after_the_forget_stays_undone(
    env: dict[str, str], crm: CrmOrg, on24: Any
) -> None:
    reg = str(uuid.uuid4())
    bus = InMemoryServiceBus()  # ON24 was down: the register was dead-lettered an hour ago
    body = canonical(reg, crm, "register", T0, "ole.nordmann@firma.example")
    bus.add_dead_letter(QUEUE, json.dumps(body).encode(), enqueued_time=T0)
    assert forget(ORG, "Ole.Nordmann@firma.example")["registrationsFound"] == 0
    on24.reset_log()
    code, _ = replay_with("dead-letters", "--org", ORG, "--yes", bus=bus)
    assert code == 0
    deliver_from(bus)
    assert on24.count() == 0 and row(reg).state == "forgotten" and active(on24, reg) == []


@pytest.mark.dataverse_org(PARKING_ORG)
def test_a_register_parked_during_an_outage_and_re_driven_after_the_forget_stays_undone(
    clock: Any, on24: Any
) -> None:
    on24.fail_next(1000, status=503)  # ON24 is down: the org parks its registrations
    _, first = register(PARKING_ORG, clock.now, "liisa.virtanen@yritys.example")
    for _ in range(3):
        deliver(first, clock.now)
    assert get_app().credentials.get(PARKING_ORG).parking, "the org parks its registrations"
    assert forget(PARKING_ORG, "Matti.Meikalainen@yritys.example")["registrationsFound"] == 0
    late_reg, late = register(PARKING_ORG, clock.now - timedelta(minutes=30), "matti.meikalainen@yritys.example")
    assert deliver(late, clock.now) == "completed"
    assert len(get_app().parked.for_org(PARKING_ORG)) == 2, "parked behind the outage, after the forget"

    on24.clear_faults()
    on24.reset_log()
    clock.now += timedelta(hours=2)
    run_retry_parked()
    assert get_app().parked.for_org(PARKING_ORG) == []
    assert on24.registrant(880301, "liisa.virtanen@yritys.example") is not None, "the other person is registered"
    assert on24.registrant(880301, "matti.meikalainen@yritys.example") is None, "the forgotten one is not"
    late_row = get_app().ledger.get(PARKING_ORG, late_reg)
    assert late_row is not None and late_row.state == "forgotten" and late_row.email is None


def test_a_register_that_checked_just_before_the_erasure_and_claims_just_after_it_stays_undone(
    env: dict[str, str], crm: CrmOrg, on24: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving no lookup order alone can close: the register finds no tombstone, the erasure then writes
    its tombstone and looks for the person's rows (none yet), and only then the register claims its row."""
    reg = str(uuid.uuid4())
    stones = get_app().tombstones
    original = stones.forgotten_at
    checked, erased = threading.Event(), threading.Event()

    def check_then_wait(org_id: str, registration_id: str, email: str | None) -> Any:
        answer = original(org_id, registration_id, email)
        if not checked.is_set():  # the register's first check: hold it until the erasure is over
            checked.set()
            assert erased.wait(20)
        return answer

    monkeypatch.setattr(stones, "forgotten_at", check_then_wait)
    register = InBackground(lambda: deliver_until_done(canonical(reg, crm, "register", T0, "nils.holm@firma.example")))
    assert checked.wait(20)
    assert forget(ORG, "Nils.Holm@firma.example")["registrationsFound"] == 0, "the register holds no row yet"
    erased.set()
    assert register.join(20) == []
    assert active(on24, reg) == [], "the register checked again under its lease and stood down"
    assert row(reg).state == "forgotten" and row(reg).email is None
