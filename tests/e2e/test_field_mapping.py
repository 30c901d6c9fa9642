"""Issue 21 end to end: attendance detail and an org's field mapping, both ways, through the real functions, the
ON24 and Dataverse stand-ins (whose metadata API serves the test org's custom columns, strictly) and Azurite."""

from __future__ import annotations

import json
import threading
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from CredentialsStatus import main as credentials_status_main
from RegisterAttendee import main as register_main
from sandbox.dataverse import Column
from shared.app import get_app, reset_app
from shared.metrics.checkins import checkin_fields
from shared.metrics.index import IndexRow
from shared.on24 import Attendee
from shared.on24.provider import attendance_of
from StoreCredentials import main as store_main
from tests.builders import CrmOrg, canonical_body, dataverse_body
from tests.conftest import ON24_CLIENT_ID, credentials_body
from tests.e2e.test_pull_metrics import CLIENT_B, ORG_A, ORG_B, Webinars, run_timer
from tests.functions import admin_request, dataverse_properties, http_request, json_body, service_bus_message
from WebinarStatus import main as status_main

REGISTRATIONS = "msevtmgt_eventregistrations"
TO_CRM = [
    {"value": "liveMinutes", "table": "msevtmgt_checkin", "column": "new_liveminutes"},
    {"value": "onDemandMinutes", "table": "msevtmgt_checkin", "column": "new_ondemandminutes"},
    {"value": "engagementScore", "table": "msevtmgt_checkin", "column": "new_engagementscore"},
    {"value": "attendanceStatus", "table": "msevtmgt_checkin", "column": "new_attendancestatus"},
    {"value": "surveys", "table": "msevtmgt_eventregistration", "column": "new_surveys"},
]


def define_custom_columns(dataverse: Any) -> None:
    """The test org's own columns (a real org adds them with its solution)."""
    for entity_set, name, column in (
        ("contacts", "new_segment", Column("string", max_length=200)),
        ("contacts", "new_rating", Column("decimal")),
        ("msevtmgt_eventregistrations", "new_campaign", Column("string", max_length=400)),
        ("msevtmgt_checkins", "new_liveminutes", Column("int")),
        ("msevtmgt_checkins", "new_ondemandminutes", Column("int")),
        ("msevtmgt_checkins", "new_engagementscore", Column("decimal")),
        ("msevtmgt_checkins", "new_attendancestatus", Column("string", max_length=20)),
        ("msevtmgt_checkins", "new_calculated", Column("int", create=False, update=False)),
        ("msevtmgt_eventregistrations", "new_surveys", Column("int")),
        ("msevtmgt_eventregistrations", "new_lastactivity", Column("datetime")),
        ("msevtmgt_eventregistrations", "new_noshow", Column("bool")),
    ):
        dataverse.add_column(entity_set, name, column)


def save_mapping(mapping: dict[str, Any] | None) -> tuple[int, Any]:
    body = credentials_body() if mapping is None else credentials_body(fieldMapping=mapping)
    response = store_main(http_request("PUT", ORG_A, body))
    return response.status_code, json_body(response)


@pytest.fixture
def org(webinars: Webinars, dataverse: Any) -> Webinars:
    define_custom_columns(dataverse)
    return webinars


# ---- saving: stored with the org's settings, shown, validated against the org's metadata ------------------------
def test_a_mapping_is_stored_with_the_settings_and_shown_by_the_credentials_get_and_the_status_route(
    org: Webinars,
) -> None:
    mapping = {
        "toProvider": [
            {"field": "std1", "source": "contact", "column": "new_segment"},
            {"field": "partnerref", "source": "constant", "value": "dynamics-ødegård"},
        ],
        "toCrm": TO_CRM,
        "noShow": {"column": "new_noshow", "value": True},
    }
    status, view = save_mapping(mapping)
    assert status == 200, view
    assert view["fieldMapping"]["toProvider"][1] == {"field": "partnerref", "source": "constant",
                                                     "value": "dynamics-ødegård"}  # fmt: skip
    shown = json_body(credentials_status_main(http_request("GET", ORG_A)))
    assert shown["fieldMapping"] == view["fieldMapping"] and len(shown["fieldMapping"]["toCrm"]) == 5
    health = json_body(status_main(admin_request("GET", "orgs/{orgId}/webinar/status", {"orgId": ORG_A})))
    assert health["credentials"]["fieldMapping"] == view["fieldMapping"]

    status, view = save_mapping(None)  # the body replaces the settings, as webinarIds
    assert status == 200 and view["fieldMapping"] is None


