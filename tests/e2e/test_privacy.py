# The fixtures env and crm come from the adversity tests (same org, webinars and short timing): their import
# is how pytest finds them (F401) and the parameters that share their names are injections (F811).
# ruff: noqa: F401, F811
"""Privacy end to end, through the function folders: retention inside the PullMetrics timer, the forget route,
and leaving with ``DELETE .../credentials?purge=true``. What a customer's privacy officer would check: no email
left in a closed webinar's rows, a forgotten person gone from ON24 and from our rows with an audit line that
names no email, and after leaving not one row of the org, while every other org keeps all of its rows.
Real parts: Azurite (tables and blobs), the Key Vault, ON24 and Dataverse stand-ins.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.functions.timer import TimerRequest

from CredentialsStatus import main as status_main
from ForgetAttendee import main as forget_main
from OperationStatus import main as operation_main
from PullMetrics import main as pull_main
from RegisterAttendee import main as register_main
from RemoveCredentials import main as remove_main
from shared import privacy
from shared.app import get_app, reset_app
from shared.errors import TransientError
from shared.store.ledger import LedgerEntry
from shared.store.parked import PARKED_PARTITION
from shared.store.rejected import INLINE_BODY_BYTES
from StoreCredentials import main as store_main
from tests.builders import CrmOrg, canonical_body
from tests.conftest import ON24_CLIENT_ID, credentials_body
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
from tests.functions import admin_request, http_request, json_body, principal_headers, service_bus_message

CLOSED_WEBINAR = 880150  # ran 100 days ago, on demand until 40 days ago: with 30 days' grace, closed 10 days ago
OTHER_ORG = "7e0c2d1e-3f4a-4b5c-9d6e-7f8091a2b3c5"
OTHER_CLIENT = "3003"
FORGET_ROUTE = "orgs/{orgId}/webinar/forget"


def run_timer() -> None:
    pull_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))


def table(env: dict[str, str], suffix: str) -> Any:
    service = TableServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    return service.get_table_client(env["STATE_TABLE_PREFIX"] + suffix)


def rows_of(env: dict[str, str], suffix: str, org: str) -> list[dict[str, Any]]:
    """Every row of ``org`` in a state table: its partition, its parked and rejected rows."""
    found = []
    for entity in table(env, suffix).list_entities():
        pk, rk = entity["PartitionKey"], entity["RowKey"]
        if pk == org or (pk == PARKED_PARTITION and rk.startswith(org + "|")) or entity.get("OrgId") == org:
            found.append(dict(entity))
    return found


def emails_in(rows: list[dict[str, Any]]) -> list[str]:
    return [f"{r['RowKey']}.{k}" for r in rows for k, v in r.items() if isinstance(v, str) and "@" in v]


# ---- retention ------------------------------------------------------------------------------------------------
def test_after_the_retention_run_no_email_remains_in_the_rows_of_a_closed_webinar(
    env: dict[str, str], crm: CrmOrg, on24: Any
) -> None:
    now = datetime.now(UTC)
    on24.add_event(ON24_CLIENT_ID, CLOSED_WEBINAR, livestart=now - timedelta(days=100),
                   archiveend=now - timedelta(days=40))  # fmt: skip
    closed = [str(uuid.uuid4()) for _ in range(3)]
    for i, reg in enumerate(closed):
        deliver_until_done(canonical(reg, crm, "register", T0, f"past{i}@people.example", webinar=CLOSED_WEBINAR))
    open_reg = str(uuid.uuid4())
    deliver_until_done(canonical(open_reg, crm, "register", T0, "coming@people.example"))
    before = {reg: row(reg) for reg in closed}
    busy = before[closed[0]]  # a delivery holds this row right now
    ledger = get_app().ledger
    held = ledger.write(replace(busy, lease_id="L1", lease_until=now + timedelta(hours=1)))
    assert held is not None

    run_timer()  # PullMetrics learns the webinars' schedules
    assert f"{ORG}/{CLOSED_WEBINAR}" in index_blobs(), "the closed webinar was pulled once, its match index kept"
    run_timer()  # the housekeeping share of the next run clears the closed webinar
    assert f"{ORG}/{CLOSED_WEBINAR}" not in index_blobs(), "its match index goes with the emails"
    closed_rows = [r for r in table(env, "ledger").list_entities() if r.get("On24EventId") == str(CLOSED_WEBINAR)]
    assert emails_in(closed_rows) == [f"{closed[0]}.Email"], "only the leased row keeps its email"
    assert row(open_reg).email == "coming@people.example", "an open webinar's rows keep their emails"

    assert ledger.write(replace(row(closed[0]), lease_id=None, lease_until=None))  # the delivery finished
    run_timer()
    closed_rows = [r for r in table(env, "ledger").list_entities() if r.get("On24EventId") == str(CLOSED_WEBINAR)]
    assert len(closed_rows) == 3 and emails_in(closed_rows) == []
    for reg in closed:
        after = row(reg)
        assert (after.state, after.webinar_id, after.registrant_id) == ("registered", str(CLOSED_WEBINAR),
                                                                           before[reg].registrant_id)  # fmt: skip
        assert (after.last_message_at, after.last_priority) == (before[reg].last_message_at, before[reg].last_priority)
    state = get_app().sync_state.get(ORG, str(CLOSED_WEBINAR))
    assert state is not None and state.retention_cleared_at is not None

    on24.reset_log()  # the ids that stay keep a redelivery a no-op
    deliver_until_done(canonical(closed[1], crm, "register", T0, "past1@people.example", webinar=CLOSED_WEBINAR))
    assert on24.count() == 0 and row(closed[1]).email is None


def test_rejected_bodies_and_their_blobs_expire_after_the_retention_days(env: dict[str, str], crm: CrmOrg) -> None:
    small = json.dumps({"schema": "webinar-registration/1", "orgId": ORG, "action": "dance"})
    large = json.dumps({"schema": "webinar-registration/1", "orgId": ORG, "pad": "x" * (INLINE_BODY_BYTES + 10)})
    for body in (small, large):
        register_main(service_bus_message(body))
    app = get_app()
    assert len(list(app.rejected.list())) == 2 and len(list(app._blob_container("rejected").list_blobs())) == 1

    def housekeeping_at(moment: datetime) -> privacy.HousekeepingReport:
        ports = replace(app.privacy_ports(), clock=lambda: moment)
        return privacy.housekeeping(ports, app.privacy_options(), budget_seconds=30)

    now = datetime.now(UTC)
    assert housekeeping_at(now + timedelta(days=29)).rejected_expired == 0
    assert len(list(app.rejected.list())) == 2
    report = housekeeping_at(now + timedelta(days=31))
    assert report.rejected_expired == 2 and not report.errors
    assert list(app.rejected.list()) == [] and list(app._blob_container("rejected").list_blobs()) == []


# ---- erasure of one person ------------------------------------------------------------------------------------
def forget(org: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    response = forget_main(admin_request("POST", FORGET_ROUTE, {"orgId": org}, body, **kwargs))
    return response.status_code, json_body(response)


def test_forget_removes_the_on24_registrant_and_the_rows_personal_data_and_leaves_an_audit_line(
    crm: CrmOrg, on24: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, bystander = (str(uuid.uuid4()) for _ in range(3))
    deliver_until_done(canonical(first, crm, "register", T0, "Grace.Hopper@people.example"))
    deliver_until_done(canonical(second, crm, "register", T0, "grace.hopper@PEOPLE.example", webinar=880102))
    deliver_until_done(canonical(bystander, crm, "register", T0, "alan.turing@people.example"))
    bad = json.dumps({"schema": "webinar-registration/1", "orgId": ORG, "action": "dance",
                      "attendee": {"email": "grace.hopper@people.example"}})  # fmt: skip
    register_main(service_bus_message(bad))  # kept whole, filed under the org

    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")  # App Service authentication names the admin
    reset_app()
    officer = principal_headers("privacy.officer@contoso.example", ["Webinar.Admin"])
    with caplog.at_level(logging.INFO):
        code, answer = forget(ORG, {"email": "  GRACE.HOPPER@people.example "}, headers=officer)
    assert code == 200, answer
    assert sorted(answer["registrations"], key=lambda r: r["registrationId"]) == sorted(
        [{"registrationId": first, "outcome": "forgotten"}, {"registrationId": second, "outcome": "forgotten"}],
        key=lambda r: r["registrationId"],
    )
    assert answer["registrationsFound"] == 2 and answer["rejectedMessagesDeleted"] == 1
    assert "grace" not in json.dumps(answer).lower(), "the answer never holds the email"
    assert active(on24, first) == [] and active(on24, second) == []
    assert not [r for w in (WEBINAR, 880102) for r in on24.registrants(w) if "grace" in r["email"].lower()]
    for reg in (first, second):
        entry = row(reg)
        assert entry.state == "forgotten" and entry.email is None and entry.pending == ()
        assert entry.registrant_id, "the ON24 registrant id stays, so nothing can revive the person unnoticed"
    assert row(bystander).email == "alan.turing@people.example" and active(on24, bystander)
    assert not [m for m in get_app().rejected.list() if b"grace" in m.body.lower()]

    audit = [r for r in caplog.records if getattr(r, "audit", None) == "person.forgotten"]
    assert len(audit) == 1 and audit[0].actor == "privacy.officer@contoso.example" and audit[0].registrations == 2
    assert audit[0].erasure_id == answer["erasureId"] and audit[0].created > 0, "who, when, how many"
    assert "grace" not in caplog.text.lower()

    on24.reset_log()
    code, again = forget(ORG, {"email": "grace.hopper@people.example"}, headers=officer)
    assert code == 200 and again["registrationsFound"] == 0 and again["rejectedMessagesDeleted"] == 0
    assert on24.count() == 0, "idempotent: nothing left to erase, no ON24 call"


def test_forget_meeting_a_delivery_under_way_answers_503_and_a_repeat_finishes_it(
    crm: CrmOrg, on24: Any, caplog: pytest.LogCaptureFixture
) -> None:
    reg = str(uuid.uuid4())
    create = on24.hold_next("POST", "/registrant")
    holder = InBackground(lambda: deliver_until_done(canonical(reg, crm, "register", T0, "in.flight@people.example")))
    create.wait_arrived()  # the registration holds the row (its email is pending) and is inside ON24's create
    with caplog.at_level(logging.INFO):
        code, answer = forget(ORG, {"email": "In.Flight@people.example"})
    assert code == 503 and answer["error"]["code"] == "erasure_incomplete"
    partial = [r for r in caplog.records if getattr(r, "audit", None) == "person.forgotten"]
    assert len(partial) == 1 and partial[0].complete is False and partial[0].registrations == 1
    create.release()
    assert not holder.join() and active(on24, reg) == [(WEBINAR, "in.flight@people.example")]
    code, answer = forget(ORG, {"email": "in.flight@people.example"})
    assert code == 200 and answer["registrations"] == [{"registrationId": reg, "outcome": "forgotten"}]
    assert active(on24, reg) == [] and row(reg).email is None


def test_forget_during_an_outage_replaces_the_persons_parked_message_with_the_forget(crm: CrmOrg, on24: Any) -> None:
    reg = str(uuid.uuid4())
    on24.fail_next(100, status=503)  # ON24 is down: the third failed delivery parks the registration
    body = canonical(reg, crm, "register", T0, "parked.person@people.example")
    for count in (1, 2):
        with pytest.raises(TransientError):
            register_main(service_bus_message(body, delivery_count=count))
    register_main(service_bus_message(body, delivery_count=3))
    app = get_app()
    assert [b"parked.person" in m.command.encode() for m in app.parked.for_org(ORG)] == [True]

    code, answer = forget(ORG, {"email": "Parked.Person@people.example"})
    assert code == 200 and [r["outcome"] for r in answer["registrations"]] == ["parked"], answer
    [kept] = app.parked.for_org(ORG)
    assert "parked.person" not in kept.command.lower() and '"forget"' in kept.command, "the forget waits instead"
    on24.clear_faults()


def test_forget_in_a_disabled_org_says_which_rows_it_could_not_erase(crm: CrmOrg, on24: Any) -> None:
    reg = str(uuid.uuid4())
    deliver_until_done(canonical(reg, crm, "register", T0, "still.here@people.example"))
    assert delete(ORG)[0] == 200  # the integration is switched off: ON24 cannot be reached for the org
    on24.reset_log()
    code, answer = forget(ORG, {"email": "still.here@people.example"})
    assert code == 200 and answer["registrations"] == [
        {"registrationId": reg, "outcome": "skipped", "reason": "integration disabled: no ON24 credentials for org"}
    ]
    assert on24.count() == 0


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"", "body"),
        (b"not json", "body"),
        (b"[]", "body"),
        (b'{"email": 42}', "email"),
        (b'{"email": "no-at-sign"}', "email"),
        (b'{"email": "two words@people.example"}', "email"),
        (b'{"email": "a@b\\u0000.example"}', "email"),
        (b'{"email": "' + b"a" * 320 + b'@people.example"}', "email"),
        (b'{"email": "a@people.example", "name": "Ada"}', "name"),
    ],
)
def test_a_bad_forget_body_gets_400_naming_the_field_never_the_value(
    env: dict[str, str], on24: Any, raw: bytes, field: str
) -> None:
    code, answer = forget(ORG, raw=raw)
    assert code == 400 and answer["error"]["field"] == field
    assert "people.example" not in json.dumps(answer) and "Ada" not in json.dumps(answer)
    assert on24.count() == 0


def test_forget_is_an_admin_route_like_the_others(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    response = forget_main(admin_request("GET", FORGET_ROUTE, {"orgId": ORG}))
    assert response.status_code == 405
    assert forget("not an org!", {"email": "a@people.example"})[0] == 400
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")
    monkeypatch.setenv("ADMIN_ORG_SCOPE", "true")
    reset_app()
    assert forget(ORG, {"email": "a@people.example"})[0] == 401
    scoped_elsewhere = principal_headers("scoped@contoso.example", [f"Webinar.Admin.{OTHER_ORG}"])
    assert forget(ORG, {"email": "a@people.example"}, headers=scoped_elsewhere)[0] == 403
    scoped_here = principal_headers("scoped@contoso.example", [f"Webinar.Admin.{ORG.upper()}"])
    assert forget(ORG, {"email": "a@people.example"}, headers=scoped_here)[0] == 200


# ---- leaving --------------------------------------------------------------------------------------------------
def delete(org: str, **params: str) -> tuple[int, Any]:
    response = remove_main(admin_request("DELETE", "orgs/{orgId}/webinar/credentials", {"orgId": org}, params=params))
    return response.status_code, json_body(response)


def status(org: str) -> Any:
    return json_body(status_main(http_request("GET", org)))


class TwoOrgs:
    """ORG and OTHER_ORG with credentials, registrations, synced webinars, rejected bodies (one as a blob) and
    parked registrations: everything a purge has to find."""

    def __init__(self, env: dict[str, str], crm: CrmOrg, on24: Any) -> None:
        self.env = env
        on24.add_client(OTHER_CLIENT, "key-3", "Secret-3-0001")
        on24.add_event(OTHER_CLIENT, 880201)
        other = {"clientId": OTHER_CLIENT, "accessTokenKey": "key-3", "accessTokenSecret": "Secret-3-0001",
                 "dataverseUrl": crm.dataverse.url_for(OTHER_ORG)}  # fmt: skip
        assert store_main(http_request("PUT", OTHER_ORG, other)).status_code == 200
        for org, webinar in ((ORG, WEBINAR), (OTHER_ORG, 880201)):
            for i in range(2):
                body = canonical_body(org_id=org, registration_id=str(uuid.uuid4()), event_id=crm.event_id,
                                      webinar_id=str(webinar), occurred_at=T0,
                                      attendee={"email": f"p{i}.{webinar}@people.example", "firstName": "P",
                                                "lastName": "Q"})  # fmt: skip
                deliver_until_done(body)
            for pad in (0, INLINE_BODY_BYTES + 10):
                register_main(service_bus_message(json.dumps({"orgId": org, "action": "dance", "pad": "x" * pad})))
            table(env, "ledger").upsert_entity({"PartitionKey": PARKED_PARTITION, "RowKey": f"{org}|{uuid.uuid4()}",
                                                "Body": f'{{"email": "parked.{webinar}@people.example"}}'})  # fmt: skip
        run_timer()  # sync state for both orgs' webinars

    def snapshot(self, org: str) -> dict[str, list[tuple[str, str, str]]]:
        def keys(suffix: str) -> list[tuple[str, str, str]]:
            return sorted((r["PartitionKey"], r["RowKey"], json.dumps(r, default=str, sort_keys=True))
                          for r in rows_of(self.env, suffix, org))  # fmt: skip

        return {suffix: keys(suffix) for suffix in ("orgs", "ledger", "syncstate")}

    def blobs(self) -> list[str]:
        return sorted(b.name for b in get_app()._blob_container("rejected").list_blobs())


def index_blobs() -> list[str]:
    """PullMetrics' match indexes, ``<org>/<webinar>``."""
    return sorted(b.name for b in get_app()._blob_container("metrics").list_blobs())


