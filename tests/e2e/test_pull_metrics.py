"""PullMetrics.main (timer) end to end: ON24 and Dataverse stand-ins, Azurite, registrations made by
RegisterAttendee itself, so the ledger that maps CRM registrations to ON24 registrants is the real one."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from PullMetrics import main as pull_main
from RegisterAttendee import main as register_main
from RemoveCredentials import main as remove_main
from shared.app import get_app, reset_app
from shared.crm import checkin_id
from shared.metrics import MetricsOptions, pull_metrics
from StoreCredentials import main as store_main
from tests.builders import CrmOrg, canonical_body, dataverse_body
from tests.conftest import ON24_CLIENT_ID, credentials_body
from tests.functions import dataverse_properties, http_request, service_bus_message

ORG_A = "a0a0a0a0-1111-4222-8333-000000000001"
ORG_B = "b0b0b0b0-1111-4222-8333-000000000002"
CLIENT_B = "2002"
CHECKINS = "msevtmgt_checkins"


class WorkerKilled(BaseException):
    """The host killing the worker mid-run (timeout, scale-in): nothing in the app can catch it."""


def run_timer() -> None:
    pull_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))


class Webinars:
    """Two orgs, three webinars that went live two hours ago, registrants registered through RegisterAttendee."""

    def __init__(self, on24: Any, dataverse: Any) -> None:
        self.on24, self.dataverse = on24, dataverse
        self.live = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        self.crm: dict[int, CrmOrg] = {}
        self.regs: dict[str, str] = {}  # email -> CRM registration id
        on24.add_client(CLIENT_B, "key-b", "Secret-B-0001")
        for _org, client, event in (
            (ORG_A, ON24_CLIENT_ID, 7001),
            (ORG_A, ON24_CLIENT_ID, 7002),
            (ORG_B, CLIENT_B, 7003),
        ):
            on24.add_event(client, event, livestart=self.live, liveend=self.live + timedelta(hours=1))
            self.crm[event] = CrmOrg(dataverse, webinar_id=str(event))
        body_b = {"clientId": CLIENT_B, "accessTokenKey": "key-b", "accessTokenSecret": "Secret-B-0001",
                  "dataverseUrl": dataverse.url_for(ORG_B)}  # fmt: skip
        assert store_main(http_request("PUT", ORG_A, credentials_body())).status_code == 200
        assert store_main(http_request("PUT", ORG_B, body_b)).status_code == 200

    def register(self, org: str, event: int, email: str, *, via_dataverse: bool = False) -> str:
        crm = self.crm[event]
        contact = crm.contact(email.split("@")[0].title(), "Tester", email)
        reg = crm.registration(contact)
        if via_dataverse:
            msg = service_bus_message(
                dataverse_body(org_id=org, registration_id=reg), application_properties=dataverse_properties("Create")
            )
        else:
            msg = service_bus_message(
                canonical_body(
                    org_id=org,
                    registration_id=reg,
                    event_id=crm.event_id,
                    webinar_id=str(event),
                    attendee={"email": email, "firstName": "T", "lastName": "Tester"},
                )
            )
        register_main(msg)
        self.regs[email] = reg
        return reg

    def watch(
        self,
        event: int,
        email: str,
        live: int = 0,
        archive: int = 0,
        questions: int = 0,
        polls: int = 0,
        **overrides: Any,
    ) -> None:
        first = self.live + timedelta(minutes=2)
        metrics: dict[str, Any] = {"askedquestions": questions, "answeredpolls": polls}
        if live:
            metrics |= {
                "liveminutes": live,
                "firstliveactivity": first,
                "lastliveactivity": first + timedelta(minutes=live),
            }
        if archive:
            opened = self.live + timedelta(minutes=80)
            metrics |= {
                "archiveminutes": archive,
                "firstarchiveactivity": opened,
                "lastarchiveactivity": opened + timedelta(minutes=archive % 30),
            }
        self.on24.set_attendee(event, email, **metrics, **overrides)

    def checkin(self, org: str, email: str) -> dict[str, Any] | None:
        row: dict[str, Any] | None = self.dataverse.row(CHECKINS, checkin_id(org, self.regs[email]))
        return row


@pytest.fixture
def webinars(app_env: dict[str, str], on24: Any, dataverse: Any) -> Webinars:
    return Webinars(on24, dataverse)


def test_two_orgs_three_webinars_mixed_matches(webinars: Webinars, on24: Any, dataverse: Any) -> None:
    w = webinars
    w.register(ORG_A, 7001, "ada@a.example", via_dataverse=True)
    w.register(ORG_A, 7001, "bob@a.example")
    w.register(ORG_A, 7001, "cy@a.example")
    w.register(ORG_A, 7002, "dee@a.example")
    w.register(ORG_B, 7003, "eve@b.example")
    w.register(ORG_B, 7003, "fay@b.example")
    w.watch(7001, "ada@a.example", live=42, archive=10, questions=2, polls=3)  # matched by exteventusercd
    w.watch(7001, "bob@a.example", live=5, exteventusercd="")  # matched by ON24 registrant id
    w.watch(7001, "walk-in@elsewhere.example", live=30)  # registered directly in ON24: unmatched
    w.watch(7002, "dee@a.example", archive=17, questions=1, exteventusercd="", eventuserid="999000111")  # by email
    w.watch(7003, "eve@b.example", live=55, polls=1)
    # cy and fay registered but did not attend: no check-in

    run_timer()

    ada = w.checkin(ORG_A, "ada@a.example")
    assert ada is not None
    assert ada["msevtmgt_viewingdurationinmins"] == 52 and ada["msevtmgt_numberofquestionsasked"] == 5
    assert ada["msevtmgt_checkintype"] == 100000001
    assert ada["_msevtmgt_registrationid_value"] == w.regs["ada@a.example"]
    assert ada["_msevtmgt_event_value"] == w.crm[7001].event_id
    assert ada["_msevtmgt_contact_value"], "the Dataverse-sourced registration knows its contact"
    assert ada["msevtmgt_checkintime"].startswith((w.live + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M"))
    assert w.checkin(ORG_A, "bob@a.example")["msevtmgt_viewingdurationinmins"] == 5
    dee = w.checkin(ORG_A, "dee@a.example")
    assert dee["msevtmgt_viewingdurationinmins"] == 17 and dee["msevtmgt_numberofquestionsasked"] == 1
    assert w.checkin(ORG_B, "eve@b.example")["msevtmgt_viewingdurationinmins"] == 55
    assert w.checkin(ORG_A, "cy@a.example") is None and w.checkin(ORG_B, "fay@b.example") is None
    assert len(dataverse.rows(CHECKINS)) == 4

    state = get_app().sync_state.get(ORG_A, "7001")
    assert state is not None and state.status == "ok"
    assert state.counts == {"pulled": 3, "matched": 2, "written": 2, "unchanged": 0, "unmatched": 1, "failed": 0}
    assert state.replication_key_value is not None


def test_second_run_without_change_writes_nothing_and_growth_writes_one_row(webinars: Webinars, dataverse: Any) -> None:
    w = webinars
    for email in ("a1@a.example", "a2@a.example", "a3@a.example"):
        w.register(ORG_A, 7001, email)
        w.watch(7001, email, live=10)
    run_timer()
    assert len(dataverse.rows(CHECKINS)) == 3
    writes = dataverse.writes

    run_timer()
    assert dataverse.writes == writes, "unchanged metrics are not sent again"

    w.watch(7001, "a2@a.example", live=10, archive=25)  # watched the recording too
    run_timer()
    assert dataverse.writes == writes + 1
    assert w.checkin(ORG_A, "a2@a.example")["msevtmgt_viewingdurationinmins"] == 35
    assert len(dataverse.rows(CHECKINS)) == 3, "upserts by derived id never duplicate"


def test_a_walk_in_who_registers_in_crm_later_gets_a_check_in_on_the_next_run(
    webinars: Webinars, dataverse: Any
) -> None:
    w = webinars
    w.register(ORG_A, 7001, "early@a.example")
    w.watch(7001, "early@a.example", live=10)
    w.watch(7001, "late@a.example", live=20, exteventusercd="")  # watched before registering in CRM
    run_timer()
    state = get_app().sync_state.get(ORG_A, "7001")
    assert state is not None and state.counts["unmatched"] == 1

    w.register(ORG_A, 7001, "late@a.example")  # the ledger row is written now: the match index picks it up
    writes = dataverse.writes
    run_timer()
    late = w.checkin(ORG_A, "late@a.example")
    assert late is not None and late["msevtmgt_viewingdurationinmins"] == 20
    assert dataverse.writes == writes + 1, "only the new match is written; the unchanged check-in is not"


def test_removed_org_gets_no_on24_call_and_the_other_still_syncs(webinars: Webinars, on24: Any) -> None:
    w = webinars
    w.register(ORG_A, 7001, "keep@a.example")
    w.register(ORG_B, 7003, "gone@b.example")
    w.watch(7001, "keep@a.example", live=3)
    w.watch(7003, "gone@b.example", live=4)
    assert remove_main(http_request("DELETE", ORG_B)).status_code == 200
    on24.reset_log()
    run_timer()
    assert on24.count(path_contains=f"/client/{CLIENT_B}/") == 0
    assert w.checkin(ORG_A, "keep@a.example") is not None
    assert w.checkin(ORG_B, "gone@b.example") is None


def test_revoked_token_is_flagged_on_the_org_and_does_not_stop_others(webinars: Webinars, on24: Any) -> None:
    w = webinars
    w.register(ORG_A, 7001, "ok@a.example")
    w.register(ORG_B, 7003, "revoked@b.example")
    w.watch(7001, "ok@a.example", live=8)
    w.watch(7003, "revoked@b.example", live=9)
    on24.deactivate(CLIENT_B)
    run_timer()
    assert w.checkin(ORG_A, "ok@a.example") is not None
    record = get_app().credentials.get(ORG_B)
    assert record is not None and record.status == "rejected" and "deactivated" in (record.status_reason or "")
    on24.reactivate(CLIENT_B)


def test_throttling_slows_the_run_down_and_it_completes(
    webinars: Webinars, on24: Any, dataverse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_BUDGET_SECONDS", "10")
    reset_app()
    w = webinars
    for i in range(6):
        w.register(ORG_A, 7001, f"t{i}@a.example")
        w.watch(7001, f"t{i}@a.example", live=i + 1)
    on24.fail_next(1, status=429, path_contains="/attendee", headers={"Retry-After": "1"})
    on24.fail_next(
        1,
        status=403,
        path_contains="/attendee",
        payload={"message": "You have reached the maximum number of calls for this api."},
    )
    dataverse.fail_next(
        2,
        status=429,
        path_contains="$batch",
        headers={"Retry-After": "1"},
        payload={"error": {"code": "0x80072322", "message": "Number of requests exceeded the limit"}},
    )
    run_timer()
    assert len(dataverse.rows(CHECKINS)) == 6
    assert on24.count("GET", "/attendee") >= 3 and dataverse.count("POST", "$batch") >= 3


def test_crash_mid_run_loses_nothing_and_the_next_run_finishes_without_duplicates(
    webinars: Webinars, on24: Any, dataverse: Any
) -> None:
    w = webinars
    on24.paging = "zero"
    emails = [f"c{i:03}@a.example" for i in range(250)]  # three ON24 pages of 100
    for email in emails:
        w.register(ORG_A, 7001, email)
        w.watch(7001, email, live=7)
    app = get_app()
    batches = {"n": 0}

    class CrashingCrm:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def upsert_checkins(self, *args: Any, **kwargs: Any) -> Any:
            batches["n"] += 1
            if batches["n"] == 3:
                raise WorkerKilled("worker killed")
            return self.inner.upsert_checkins(*args, **kwargs)

    ports = replace(app.metrics_ports(), crm_for=lambda org: CrashingCrm(app.crm_for(org)))
    options = MetricsOptions(**{**app.metrics_options().__dict__, "chunk_rows": 100})
    with pytest.raises(WorkerKilled, match="worker killed"):
        pull_metrics(ports, options)
    assert 0 < len(dataverse.rows(CHECKINS)) < 250
    mid = app.sync_state.get(ORG_A, "7001")
    assert mid is not None and mid.pending_end is not None, "the unfinished pull is remembered"

    writes_before = dataverse.writes
    run_timer()
    rows = dataverse.rows(CHECKINS)
    assert len(rows) == 250 and len({r["msevtmgt_checkinid"] for r in rows}) == 250
    assert dataverse.writes - writes_before <= 250 - 100, "rows written before the crash are not sent again"
    done = app.sync_state.get(ORG_A, "7001")
    assert done is not None and done.status == "ok" and done.pending_end is None


def test_a_run_out_of_time_resumes_where_it_stopped(webinars: Webinars, on24: Any, dataverse: Any) -> None:
    w = webinars
    for i in range(120):
        w.register(ORG_A, 7001, f"r{i:03}@a.example")
        w.watch(7001, f"r{i:03}@a.example", live=3)
    app = get_app()
    ticks = iter(range(10_000))  # every look at the clock costs a "second": the budget runs out after page one
    ports = replace(app.metrics_ports(), monotonic=lambda: float(next(ticks)))
    options = MetricsOptions(**{**app.metrics_options().__dict__, "budget_seconds": 2})
    first = pull_metrics(ports, options)
    assert [r.status for r in first.webinars] == ["partial"]
    assert len(dataverse.rows(CHECKINS)) == 100
    run_timer()
    assert len(dataverse.rows(CHECKINS)) == 120


def test_webinars_listed_by_the_admin_are_pulled_too(webinars: Webinars, on24: Any, dataverse: Any) -> None:
    on24.add_event(ON24_CLIENT_ID, 7009, livestart=webinars.live, liveend=webinars.live + timedelta(hours=1))
    webinars.watch(7009, "registered-elsewhere@a.example", live=12)
    body = credentials_body(webinarIds=["7009"])
    assert store_main(http_request("PUT", ORG_A, body)).status_code == 200
    run_timer()
    state = get_app().sync_state.get(ORG_A, "7009")
    assert state is not None and state.status == "ok"
    assert state.counts["pulled"] == 1 and state.counts["unmatched"] == 1, "walk-ins are counted, not dropped"
    assert dataverse.rows(CHECKINS) == []