@pytest.mark.parametrize(
    ("mapping", "field", "words"),
    [
        ({"toCrm": [{"value": "liveMinutes", "table": "msevtmgt_checkin", "column": "new_missing"}]},
         "fieldMapping.toCrm.0.column", ("msevtmgt_checkin.new_missing", "does not exist")),
        ({"toCrm": [{"value": "polls", "table": "msevtmgt_checkin", "column": "new_calculated"}]},
         "fieldMapping.toCrm.0.column", ("msevtmgt_checkin.new_calculated", "not writable")),
        ({"toCrm": [{"value": "engagementScore", "table": "msevtmgt_checkin", "column": "new_attendancestatus"}]},
         "fieldMapping.toCrm.0.column", ("new_attendancestatus", "String", "Decimal")),
        ({"toCrm": [{"value": "firstActivity", "table": "msevtmgt_eventregistration", "column": "new_surveys"}]},
         "fieldMapping.toCrm.0.column", ("msevtmgt_eventregistration.new_surveys", "Integer", "DateTime")),
        ({"toProvider": [{"field": "std3", "source": "contact", "column": "parentcustomerid"}]},
         "fieldMapping.toProvider.0.column", ("contact.parentcustomerid", "Lookup", "only text")),
        ({"toProvider": [{"field": "std3", "source": "registration", "column": "new_segment"}]},
         "fieldMapping.toProvider.0.column", ("msevtmgt_eventregistration.new_segment", "does not exist")),
        ({"noShow": {"column": "new_noshow", "value": "ja"}},
         "fieldMapping.noShow.column", ("new_noshow", "Boolean", "text")),
        ({"toCrm": [{"value": "polls", "table": "msevtmgt_checkin", "column": "fullname"}]},
         "fieldMapping.toCrm.0.column", ("fullname", "does not exist")),
        ({"toProvider": [{"field": "email", "source": "constant", "value": "x"}]},
         "fieldMapping.toProvider.0.field", ("not a registration field",)),
        ({"toProvider": [{"field": "std1", "source": "constant", "value": "Ж" * 101}]},
         "fieldMapping.toProvider.0.value", ("100",)),
        ({"toCrm": [{"value": "polls", "table": "msevtmgt_checkin", "column": "msevtmgt_viewingdurationinmins"}]},
         "fieldMapping.toCrm.0", ("written by the app itself",)),
    ],
)  # fmt: skip
def test_a_mapping_mistake_is_a_400_naming_the_column_and_the_reason_and_nothing_is_stored(
    org: Webinars, dataverse: Any, mapping: dict[str, Any], field: str, words: tuple[str, ...]
) -> None:
    good = {"toProvider": [{"field": "std2", "source": "constant", "value": "kept"}]}
    assert save_mapping(good)[0] == 200
    status, answer = save_mapping(mapping)
    assert status == 400, answer
    error = answer["error"]
    assert error["code"] == "invalid_field" and error.get("field", error.get("target")) == field
    assert all(word in error["message"] for word in words), error["message"]
    assert json_body(credentials_status_main(http_request("GET", ORG_A)))["fieldMapping"] == {**good, "toCrm": []}