def test_purge_leaves_zero_rows_for_the_org_and_does_not_touch_another_orgs_rows(
    env: dict[str, str], crm: CrmOrg, on24: Any
) -> None:
    orgs = TwoOrgs(env, crm, on24)
    mine = orgs.snapshot(ORG)
    assert mine["ledger"] and mine["syncstate"] and len(orgs.blobs()) == 2, "the org has state to purge"
    assert index_blobs() == [f"{ORG}/{WEBINAR}", f"{ORG}/~tally", f"{OTHER_ORG}/880201", f"{OTHER_ORG}/~tally"], (
        "PullMetrics indexed both orgs' webinars and keeps each org's count tally"
    )
    other_before, other_blob = orgs.snapshot(OTHER_ORG), [
        m.key for m in get_app().rejected.list_for_org(OTHER_ORG) if len(m.body) > INLINE_BODY_BYTES
    ]

    code, answer = delete(ORG, purge="true")
    assert code == 200, answer
    assert answer["removed"] is True and answer["integration"] == "disabled"
    assert answer["purge"]["status"] == "deleted" and answer["purge"]["deleted"]["ledger"] == 2
    assert answer["purge"]["deleted"]["rejected"] == 2 and answer["purge"]["deleted"]["parked"] == 1
    after = orgs.snapshot(ORG)
    assert after["ledger"] == [] and after["syncstate"] == []
    assert [row[1] for row in after["orgs"]] == ["purge"], "only the purge request remains, until the final check"
    assert orgs.blobs() == other_blob
    assert index_blobs() == [f"{OTHER_ORG}/880201", f"{OTHER_ORG}/~tally"], "the org's index and tally are gone"
    assert answer["purge"]["deleted"]["matchIndexes"] == 2
    assert orgs.snapshot(OTHER_ORG) == other_before, "the other org keeps every row, byte for byte"

    assert status(ORG)["purge"]["status"] == "deleted"
    refused = store_main(http_request("PUT", ORG, credentials_body()))
    assert refused.status_code == 409, "no new credentials while the purge's final check is pending"
    assert json_body(refused)["error"]["code"] == "purge_in_progress"

    app = get_app()
    late = LedgerEntry(org_id=ORG, registration_id=str(uuid.uuid4()), state="new", email="late@people.example")
    assert app.ledger.write(late) is not None  # a delivery already under way when the org left writes its row
    ports = replace(app.privacy_ports(), clock=lambda: datetime.now(UTC) + privacy.PURGE_SETTLE)
    report = privacy.housekeeping(ports, app.privacy_options(), budget_seconds=30)
    assert report.purges_closed == [ORG] and report.purged[ORG]["ledger"] == 1
    assert orgs.snapshot(ORG) == {"orgs": [], "ledger": [], "syncstate": []}
    assert "purge" not in status(ORG) and orgs.snapshot(OTHER_ORG) == other_before
    assert store_main(http_request("PUT", ORG, credentials_body())).status_code == 200, "the org may come back"


