"""Many tenants in one run: 50 orgs x 4 webinars on the stand-ins.

Each org has its own ON24 account and four webinars with one registrant each (registered by RegisterAttendee).
One timer run with the default budget finishes all 200 webinars; with a budget that only lets a few
through per run, every webinar is served once before any is served twice (round-robin across runs), so no
org waits behind another. Timings are for the benchmark (``benchmarks/pull_metrics.py --scenario orgs``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from PullMetrics import main as pull_main
from RegisterAttendee import main as register_main
from shared.app import get_app
from shared.crm import checkin_id
from shared.metrics import MetricsOptions, pull_metrics
from StoreCredentials import main as store_main
from tests.builders import CrmOrg, canonical_body
from tests.functions import http_request, service_bus_message

ORGS, WEBINARS = 50, 4
CHECKINS = "msevtmgt_checkins"


def org_id(n: int) -> str:
    return f"{n:08x}-5ca1-4e00-8000-{n:012x}"


@pytest.fixture
def fleet(app_env: dict[str, str], on24: Any, dataverse: Any) -> dict[str, list[tuple[int, str]]]:
    """org id -> [(webinar, registration id)]."""
    live = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    fleet: dict[str, list[tuple[int, str]]] = {}
    for n in range(ORGS):
        org, client = org_id(n), str(6000 + n)
        on24.add_client(client, f"key-{client}", f"Secret-{client}")
        body = {"clientId": client, "accessTokenKey": f"key-{client}", "accessTokenSecret": f"Secret-{client}",
                "dataverseUrl": dataverse.url_for(org)}  # fmt: skip
        assert store_main(http_request("PUT", org, body)).status_code == 200
        fleet[org] = []
        for w in range(WEBINARS):
            webinar = 80_000 + n * 10 + w
            on24.add_event(client, webinar, livestart=live, liveend=live + timedelta(hours=1))
            crm = CrmOrg(dataverse, webinar_id=str(webinar))
            email = f"p{w}@org{n}.example"
            reg = crm.registration(crm.contact("P", f"Org{n}", email))
            message = canonical_body(
                org_id=org,
                registration_id=reg,
                event_id=crm.event_id,
                webinar_id=str(webinar),
                attendee={"email": email, "firstName": "P", "lastName": f"Org{n}"},
            )
            register_main(service_bus_message(message))
            on24.set_attendee(webinar, email, liveminutes=5 + w, lastliveactivity=live + timedelta(minutes=20))
            fleet[org].append((webinar, reg))
    return fleet


@pytest.mark.slow
def test_fifty_orgs_with_four_webinars_each_finish_in_one_run(
    fleet: dict[str, list[tuple[int, str]]], dataverse: Any
) -> None:
    pull_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))
    sync = get_app().sync_state
    for org, webinars in fleet.items():
        for webinar, reg in webinars:
            state = sync.get(org, str(webinar))
            assert state is not None and state.status == "ok", (org, webinar, state)
            assert dataverse.row(CHECKINS, checkin_id(org, reg)) is not None
    assert len(dataverse.rows(CHECKINS)) == ORGS * WEBINARS


@pytest.mark.slow
def test_a_budget_too_small_for_all_serves_every_webinar_once_before_any_twice(
    fleet: dict[str, list[tuple[int, str]]], dataverse: Any
) -> None:
    app = get_app()
    served: Counter[tuple[str, str]] = Counter()
    order: list[tuple[str, str]] = []
    clock = datetime.now(UTC)
    runs = 0
    while len(served) < ORGS * WEBINARS and runs < 40:
        runs += 1
        ticks = iter(range(1_000_000))
        ports = replace(
            app.metrics_ports(),
            clock=lambda at=clock + timedelta(minutes=15 * runs): at,
            monotonic=lambda ticks=ticks: float(next(ticks)),
        )
        # Every look at the clock costs a second: a 60-second budget serves about 25 webinars a run.
        report = pull_metrics(ports, MetricsOptions(**{**app.metrics_options().__dict__, "budget_seconds": 60}))
        assert report.left_for_next_run > 0 or len(served) + len(report.webinars) >= ORGS * WEBINARS
        for result in report.webinars:
            assert result.status in ("ok", "partial"), result  # partial: cut by the budget, resumed first next run
            if result.status == "ok":
                key = (result.org_id, result.webinar_id)
                served[key] += 1
                order.append(key)
    assert len(served) == ORGS * WEBINARS, f"only {len(served)} webinars served in {runs} runs"
    first_repeat = next((i for i, key in enumerate(order) if order.index(key) != i), len(order))
    assert first_repeat >= ORGS * WEBINARS, "a webinar was served twice before every webinar was served once"
    assert runs <= 12, f"{runs} runs for 200 webinars at about 25 a run"
    assert len(dataverse.rows(CHECKINS)) == ORGS * WEBINARS