def test_the_metadata_check_reads_each_table_once_and_the_stand_in_serves_it_strictly(
    org: Webinars, dataverse: Any
) -> None:
    dataverse.reset_log()
    assert save_mapping({"toCrm": TO_CRM, "noShow": {"column": "new_noshow"}})[0] == 200
    assert dataverse.count("GET", "EntityDefinitions") == 2  # msevtmgt_checkin, msevtmgt_eventregistration
    client = get_app().dataverse(dataverse.url)
    columns = {a["LogicalName"]: a for a in client.attributes("msevtmgt_checkin")}
    assert columns["new_engagementscore"]["AttributeType"] == "Decimal"
    assert columns["msevtmgt_checkinid"]["IsValidForUpdate"] is False
    from shared.errors import InvalidDataError, NotFoundError

    with pytest.raises(NotFoundError):
        client.attributes("new_nosuchtable")
    with pytest.raises(InvalidDataError):  # a property the metadata API does not have
        client.exchange(
            "GET", f"{client._api}EntityDefinitions(LogicalName='contact')/Attributes?$select=Colour",
            entity_set="EntityDefinitions", row_id=None, headers={"Accept": "application/json"},
            decode=lambda response, what: response.json(),
        )  # fmt: skip


# ---- to the provider -----------------------------------------------------------------------------------------
def register_via_dataverse(w: Webinars, event: int, email: str, *, action: str = "Create", **reg: Any) -> str:
    crm = w.crm[event]
    if email not in w.regs:
        contact = crm.contact("Åsa", "Ødegård", email, new_segment="Nordics\nEnterprise", new_rating=4.5)
        w.regs[email] = crm.registration(contact, **reg)
    body = dataverse_body(org_id=ORG_A, registration_id=w.regs[email], message=action)
    register_main(service_bus_message(body, application_properties=dataverse_properties(action)))
    return w.regs[email]


def test_crm_columns_and_constants_reach_the_provider_in_the_reads_already_made(
    org: Webinars, on24: Any, dataverse: Any
) -> None:
    w = org
    dataverse.reset_log()
    register_via_dataverse(w, 7001, "plain@a.example")
    reads_without = dataverse.count("GET")
    assert reads_without == 3  # registration, event, contact
    mapping = {
        "toProvider": [
            {"field": "std1", "source": "contact", "column": "new_segment"},
            {"field": "std4", "source": "contact", "column": "new_rating"},
            {"field": "partnerref", "source": "registration", "column": "new_campaign"},
            {"field": "std2", "source": "constant", "value": "Dynamics 365"},
            {"field": "jobtitle", "source": "contact", "column": "new_segment"},
        ]
    }
    assert save_mapping(mapping)[0] == 200
    dataverse.reset_log()
    register_via_dataverse(w, 7001, "asa@a.example", new_campaign="Весна-2027 " + "ж" * 120)
    assert dataverse.count("GET") == reads_without, "the mapping's columns come in the reads already made"
    sent = on24.registrant(7001, "asa@a.example")
    assert sent["std1"] == "Nordics Enterprise" and sent["jobtitle"] == "Nordics Enterprise"
    assert sent["std2"] == "Dynamics 365" and sent["std4"] == "4.5"
    assert sent["partnerref"].startswith("Весна-2027 ж") and len(sent["partnerref"]) == 100  # ON24's limit
    assert sent["firstname"] == "Åsa" and sent["exteventusercd"] == w.regs["asa@a.example"]


def test_changing_the_mapping_resends_nothing_to_the_provider_until_the_registration_changes(
    org: Webinars, on24: Any
) -> None:
    w = org
    assert save_mapping({"toProvider": [{"field": "std1", "source": "constant", "value": "first"}]})[0] == 200
    register_via_dataverse(w, 7001, "done@a.example")
    assert on24.registrant(7001, "done@a.example")["std1"] == "first"
    on24.reset_log()
    assert save_mapping({"toProvider": [{"field": "std1", "source": "constant", "value": "second"}]})[0] == 200
    run_timer()
    writes = sum(on24.count(method, "/registrant") for method in ("POST", "PATCH", "DELETE"))
    assert writes == 0, "a saved mapping re-sends nothing by itself (the daily reconciliation only reads the list)"
    assert on24.registrant(7001, "done@a.example")["std1"] == "first"
    # the admin asks: a canonical update without an attendee re-reads the registration and re-sends it, in place
    ask = canonical_body(org_id=ORG_A, registration_id=w.regs["done@a.example"], event_id=w.crm[7001].event_id,
                         action="update", occurred_at=datetime.now(UTC))  # fmt: skip
    register_main(service_bus_message(ask))
    assert on24.registrant(7001, "done@a.example")["std1"] == "second"
    assert on24.count("PATCH", "/registrant") == 1 and on24.count("POST", "/registrant") == 0