def test_a_big_purge_answers_202_and_the_timer_finishes_it(env: dict[str, str], crm: CrmOrg, on24: Any) -> None:
    ledger = table(env, "ledger")
    for start in range(0, 1500, 100):
        ledger.submit_transaction([("create", {"PartitionKey": ORG, "RowKey": f"r{i:05}", "Email": f"p{i}@x.example"})
                                   for i in range(start, start + 100)])  # fmt: skip
    code, answer = delete(ORG, purge="true")
    assert code == 202, answer
    assert answer["purge"]["status"] == "running" and answer["purge"]["deleted"]["ledger"] == 1000
    assert len(rows_of(env, "ledger", ORG)) == 500
    assert status(ORG)["purge"]["status"] == "running"
    on24.reset_log()
    run_timer()
    assert rows_of(env, "ledger", ORG) == [] and status(ORG)["purge"]["status"] == "deleted"
    assert status(ORG)["purge"]["deleted"]["ledger"] == 1500
    assert on24.count() == 0, "the org has no credentials: the timer made no ON24 call for it"


def follow(location: str) -> tuple[int, Any, Any]:
    """GET a 202's Location as Logic Apps and Power Automate do, through OperationStatus' ``main``."""
    _, org, _, operation = location.removeprefix("/api/").split("/")
    route = {"orgId": org, "operationId": operation}
    response = operation_main(admin_request("GET", "orgs/{orgId}/operations/{operationId}", route))
    return response.status_code, json_body(response), response.headers


