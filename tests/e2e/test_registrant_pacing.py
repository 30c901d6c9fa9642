"""ON24's registrant and forget limits, paced per account across instances (issue 22).

Two ``App`` objects sharing one table prefix stand for two instances (each has its own process-local limiter
state); the pacing row in Table Storage (Azurite) is all they share. Time is virtual (the App's clock, which the
pacer reads too): a slot a minute away costs nothing, and the counts are exact. No sleeps: the wait budget is 0,
so a delivery whose slot is not now parks, and the test moves the clock to the slot.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

import shared.app
from RegisterAttendee import main as register_main
from RetryParked import main as retry_main
from shared.app import App, reset_app, set_app
from shared.registration import forget_registration
from shared.registration.lease import SlotLater
from shared.settings import Settings
from StoreCredentials import main as store_main
from tests.builders import canonical_body
from tests.conftest import ON24_CLIENT_ID, credentials_body
from tests.functions import http_request, service_bus_message

ORG = "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e"
WEBINAR = 880501
HOLD = timedelta(seconds=2)  # a block's hold: the window / 30


class FrozenClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def instances(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, on24: Any) -> Any:
    monkeypatch.setenv("ON24_REGISTRANT_CALLS_PER_MINUTE", "3")
    monkeypatch.setenv("ON24_FORGET_CALLS_PER_MINUTE", "1")
    monkeypatch.setenv("REGISTRATION_PACE_WAIT_SECONDS", "0")
    on24.add_event(ON24_CLIENT_ID, WEBINAR, title="Paced webinar")
    clock = FrozenClock()
    first, second = App(Settings.from_environ(), clock=clock), App(Settings.from_environ(), clock=clock)
    set_app(first)
    assert store_main(http_request("PUT", ORG, credentials_body())).status_code == 200
    on24.reset_log()
    yield clock, first, second
    set_app(second)  # closes the first
    reset_app()


def use(app: App) -> None:
    """Make ``app`` the process's App without closing the other instance (``set_app`` would close it)."""
    shared.app._app = app


PEOPLE = [
    ("joerg.mueller@firma.de", "Jörg", "Müller"),
    ("asa.odegard@firma.no", "Åsa", "Ødegård"),
    ("ivan.petrov@firma.ru", "Иван", "Петров"),
    ("aino.virtanen@yritys.fi", "Aino", "Virtanen"),
    ("soren.kjaer@firma.dk", "Søren", "Kjær"),
]


def register(app: App, reg: str, person: tuple[str, str, str], at: datetime) -> None:
    """One Service Bus delivery of a register to ``app``'s instance; it must complete (never raise)."""
    use(app)
    email, first, last = person
    body = canonical_body(org_id=ORG, registration_id=reg, event_id="0f1e2d3c-4b5a-4697-8877-665544332211",
                          action="register", webinar_id=str(WEBINAR),
                          attendee={"email": email, "firstName": first, "lastName": last}, occurred_at=at)  # fmt: skip
    register_main(service_bus_message(body, message_id=uuid.uuid4().hex, delivery_count=1, enqueued_time=at))


def registrant_writes(on24: Any) -> int:
    return int(on24.count("POST", "/registrant") + on24.count("PATCH", "/registrant"))


def forgets(on24: Any) -> int:
    return int(on24.count("POST", "/forget"))


def held(on24: Any) -> set[str]:
    return {r["email"] for r in on24.registrants(WEBINAR) if not r["isdeleted"]}


def test_registrant_calls_are_paced_across_two_instances_and_a_late_slot_parks_the_message_until_it(
    instances: Any, on24: Any
) -> None:
    clock, first, second = instances
    regs = [str(uuid.uuid4()) for _ in PEOPLE]
    start = clock.now
    register(first, regs[0], PEOPLE[0], start)
    register(first, regs[1], PEOPLE[1], start)
    register(second, regs[2], PEOPLE[2], start)
    assert registrant_writes(on24) == 3, "under the limit nothing waits: three calls at once"
    assert list(first.parked.iter_all()) == []

    register(second, regs[3], PEOPLE[3], start)  # the instance made one call itself: the account made three
    register(first, regs[4], PEOPLE[4], start)
    assert registrant_writes(on24) == 3, "no fourth call within the minute, whichever instance delivers"
    parked = sorted(first.parked.iter_all(), key=lambda m: m.key)
    assert sorted(m.key for m in parked) == sorted(regs[3:])
    slot = start + HOLD + timedelta(seconds=60)
    assert all(m.next_attempt_at == slot for m in parked), "parked alone, due at the account's next slot"
    org = first.credentials.get(ORG)
    assert org is not None and not org.parking, "the org goes on: only these messages wait"

    use(first)
    retry_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))  # before the slot: nothing due
    assert registrant_writes(on24) == 3
    clock.now = slot
    use(second)
    retry_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))
    assert registrant_writes(on24) == 5
    assert held(on24) == {email for email, _, _ in PEOPLE}
    assert list(first.parked.iter_all()) == []


def test_forget_calls_are_paced_on_their_own_limit(instances: Any, on24: Any) -> None:
    clock, first, second = instances
    regs = [str(uuid.uuid4()) for _ in range(2)]
    register(first, regs[0], PEOPLE[0], clock.now)
    register(first, regs[1], PEOPLE[1], clock.now)
    forgets_before = forgets(on24)
    assert forgets_before == 0

    done = forget_registration(ORG, regs[0], first.registration_ports(), requested_at=clock.now, reason="erasure")
    assert done.status == "forgotten"
    with pytest.raises(SlotLater) as later:  # one forget a minute: the second instance's forget must wait
        forget_registration(ORG, regs[1], second.registration_ports(), requested_at=clock.now, reason="erasure")
    assert later.value.until == clock.now + HOLD + timedelta(seconds=60)
    assert forgets(on24) == 1, "no second forget call within the minute"
    assert PEOPLE[1][0] in held(on24)

    clock.now = later.value.until
    done = forget_registration(ORG, regs[1], second.registration_ports(), requested_at=clock.now, reason="erasure")
    assert done.status == "forgotten"
    assert forgets(on24) == 2
    assert held(on24) == set()


