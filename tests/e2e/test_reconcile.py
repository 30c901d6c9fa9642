# The fixtures env and crm come from the adversity tests (same org, webinars and short timing): their import
# is how pytest finds them (F401) and the parameters that share their names are injections (F811).
# ruff: noqa: F401, F811
"""Reconciliation of one webinar: every drift class at once, the report's counts, and the repair through the
normal registration path. Real parts: Azurite, the ON24 and Dataverse stand-ins over sockets, the HTTP functions.

What an admin would check: the counts on the reconcile answer and the status route (no email anywhere), ON24
agreeing with CRM after ``repair=true``, the walk-in from ON24's own page untouched, the forgotten person absent,
and a second repair changing nothing.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient

from ForgetAttendee import main as forget_main
from OperationStatus import main as operation_main
from Reconcile import main as reconcile_main
from RemoveCredentials import main as remove_main
from sandbox.triggers import dataverse_delete_body
from shared.app import get_app, reset_app
from shared.entrypoints import timers
from StoreCredentials import main as store_main
from tests.builders import CrmOrg, dataverse_body
from tests.conftest import credentials_body
from tests.e2e.test_registration_adversity import ORG, T0, WEBINAR, InBackground, crm, deliver_until_done, env, row
from tests.functions import admin_request, dataverse_properties, http_request, json_body
from WebinarStatus import main as status_main

ROUTE = "orgs/{orgId}/webinars/{webinarId}/reconcile"
STATUS = "orgs/{orgId}/webinar/status"
REGISTRATIONS = "msevtmgt_eventregistrations"


def register(crm: CrmOrg, first: str, last: str, email: str, *, deliver: bool = True) -> str:
    """A CRM registration; with ``deliver`` its Create message is delivered (else it was dead-lettered)."""
    reg = crm.registration(crm.contact(first, last, email))
    if deliver:
        deliver_until_done(dataverse_body(org_id=ORG, registration_id=reg, at=T0),
                           application_properties=dataverse_properties("Create"))  # fmt: skip
    return reg


def reconcile(**params: str) -> tuple[int, dict[str, Any], Any]:
    response = reconcile_main(admin_request("POST", ROUTE, {"orgId": ORG, "webinarId": str(WEBINAR)}, params=params))
    return response.status_code, json_body(response), response


def active_in_on24(on24: Any) -> dict[str, str | None]:
    """ON24's active registrants of the webinar: email -> the registration id they carry."""
    return {r["email"].lower(): r.get("exteventusercd") for r in on24.registrants(WEBINAR) if not r["isdeleted"]}


@pytest.fixture
def drift(crm: CrmOrg, on24: Any, dataverse: Any) -> dict[str, str]:
    """Every drift class at once (see the test); returns the registration ids by person."""
    people = {"joerg": register(crm, "Jörg", "Müller", "joerg.mueller@example.de")}
    people["asa"] = register(crm, "Åsa", "Ødegård", "asa.odegard@example.no", deliver=False)  # dead-lettered
    # Switched off: the registrations made meanwhile are skipped; switched on again: nothing pushes them.
    assert remove_main(http_request("DELETE", ORG)).status_code == 200
    people["ivan"] = register(crm, "Иван", "Петров", "ivan.petrov@example.ru")
    people["mikko"] = register(crm, "Mikko", "Virtanen", "mikko.virtanen@example.fi")
    assert row(people["ivan"]).state == "skipped"
    assert store_main(http_request("PUT", ORG, credentials_body())).status_code == 200
    people["sigga"] = register(crm, "Sigríður", "Jónsdóttir", "sigridur@example.is")
    on24.soft_delete(WEBINAR, "sigridur@example.is")  # deleted by hand in ON24's console
    people["lars"] = register(crm, "Lars", "Nilsson", "lars.nilsson@example.se")
    dataverse.add_row(REGISTRATIONS, {"msevtmgt_eventregistrationid": people["lars"], "msevtmgt_iscanceled": True})
    people["karl"] = register(crm, "Karl", "Öberg", "karl.oberg@example.se")  # then edited by hand in ON24
    on24.soft_delete(WEBINAR, "karl.oberg@example.se")
    on24.add_registrant(WEBINAR, "k.oberg@example.se", firstname="Karl", exteventusercd=people["karl"])
    on24.add_registrant(WEBINAR, "walk.in@example.dk", firstname="Mette", lastname="Sørensen")  # ON24's own page
    people["olga"] = register(crm, "Ольга", "Смирнова", "olga.smirnova@example.ru")
    response = forget_main(admin_request("POST", "orgs/{orgId}/webinar/forget", {"orgId": ORG},
                                         {"email": "olga.smirnova@example.ru"}))  # fmt: skip
    assert response.status_code == 200
    return people