# ---- to CRM ---------------------------------------------------------------------------------------------------
def test_attendance_detail_reaches_mapped_check_in_and_registration_columns_in_batch_and_once(
    org: Webinars, on24: Any, dataverse: Any
) -> None:
    w = org
    assert save_mapping({"toCrm": [*TO_CRM, {"value": "lastActivity", "table": "msevtmgt_eventregistration",
                                             "column": "new_lastactivity"}]})[0] == 200  # fmt: skip
    for email in ("jorg@a.example", "ivan@a.example", "nina@a.example"):
        w.register(ORG_A, 7001, email)
    w.watch(7001, "jorg@a.example", live=42, archive=10, questions=2, polls=3, engagementscore="7.25",
            answeredsurveys=2, resourcesdownloaded=4)  # fmt: skip
    w.watch(7001, "ivan@a.example", archive=17)
    w.watch(7001, "nina@a.example", live=5, engagementscore=1.5)
    dataverse.reset_log()
    run_timer()

    jorg = w.checkin(ORG_A, "jorg@a.example")
    assert jorg["msevtmgt_viewingdurationinmins"] == 52 and jorg["msevtmgt_numberofquestionsasked"] == 5
    assert (jorg["new_liveminutes"], jorg["new_ondemandminutes"]) == (42, 10)
    assert jorg["new_engagementscore"] == 7.25 and jorg["new_attendancestatus"] == "both"
    ivan = w.checkin(ORG_A, "ivan@a.example")
    assert ivan["new_attendancestatus"] == "on_demand" and ivan["new_engagementscore"] is None
    assert w.checkin(ORG_A, "nina@a.example")["new_attendancestatus"] == "live"
    reg = dataverse.row(REGISTRATIONS, w.regs["jorg@a.example"])
    assert reg["new_surveys"] == 2 and reg["new_lastactivity"].startswith(
        (w.live + timedelta(minutes=80 + 10)).strftime("%Y-%m-%dT%H:%M")
    )
    assert dataverse.count("PATCH") == 0 and dataverse.count("POST", "$batch") == 2, "check-ins, then registrations"

    writes = dataverse.writes
    run_timer()
    assert dataverse.writes == writes and dataverse.count("POST", "$batch") == 2, "an unchanged run writes nothing"

    mapping = {"toCrm": TO_CRM[:2]}  # the admin drops three columns: every check-in is rewritten once
    assert save_mapping(mapping)[0] == 200
    dataverse.reset_log()
    before = dataverse.writes
    run_timer()
    assert dataverse.writes == before + 3 and dataverse.count("POST", "$batch") == 1
    run_timer()
    assert dataverse.writes == before + 3, "and never again"


