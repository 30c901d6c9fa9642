"""A long outage loses nothing and dead-letters nothing: registrations are parked, then re-driven with backoff.

Run on a virtual clock (``App(clock=...)``) through RegisterAttendee.main and RetryParked.main, with Azurite
and the stand-ins: ON24 is down for six hours while 1,000 registrations arrive; Service Bus is simulated by
redelivering a message whose handler raised, dead-lettering it after 10 deliveries.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from RegisterAttendee import main as register_main
from RemoveCredentials import main as remove_main
from RetryParked import main as retry_main
from shared.app import App, get_app, reset_app, set_app
from shared.errors import TransientError
from shared.registration.rules import Backoff
from shared.settings import Settings
from StoreCredentials import main as store_main
from tests.builders import canonical_body
from tests.conftest import ON24_CLIENT_ID, credentials_body
from tests.functions import http_request, service_bus_message

ORG = "6d7e8f90-a1b2-4c3d-8e4f-5a6b7c8d9e0f"
OTHER_ORG = "7e8f90a1-b2c3-4d4e-9f5a-6b7c8d9e0f1a"
WEBINAR = 880301
MAX_DELIVERIES = 10
START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


class VirtualClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, on24: Any, dataverse: Any) -> Any:
    for name, value in {"RETRY_BUDGET_SECONDS": "0", "PARK_AFTER_DELIVERIES": "3", "PARK_BACKOFF_BASE_SECONDS": "60",
                        "PARK_BACKOFF_MAX_SECONDS": "1800"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    on24.add_event(ON24_CLIENT_ID, WEBINAR, title="Outage webinar")
    virtual = VirtualClock()
    set_app(App(Settings.from_environ(), clock=virtual))
    assert store_main(http_request("PUT", ORG, credentials_body())).status_code == 200
    other = credentials_body(dataverseUrl=dataverse.url_for(OTHER_ORG))  # the stand-in's WhoAmI answers ORG
    assert store_main(http_request("PUT", OTHER_ORG, other)).status_code == 200
    on24.reset_log()
    yield virtual
    reset_app()


def deliver(body: Any, enqueued: datetime, **kwargs: Any) -> str:
    """Service Bus: a raise is redelivered at once; 'dead-lettered' after MAX_DELIVERIES."""
    message_id = uuid.uuid4().hex
    for count in range(1, MAX_DELIVERIES + 1):
        try:
            register_main(service_bus_message(body, message_id=message_id, delivery_count=count,
                                              enqueued_time=enqueued, **kwargs))  # fmt: skip
            return "completed"
        except TransientError:
            continue
    return "dead-lettered"


def run_retry_parked() -> None:
    retry_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))


def register(org: str, at: datetime, email: str) -> tuple[str, dict[str, Any]]:
    reg = str(uuid.uuid4())
    body = canonical_body(org_id=org, registration_id=reg, event_id=str(uuid.uuid4()), webinar_id=str(WEBINAR),
                          attendee={"email": email, "firstName": "Out", "lastName": "Age"}, occurred_at=at)  # fmt: skip
    return reg, body


def most_probes_backoff_allows(window: timedelta, backoff: Backoff, period: timedelta) -> int:
    """Probes in ``window`` if every wait were as short as the jitter allows (half a step) and runs every period."""
    probes, elapsed, failures = 0, timedelta(), 1
    while True:
        wait = max(backoff.longest(failures) / 2, period)
        elapsed += wait
        if elapsed > window:
            return probes
        probes, failures = probes + 1, failures + 1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_six_hours_of_on24_outage_lose_nothing_dead_letter_nothing_and_spare_on24(clock: Any, on24: Any) -> None:
    on24.down = 503
    arrivals = [START + timedelta(seconds=21.6 * n) for n in range(1000)]  # 1,000 over six hours
    outcomes: list[str] = []
    registrations: dict[str, str] = {}
    minute = START
    for n, at in enumerate(arrivals):
        while minute <= at:  # RetryParked runs every minute
            clock.now = minute
            run_retry_parked()
            minute += timedelta(minutes=1)
        clock.now = at
        reg, body = register(ORG, at, f"person{n}@outage.example")
        registrations[reg] = f"person{n}@outage.example"
        outcomes.append(deliver(body, at))
    outage_end = START + timedelta(hours=6)
    while minute <= outage_end:
        clock.now = minute
        run_retry_parked()
        minute += timedelta(minutes=1)
    calls_during_outage = on24.count()
    on24.down = None

    parked = get_app().parked
    for _ in range(120):  # after the outage: the next probe gets through, then everything follows
        if not parked.for_org(ORG):
            break
        clock.now = minute
        run_retry_parked()
        minute += timedelta(minutes=1)

    assert outcomes.count("dead-lettered") == 0 and len(outcomes) == 1000
    assert parked.for_org(ORG) == [], "nothing is left parked"
    active = {r["email"] for r in on24.registrants(WEBINAR) if not r["isdeleted"]}
    assert set(registrations.values()) <= active, "all 1,000 are registered"
    assert all(get_app().ledger.get(ORG, reg).state == "registered" for reg in registrations)
    assert not get_app().credentials.get(ORG).parking, "the org's parking ended"
    bound = 3 + most_probes_backoff_allows(timedelta(hours=6), Backoff(60, 1800), timedelta(minutes=1))
    print(f"\nON24 calls during the outage: {calls_during_outage}, backoff allows {bound}")
    assert calls_during_outage <= bound, f"{calls_during_outage} ON24 calls while down; backoff allows {bound}"


def test_an_org_removed_during_an_outage_drops_its_parked_registrations(clock: Any, on24: Any) -> None:
    on24.down = 503
    kept, dropped = [], []
    for n in range(5):
        at = START + timedelta(seconds=n)
        clock.now = at
        reg, body = register(ORG, at, f"kept{n}@outage.example")
        assert deliver(body, at) == "completed"
        kept.append(reg)
        reg, body = register(OTHER_ORG, at, f"dropped{n}@outage.example")
        assert deliver(body, at) == "completed"
        dropped.append(reg)
    parked = get_app().parked
    assert len(parked.for_org(ORG)) == 5 and len(parked.for_org(OTHER_ORG)) == 5
    assert remove_main(http_request("DELETE", OTHER_ORG)).status_code == 200
    on24.down = None
    on24.reset_log()
    clock.now = START + timedelta(hours=1)
    run_retry_parked()
    assert parked.for_org(OTHER_ORG) == [] and parked.for_org(ORG) == []
    for reg in dropped:
        entry = get_app().ledger.get(OTHER_ORG, reg)
        assert entry is not None and entry.last_outcome == "skipped: integration disabled: no ON24 credentials for org"
    assert all(get_app().ledger.get(ORG, reg).state == "registered" for reg in kept)
    assert on24.count("POST") == 5, "only the enabled org's registrations reached ON24"


def test_a_parked_registration_keeps_only_its_newest_change(clock: Any, on24: Any) -> None:
    on24.down = 503
    _, first = register(ORG, START, "first@outage.example")
    assert deliver(first, START) == "completed"
    later = dict(first, action="update", occurredAt=(START + timedelta(minutes=5)).isoformat(),
                 attendee={"email": "second@outage.example", "firstName": "Out", "lastName": "Age"})  # fmt: skip
    clock.now = START + timedelta(minutes=5)
    assert deliver(later, clock.now) == "completed"
    older = dict(first, occurredAt=(START + timedelta(minutes=1)).isoformat())
    assert deliver(older, clock.now) == "completed"
    [message] = get_app().parked.for_org(ORG)
    assert message.message_at == START + timedelta(minutes=5), "the newest change is the one kept"
    on24.down = None
    clock.now = START + timedelta(hours=1)
    run_retry_parked()
    active = {r["email"] for r in on24.registrants(WEBINAR) if not r["isdeleted"]}
    assert "second@outage.example" in active and "first@outage.example" not in active


def test_a_parked_message_that_needs_no_on24_call_does_not_end_the_orgs_parking(clock: Any, on24: Any) -> None:
    first = "00000000-0000-4000-8000-000000000001"  # re-driven first (RowKey order), a duplicate by then
    body = canonical_body(org_id=ORG, registration_id=first, event_id=str(uuid.uuid4()), webinar_id=str(WEBINAR),
                          attendee={"email": "dup@outage.example", "firstName": "D", "lastName": "Up"},
                          occurred_at=START)  # fmt: skip
    assert deliver(body, START) == "completed"  # registered while ON24 is up
    on24.down = 503
    second = "ffffffff-0000-4000-8000-000000000002"
    other = canonical_body(org_id=ORG, registration_id=second, event_id=str(uuid.uuid4()), webinar_id=str(WEBINAR),
                           attendee={"email": "down@outage.example", "firstName": "D", "lastName": "Own"},
                           occurred_at=START)  # fmt: skip
    assert deliver(other, START) == "completed"  # parked on its third delivery: the org's parking begins
    assert deliver(body, START) == "completed"  # the duplicate is parked too, unexamined
    assert get_app().credentials.get(ORG).park_failures == 1
    clock.now = START + timedelta(minutes=5)
    run_retry_parked()
    org = get_app().credentials.get(ORG)
    assert org.parking and org.park_failures == 2, "the duplicate proved nothing; the real probe failed again"
    assert [m.key for m in get_app().parked.for_org(ORG)] == [second]