def test_a_big_purge_is_an_operation_that_turns_200_when_the_timer_has_finished_it(
    env: dict[str, str], crm: CrmOrg, on24: Any
) -> None:
    ledger = table(env, "ledger")
    for start in range(0, 2500, 100):  # each DELETE deletes 1,000 itself
        ledger.submit_transaction([("create", {"PartitionKey": ORG, "RowKey": f"r{i:05}", "Email": f"p{i}@x.example"})
                                   for i in range(start, start + 100)])  # fmt: skip
    route = "orgs/{orgId}/webinar/credentials"
    first = remove_main(admin_request("DELETE", route, {"orgId": ORG}, params={"purge": "true"}))
    again = remove_main(admin_request("DELETE", route, {"orgId": ORG}, params={"purge": "true"}))
    assert first.status_code == again.status_code == 202
    polled, unpolled = first.headers["Location"], again.headers["Location"]
    assert polled == json_body(first)["operation"]["href"] and polled.startswith(f"/api/orgs/{ORG}/operations/")
    assert int(first.headers["Retry-After"]) > 0 and polled != unpolled

    code, running, headers = follow(polled)
    assert code == 202 and running["status"] == "running" and running["kind"] == "purge"
    assert int(headers["Retry-After"]) > 0, "the async pattern keeps polling"

    run_timer()  # the timer deletes the rest; the request stays until the final check
    reset_app()  # the instance that answered the 202 is gone: the operation lives in Table Storage

    code, done, _ = follow(polled)
    assert code == 200 and done["status"] == "succeeded" and done["result"]["deleted"]["ledger"] == 2500
    assert done["finishedAt"] and done["error"] is None
    app = get_app()
    ports = replace(app.privacy_ports(), clock=lambda: datetime.now(UTC) + privacy.PURGE_SETTLE)
    assert privacy.housekeeping(ports, app.privacy_options(), budget_seconds=30).purges_closed == [ORG]
    assert follow(polled)[:2] == (200, done), "the outcome was recorded once; it stays"
    code, late = follow(unpolled)[:2]
    assert code == 200 and late["status"] == "succeeded", "closed before anyone polled: settled at the close"
    assert late["result"]["deleted"]["ledger"] == 2500
    assert {row["Kind"] for row in rows_of(env, "orgs", ORG)} == {"purge"}, "only the receipts of the purge remain"