@pytest.fixture
def waiting(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, on24: Any) -> Any:
    """One instance whose waits for a slot go through its injected sleeper, which moves the virtual clock."""
    monkeypatch.setenv("ON24_REGISTRANT_CALLS_PER_MINUTE", "3")
    monkeypatch.setenv("ON24_FORGET_CALLS_PER_MINUTE", "1")
    monkeypatch.setenv("REGISTRATION_PACE_WAIT_SECONDS", "0")
    monkeypatch.setenv("RETRY_PARKED_BUDGET_SECONDS", "30")
    on24.add_event(ON24_CLIENT_ID, WEBINAR, title="Paced webinar")
    clock, slept = FrozenClock(), []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += timedelta(seconds=seconds)

    app = App(Settings.from_environ(), clock=clock, sleep=sleep)
    set_app(app)
    assert store_main(http_request("PUT", ORG, credentials_body())).status_code == 200
    on24.reset_log()
    yield clock, app, slept
    reset_app()


def test_a_retry_parked_run_waits_for_the_accounts_next_slots_within_its_budget_and_parks_what_lies_beyond(
    waiting: Any, on24: Any
) -> None:
    clock, app, slept = waiting
    start = clock.now
    people = [*PEOPLE, ("liisa.makinen@yritys.fi", "Liisa", "Mäkinen"), ("olga.smirnova@firma.ru", "Ольга", "Смирнова")]
    regs = [str(uuid.uuid4()) for _ in people]
    for n in range(3):  # three calls ten seconds apart: the account's slots free at +62, +72 and +82
        clock.now = start + timedelta(seconds=10 * n)
        register(app, regs[n], people[n], clock.now)
    clock.now = start + timedelta(seconds=25)
    for n in range(3, 7):
        register(app, regs[n], people[n], clock.now)
    assert registrant_writes(on24) == 3 and slept == [], "a delivery's budget is 0 here: it parks, never waits"
    assert len(list(app.parked.iter_all())) == 4

    clock.now = start + HOLD + timedelta(seconds=60)
    retry_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))

    assert registrant_writes(on24) == 6, "one run re-drove at the slots +62, +72 and +82, not one per run"
    assert sorted(slept) == [10.0, 10.0], "the run waited for the two later slots, through the injected sleeper"
    later = list(app.parked.iter_all())
    assert len(later) == 1, "the slot at +124 lies beyond the run's 30 s: that message waits for the next run"
    assert later[0].next_attempt_at == start + 2 * (HOLD + timedelta(seconds=60))
    org = app.credentials.get(ORG)
    assert org is not None and not org.parking

    clock.now = later[0].next_attempt_at
    retry_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))
    assert registrant_writes(on24) == 7
    assert held(on24) == {email for email, _, _ in people}
    assert list(app.parked.iter_all()) == []


def test_re_drives_already_under_way_when_the_limit_is_met_leave_the_parking_in_the_same_run(
    waiting: Any, on24: Any
) -> None:
    clock, app, slept = waiting
    start = clock.now
    org = app.credentials.get(ORG)
    assert org is not None
    forgets_elsewhere = app.registrant_pacer(org, "forget")  # the account's forget slots, as another instance uses them

    def at(seconds: int) -> datetime:
        clock.now = start + timedelta(seconds=seconds)
        return clock.now

    assert forgets_elsewhere.acquire_within(0) == 0.0  # the minute's one forget, at +0
    regs = [str(uuid.uuid4()) for _ in range(6)]
    register(app, regs[0], PEOPLE[0], at(1))
    use(app)
    forget = canonical_body(org_id=ORG, registration_id=regs[0], event_id=None, action="forget", occurred_at=at(2))
    register_main(service_bus_message(forget, message_id=uuid.uuid4().hex, delivery_count=1, enqueued_time=at(2)))
    register(app, regs[1], PEOPLE[1], at(10))
    register(app, regs[2], PEOPLE[2], at(11))  # the minute's three registrant calls: +1, +10, +11
    for n, person in enumerate([*PEOPLE[3:], ("olga.smirnova@firma.ru", "Ольга", "Смирнова")], start=3):
        register(app, regs[n], person, at(12))
    due = sorted(app.parked.iter_all(), key=lambda m: m.next_attempt_at)
    assert next(m.key for m in due) == regs[0], "the forget is due first (+62), the three registers at +63"
    assert registrant_writes(on24) == 3 and forgets(on24) == 0

    at(63)
    assert forgets_elsewhere.acquire_within(0) == 0.0  # another instance takes the forget slot of +62 at +63
    retry_main(TimerRequest(past_due=False, schedule_status={}, schedule={}))

    assert registrant_writes(on24) == 6, "the three registers got their slots at +63, +72 and +73"
    assert forgets(on24) == 0, "the forget's next slot (+125) lies past the run's 30 s"
    left = list(app.parked.iter_all())
    assert [m.key for m in left] == [regs[0]], "the registers re-driven while the forget met the limit are done"
    assert left[0].next_attempt_at == start + timedelta(seconds=63) + HOLD + timedelta(seconds=60)
    assert sorted(slept) == [1.0, 9.0]