def test_every_drift_class_at_once_is_counted_then_repaired_through_the_normal_path(
    drift: dict[str, str], on24: Any
) -> None:
    walk_in_before = on24.registrant(WEBINAR, "walk.in@example.dk")
    status, report, _ = reconcile(driftIds="true")
    assert status == 200, report
    assert report["counts"] == {
        "missingInOn24": 4,  # dead-lettered, two skipped while off, one deleted by hand in ON24
        "goneInCrm": 1,  # cancelled in CRM, the message never came
        "different": 1,  # the email edited by hand in ON24
        "notOurs": 1,  # the walk-in from ON24's own page
        "agreed": 2,  # Jörg, and the forgotten Olga (ON24 must not hold her)
        "forgotten": 1,
    }
    assert sorted(report["ids"]["missingInOn24"]) == sorted(drift[p] for p in ("asa", "ivan", "mikko", "sigga"))
    assert report["ids"]["goneInCrm"] == [drift["lars"]] and report["ids"]["different"] == [drift["karl"]]
    assert "@" not in json.dumps(report), "no email in the answer"
    assert active_in_on24(on24).get("asa.odegard@example.no") is None, "a report alone changes nothing"

    status, repaired, _ = reconcile(repair="true")
    assert status == 200, repaired
    assert repaired["counts"]["agreed"] == 8 and repaired["drift"] == 0 and repaired["counts"]["notOurs"] == 1
    assert repaired["repairs"] == {"cancelled": 1, "registered": 5}, repaired["repairs"]
    held = active_in_on24(on24)
    expected = {
        "joerg.mueller@example.de": "joerg",
        "asa.odegard@example.no": "asa",
        "ivan.petrov@example.ru": "ivan",
        "mikko.virtanen@example.fi": "mikko",
        "sigridur@example.is": "sigga",
        "karl.oberg@example.se": "karl",
    }
    assert {email: held.get(email) for email in expected} == {e: drift[p] for e, p in expected.items()}
    assert "lars.nilsson@example.se" not in held and "k.oberg@example.se" not in held
    assert on24.registrant(WEBINAR, "walk.in@example.dk") == walk_in_before, "the walk-in is untouched"
    assert "olga.smirnova@example.ru" not in held and drift["olga"] not in held.values(), "forgotten stays absent"
    assert row(drift["olga"]).state == "forgotten" and row(drift["asa"]).state == "registered"

    on24.reset_log()  # idempotent: a second repair finds agreement and calls ON24's registrant writes never
    status, again, _ = reconcile(repair="true")
    assert status == 200 and again["drift"] == 0 and again["repairs"] is None
    assert on24.count("POST", "/registrant") == 0 and on24.count("PATCH") == 0