def test_delete_without_purge_behaves_as_before(env: dict[str, str], crm: CrmOrg, on24: Any) -> None:
    reg = str(uuid.uuid4())
    deliver_until_done(canonical(reg, crm, "register", T0, "stays@people.example"))
    code, answer = delete(ORG)
    assert code == 200 and "purge" not in answer and answer["removed"] is True
    assert row(reg) is not None and row(reg).email == "stays@people.example"
    assert delete(ORG, purge="false")[0] == 200 and row(reg) is not None
    assert delete(ORG, purge="maybe") == (
        400,
        {
            "error": {
                "code": "invalid_parameter",
                "message": "purge: must be true or false",
                "target": "purge",
                "field": "purge",  # deprecated alias of target
            }
        },
    )
    assert get_app().purges.get(ORG) is None
    code, answer = delete(ORG, purge="true")  # an org switched off earlier can still leave
    assert code == 200 and answer["removed"] is False and answer["purge"]["deleted"]["ledger"] == 1
    assert row(reg) is None


def test_forget_after_a_cancel_erases_the_registrant_on24_keeps_soft_deleted(crm: CrmOrg, on24: Any) -> None:
    """A cancel is ON24's soft delete: the registrant stays in the event with its name and email, flagged deleted.
    Forgetting that person later must still erase it there (``POST /forget``), not only the ledger's copy."""
    registration, bystander = str(uuid.uuid4()), str(uuid.uuid4())
    deliver_until_done(canonical(registration, crm, "register", T0, "jörg.müller@firma.de"))
    deliver_until_done(canonical(registration, crm, "cancel", T0 + timedelta(minutes=5), "jörg.müller@firma.de"))
    deliver_until_done(canonical(bystander, crm, "register", T0, "åsa.ødegård@företag.se"))
    kept = [r for r in on24.registrants(WEBINAR) if "firma.de" in r["email"]]
    assert len(kept) == 1 and kept[0]["isdeleted"] and kept[0]["lastname"] != "deleted", "soft-deleted, data kept"

    on24.reset_log()
    code, answer = forget(ORG, {"email": "Jörg.Müller@firma.de"})
    assert code == 200 and answer["registrations"] == [{"registrationId": registration, "outcome": "forgotten"}]
    assert on24.count("POST", "/forget") == 1, "the soft-deleted registrant is erased in ON24 too"
    assert not [r for r in on24.registrants(WEBINAR) if "firma.de" in r["email"] or "müller" in r["email"].lower()]
    assert row(registration).state == "forgotten" and row(registration).email is None
    assert active(on24, bystander), "the other person stays"

    on24.reset_log()
    assert forget(ORG, {"email": "jörg.müller@firma.de"})[0] == 200
    assert on24.count() == 0, "idempotent: nothing left to erase"