def test_a_no_show_is_marked_once_after_the_pull_window_closed(
    org: Webinars, on24: Any, dataverse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = org
    monkeypatch.setenv("METRICS_GRACE_DAYS", "0")
    reset_app()
    now = datetime.now(UTC).replace(microsecond=0)
    on24.add_event(ON24_CLIENT_ID, 7010, livestart=now - timedelta(hours=3), liveend=now - timedelta(hours=2),
                   archiveend=now - timedelta(minutes=30))  # fmt: skip
    w.crm[7010] = CrmOrg(dataverse, webinar_id="7010")
    assert save_mapping({"noShow": {"column": "new_noshow", "value": True}})[0] == 200
    for email in ("came@a.example", "never@a.example", "cancelled@a.example", "иван@a.example"):
        w.register(ORG_A, 7010, email)
    w.watch(7010, "came@a.example", live=30)
    cancel = canonical_body(org_id=ORG_A, registration_id=w.regs["cancelled@a.example"], event_id=w.crm[7010].event_id,
                            action="cancel", occurred_at=datetime.now(UTC) + timedelta(seconds=1))  # fmt: skip
    register_main(service_bus_message(cancel))
    cancelled = get_app().ledger.get(ORG_A, w.regs["cancelled@a.example"])
    assert cancelled is not None and cancelled.state == "cancelled"
    run_timer()

    def no_show(email: str) -> Any:
        return dataverse.row(REGISTRATIONS, w.regs[email]).get("new_noshow")

    assert no_show("never@a.example") is True and no_show("иван@a.example") is True
    assert no_show("came@a.example") is None and no_show("cancelled@a.example") is None
    state = get_app().sync_state.get(ORG_A, "7010")
    assert state is not None and state.no_show_mark
    writes = dataverse.writes
    run_timer()
    assert dataverse.writes == writes, "no-shows are marked once"

    # another entry changes, the noShow entry does not: the closed webinar is not pulled again
    both = {"noShow": {"column": "new_noshow", "value": True}, "toProvider": [
        {"field": "std1", "source": "constant", "value": "later"}]}  # fmt: skip
    assert save_mapping(both)[0] == 200
    on24.reset_log()
    run_timer()
    assert on24.count("GET", "/attendee") == 0 and dataverse.writes == writes


# ---- an org without a mapping: one rewrite for the hash version, then nothing -----------------------------------
def test_an_org_without_a_mapping_gets_its_check_ins_rewritten_once_with_the_same_columns(
    org: Webinars, on24: Any, dataverse: Any
) -> None:
    w = org
    for email in ("jorg.muller@a.example", "asa@a.example"):
        w.register(ORG_A, 7001, email)
        w.watch(7001, email, live=12, archive=3, questions=1, engagementscore=9)
    run_timer()
    before = {email: _columns(w.checkin(ORG_A, email)) for email in w.regs}
    _as_written_by_the_previous_release(ORG_A, "7001", on24)

    dataverse.reset_log()
    writes = dataverse.writes
    run_timer()
    assert dataverse.writes == writes + 2 and dataverse.count("POST", "$batch") == 1 and dataverse.count("PATCH") == 0
    assert {email: _columns(w.checkin(ORG_A, email)) for email in w.regs} == before, "the same columns"
    run_timer()
    assert dataverse.writes == writes + 2, "once, never again"


def _columns(row: dict[str, Any] | None) -> dict[str, Any]:
    assert row is not None
    return {k: v for k, v in row.items() if k.startswith("msevtmgt_") or k.startswith("_msevtmgt_")}


def _as_written_by_the_previous_release(org_id: str, webinar_id: str, on24: Any) -> None:
    """The webinar's match index as the release before issue 21 left it: hash version 1, version-1 hashes (the
    sha256 of the check-in columns, no prefix), its page marks."""
    import hashlib

    store = get_app().match_indexes
    data, etag = store.load(org_id, webinar_id)
    document = json.loads(zlib.decompress(data))
    attendees = {a.exteventusercd: attendance_of(a) for a in map(Attendee.model_validate, on24.attendees(webinar_id))}
    for values in document["rows"]:
        row = IndexRow(*values)
        fields = checkin_fields(row, attendees[row.registration_id])
        text = json.dumps(fields, sort_keys=True, default=lambda v: v.isoformat() if isinstance(v, datetime) else v)
        values[6] = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    document["hashVersion"] = 1
    assert store.save(org_id, webinar_id, zlib.compress(json.dumps(document).encode("utf-8")), etag) is not None


# ---- one org's damaged mapping is that org's ------------------------------------------------------------------------
def test_a_damaged_stored_mapping_stops_only_its_org_until_it_is_saved_again(org: Webinars, dataverse: Any) -> None:
    w = org
    w.register(ORG_A, 7001, "jorg@a.example")
    w.register(ORG_B, 7003, "asa@b.example")
    w.watch(7001, "jorg@a.example", live=10)
    w.watch(7003, "asa@b.example", live=20)
    store = get_app().credentials
    assert store._merge(ORG_B, {"FieldMapping": '{"toCrm": [{"value": 1'}, "test damage")
    run_timer()

    assert w.checkin(ORG_A, "jorg@a.example")["msevtmgt_viewingdurationinmins"] == 10
    assert w.checkin(ORG_B, "asa@b.example") is None
    record = store.get(ORG_B)
    assert record is not None and record.metrics_status == "error" and "field mapping" in (record.metrics_reason or "")
    shown = json_body(credentials_status_main(http_request("GET", ORG_B)))
    assert "cannot be read" in shown["fieldMapping"]["error"]

    body = {"clientId": CLIENT_B, "accessTokenKey": "key-b", "accessTokenSecret": "Secret-B-0001",
            "dataverseUrl": dataverse.url_for(ORG_B)}  # fmt: skip
    assert store_main(http_request("PUT", ORG_B, body)).status_code == 200
    run_timer()
    assert w.checkin(ORG_B, "asa@b.example")["msevtmgt_viewingdurationinmins"] == 20


def test_registration_columns_refused_after_the_save_leave_the_row_to_be_written_again(
    org: Webinars, dataverse: Any
) -> None:
    """The org changes a mapped column's type after the mapping was saved: the check-ins are written, the
    registration columns refused and counted failed; nothing is recorded as done, so every run tries again,
    until the column is fixed; then once, and never again."""
    w = org
    dataverse.add_column(REGISTRATIONS, "new_score", Column("decimal"))
    mapping = {"toCrm": [{"value": "liveMinutes", "table": "msevtmgt_checkin", "column": "new_liveminutes"},
                         {"value": "engagementScore", "table": "msevtmgt_eventregistration", "column": "new_score"}]}
    assert save_mapping(mapping)[0] == 200
    dataverse.add_column(REGISTRATIONS, "new_score", Column("string", max_length=10))  # changed in CRM since
    for email in ("jorg@a.example", "asa@a.example"):
        w.register(ORG_A, 7001, email)
        w.watch(7001, email, live=15, engagementscore=6.5)
    run_timer()

    assert w.checkin(ORG_A, "jorg@a.example")["new_liveminutes"] == 15
    assert dataverse.row(REGISTRATIONS, w.regs["jorg@a.example"]).get("new_score") is None
    state = get_app().sync_state.get(ORG_A, "7001")
    assert state is not None and state.counts["failed"] == 2 and state.counts["written"] == 0
    writes = dataverse.writes
    run_timer()
    assert dataverse.writes == writes + 2, "the check-ins are written again: their rows were not recorded as done"

    dataverse.add_column(REGISTRATIONS, "new_score", Column("decimal"))  # fixed in CRM
    run_timer()
    assert dataverse.row(REGISTRATIONS, w.regs["asa@a.example"])["new_score"] == 6.5
    writes = dataverse.writes
    run_timer()
    assert dataverse.writes == writes


def test_a_mapping_saved_while_a_pull_writes_takes_effect_on_the_next_run_once(org: Webinars, dataverse: Any) -> None:
    """Interleaving: the pull holds its check-in ``$batch`` at a gate while the admin saves a new mapping. The pull
    finishes under the mapping it read; the next run rewrites every check-in once under the new one; then nothing."""
    w = org
    live = {"value": "liveMinutes", "table": "msevtmgt_checkin", "column": "new_liveminutes"}
    later = {"value": "onDemandMinutes", "table": "msevtmgt_checkin", "column": "new_ondemandminutes"}
    assert save_mapping({"toCrm": [live]})[0] == 200
    for email in ("jorg@a.example", "ivan@a.example"):
        w.register(ORG_A, 7001, email)
        w.watch(7001, email, live=12, archive=4)
    gate = dataverse.hold_next("POST", "$batch")
    pulling = threading.Thread(target=run_timer)
    pulling.start()
    try:
        gate.wait_arrived()
        assert save_mapping({"toCrm": [live, later]})[0] == 200
    finally:
        gate.release()
        pulling.join(60)
    first = w.checkin(ORG_A, "jorg@a.example")
    assert first["new_liveminutes"] == 12 and first.get("new_ondemandminutes") is None

    writes = dataverse.writes
    run_timer()
    assert dataverse.writes == writes + 2 and w.checkin(ORG_A, "jorg@a.example")["new_ondemandminutes"] == 4
    run_timer()
    assert dataverse.writes == writes + 2