def test_the_status_route_shows_the_counts_and_time_per_webinar_and_the_ids_only_on_request(
    drift: dict[str, str],
) -> None:
    assert reconcile()[0] == 200
    plain = json_body(status_main(admin_request("GET", STATUS, {"orgId": ORG})))
    webinar = next(w for w in plain["webinars"] if w["webinarId"] == str(WEBINAR))
    reconciliation = webinar["reconciliation"]
    assert reconciliation["counts"]["missingInOn24"] == 4 and reconciliation["drift"] == 6
    assert reconciliation["lastReconciledAt"] is not None and "ids" not in reconciliation
    asked = json_body(status_main(admin_request("GET", STATUS, {"orgId": ORG}, params={"driftIds": "true"})))
    ids = next(w for w in asked["webinars"] if w["webinarId"] == str(WEBINAR))["reconciliation"]["ids"]
    assert ids["goneInCrm"] == [drift["lars"]] and "@" not in json.dumps(asked["webinars"])


def test_a_repair_is_audited_with_who_when_and_how_many(
    drift: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    assert reconcile(repair="true")[0] == 200
    audit = [r for r in caplog.records if getattr(r, "audit", None) == "reconcile.repaired"]
    assert len(audit) == 1 and audit[0].actor == "local developer" and audit[0].repairs == 6
    state = get_app().reconciliations.get(ORG, str(WEBINAR))
    assert state is not None and state.repaired_by == "local developer" and state.repaired_at is not None
    assert sum(state.repairs.values()) == 6


def test_switching_the_integration_on_again_backfills_what_was_skipped(crm: CrmOrg, on24: Any) -> None:
    first = register(crm, "Jörg", "Müller", "joerg.mueller@example.de")
    assert remove_main(http_request("DELETE", ORG)).status_code == 200
    skipped = register(crm, "Åsa", "Ødegård", "asa.odegard@example.no")
    assert store_main(http_request("PUT", ORG, credentials_body())).status_code == 200
    assert "asa.odegard@example.no" not in active_in_on24(on24)
    report = timers.run_reconciliations(get_app(), deadline=time.monotonic() + 30)
    assert report is not None and report.backfills == [ORG], report
    assert active_in_on24(on24)["asa.odegard@example.no"] == skipped and row(skipped).state == "registered"
    assert active_in_on24(on24)["joerg.mueller@example.de"] == first
    again = timers.run_reconciliations(get_app(), deadline=time.monotonic() + 30)  # done: no second backfill
    assert again is not None and again.backfills == [] and again.reconciled == []


def test_a_backfill_reads_the_orgs_ledger_partition_once(
    crm: CrmOrg, on24: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webinars the ledger knows and those of skipped registrations come from one read: the switch-on of an org
    with 500,000 ledger rows reads them once, not twice."""
    agreed = register(crm, "Jörg", "Müller", "joerg.mueller@example.de")
    assert remove_main(http_request("DELETE", ORG)).status_code == 200
    skipped = register(crm, "Åsa", "Ødegård", "asa.odegard@example.no")
    assert store_main(http_request("PUT", ORG, credentials_body())).status_code == 200
    whole_reads: list[str] = []
    original = TableClient.query_entities

    def counted(self: TableClient, *args: Any, **kwargs: Any) -> Any:
        query = str(kwargs.get("query_filter") or (args[0] if args else ""))
        if self.table_name.endswith("ledger") and query == "PartitionKey eq @org":  # every row of an org
            whole_reads.append(str(kwargs.get("select")))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TableClient, "query_entities", counted)
    report = timers.run_reconciliations(get_app(), deadline=time.monotonic() + 30)
    assert report is not None and report.backfills == [ORG], report
    assert active_in_on24(on24)["asa.odegard@example.no"] == skipped, "the skipped registration was backfilled"
    assert active_in_on24(on24)["joerg.mueller@example.de"] == agreed
    assert len(whole_reads) == 1, f"the org's partition was read {len(whole_reads)} times: {whole_reads}"


def test_a_webinar_too_large_for_the_request_is_accepted_and_finished_by_the_timer(
    crm: CrmOrg, on24: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(crm, "Åsa", "Ødegård", "asa.odegard@example.no", deliver=False)
    monkeypatch.setenv("ON24_ATTENDEE_CALLS_PER_MINUTE", "1")  # one list page: a minute's wait at worst
    monkeypatch.setenv("ON_DEMAND_PULL_BUDGET_SECONDS", "1")
    reset_app()
    status, body, response = reconcile(repair="true")
    assert status == 202 and body["status"] == "in_progress" and response.headers["Retry-After"]
    location = response.headers["Location"]
    assert location == body["operation"]["href"] and "asa.odegard@example.no" not in active_in_on24(on24)

    def poll() -> tuple[int, Any]:
        operation = operation_main(admin_request("GET", "orgs/{orgId}/operations/{operationId}",
                                                 {"orgId": ORG, "operationId": body["operation"]["id"]}))  # fmt: skip
        return operation.status_code, json_body(operation)

    assert poll()[0] == 202, "running until the timer has done it"
    report = timers.run_reconciliations(get_app(), deadline=time.monotonic() + 90)
    assert report is not None and f"{ORG}/{WEBINAR}" in report.reconciled
    assert "asa.odegard@example.no" in active_in_on24(on24), "the timer did the repair that was asked for"
    status, done = poll()
    assert status == 200 and done["status"] == "succeeded" and done["kind"] == "reconcile"
    assert done["result"]["counts"]["missingInOn24"] == 0 and done["result"]["repairs"] == {"registered": 1}
    state = get_app().reconciliations.get(ORG, str(WEBINAR))
    assert state is not None and state.requested_at is None and state.repaired_by == "local developer"


# ---- a repair against the deliveries and erasures running beside it ---------------------------------------------
def test_a_repair_never_writes_over_a_delivery_holding_the_row(crm: CrmOrg, on24: Any) -> None:
    reg = crm.registration(crm.contact("Åsa", "Ødegård", "asa.odegard@example.no"))
    create = on24.hold_next("POST", "/registrant")
    delivery = InBackground(
        lambda: deliver_until_done(
            dataverse_body(org_id=ORG, registration_id=reg, at=T0),
            application_properties=dataverse_properties("Create"),
        )
    )
    create.wait_arrived()  # the delivery holds the row's lease and is inside its ON24 create
    status, report, _ = reconcile(repair="true")
    assert status == 200 and report["repairs"] == {"deferred": 1}, report
    assert on24.count("POST", "/registrant") == 1, "the repair made no ON24 call of its own"
    create.release()
    assert not delivery.join()
    status, again, _ = reconcile(repair="true")
    assert again["drift"] == 0 and again["repairs"] is None
    assert [r for r in on24.registrants(WEBINAR) if not r["isdeleted"]] == [
        on24.registrant(WEBINAR, "asa.odegard@example.no")
    ]


def test_an_erasure_that_lands_during_a_repair_keeps_the_person_out(crm: CrmOrg, on24: Any, dataverse: Any) -> None:
    contact = crm.contact("Иван", "Петров", "ivan.petrov@example.ru")
    reg = crm.registration(contact)  # its register was dead-lettered: the reconciliation finds it missing
    read = dataverse.hold_next("GET", "msevtmgt_eventregistrations(")
    repair = InBackground(lambda: reconcile(repair="true"))
    read.wait_arrived()  # classified as missing; the repair's re-drive is reading the registration
    erasure = dataverse_delete_body(org_id=ORG, entity="contact", row_id=contact, at=T0,
                                    email="ivan.petrov@example.ru")  # fmt: skip
    deliver_until_done(erasure, application_properties=dataverse_properties("Delete"))  # ranked an hour ago
    read.release()
    assert not repair.join()
    assert "ivan.petrov@example.ru" not in active_in_on24(on24), "a repair never registers a forgotten person"
    assert row(reg) is None or row(reg).state != "registered"


# ---- bad requests lose nothing; the daily schedule --------------------------------------------------------------
def test_bad_requests_get_a_clear_error_and_record_nothing(env: dict[str, str], crm: CrmOrg) -> None:
    def post(org: str, webinar: str, **params: str) -> tuple[int, dict[str, Any]]:
        response = reconcile_main(admin_request("POST", ROUTE, {"orgId": org, "webinarId": webinar}, params=params))
        return response.status_code, json_body(response)

    status, body = post(ORG, "0")
    assert status == 400 and body["error"]["code"] == "invalid_webinar_id"
    status, body = post(ORG, str(WEBINAR), repair="sometimes")
    assert status == 400 and body["error"]["code"] == "invalid_parameter" and body["error"]["field"] == "repair"
    other = "0e0e0e0e-1111-4222-8333-000000000009"
    status, body = post(other, str(WEBINAR))
    assert status == 409 and body["error"]["code"] == "not_configured"
    assert get_app().reconciliations.list(ORG) == [] and get_app().reconciliations.list(other) == []
    get = reconcile_main(admin_request("GET", ROUTE, {"orgId": ORG, "webinarId": str(WEBINAR)}))
    assert get.status_code == 405


def test_the_timer_reconciles_an_open_webinar_once_a_day_and_a_closed_one_never(
    crm: CrmOrg, on24: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace as with_changes
    from datetime import UTC, datetime

    from shared.reconcile import run_reconciliations
    from shared.store.sync_state import WebinarSyncState
    from tests.e2e.test_registration_adversity import OTHER_WEBINAR

    app = get_app()
    app.reconciliations.set_switch_on_mark(ORG, app.credentials.get(ORG).created_at)  # no backfill in this test
    now = datetime.now(UTC)
    app.sync_state.save(WebinarSyncState(ORG, str(WEBINAR), window_end=now + timedelta(days=30)))
    app.sync_state.save(WebinarSyncState(ORG, str(OTHER_WEBINAR), window_end=now - timedelta(days=1)))
    register(crm, "Åsa", "Ødegård", "asa.odegard@example.no", deliver=False)
    ports = app.reconcile_ports()

    def run_at(moment: datetime) -> list[str]:
        return run_reconciliations(with_changes(ports, clock=lambda: moment), app.schedule_parts(),
                                   deadline=time.monotonic() + 30).reconciled  # fmt: skip

    assert run_at(now) == [f"{ORG}/{WEBINAR}"]
    assert "asa.odegard@example.no" not in active_in_on24(on24), "the daily run reports; it does not repair"
    assert run_at(now + timedelta(hours=23)) == []
    assert run_at(now + timedelta(hours=25)) == [f"{ORG}/{WEBINAR}"]
    state = app.reconciliations.get(ORG, str(WEBINAR))
    assert state is not None and state.counts["missingInOn24"] == 1 and state.repaired_at is None


def test_one_webinar_failing_never_stops_the_others_in_a_timer_run(crm: CrmOrg, on24: Any) -> None:
    from shared import reconcile as use_case

    app = get_app()
    app.reconciliations.set_switch_on_mark(ORG, app.credentials.get(ORG).created_at)  # no backfill in this test
    unknown = "880199"  # ON24 has no such event: its list answers 404
    reg = register(crm, "Åsa", "Ødegård", "asa.odegard@example.no", deliver=False)
    for webinar in (unknown, str(WEBINAR)):
        use_case.request(app.reconcile_ports(), ORG, webinar, repair=True, actor="Ola Nordmann")
    report = timers.run_reconciliations(app, deadline=time.monotonic() + 30)
    assert report is not None and report.reconciled == [f"{ORG}/{WEBINAR}"] and f"{ORG}/{unknown}" in report.failed
    assert active_in_on24(on24).get("asa.odegard@example.no") == reg, "the healthy webinar was repaired"
    failed = app.reconciliations.get(ORG, unknown)
    assert failed is not None and failed.last_error and failed.requested_at is not None, "asked again next run"
