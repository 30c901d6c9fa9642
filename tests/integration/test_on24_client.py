"""The production ON24 client against the strict ON24 stand-in, over real sockets on 127.0.0.1.

``httpx.MockTransport`` is used only for shapes the stand-in cannot produce (a server that repeats a page,
the regional default URL).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pydantic
import pytest

from sandbox.on24 import MSG_THROTTLED, PACIFIC, On24StandIn
from shared.errors import (
    CredentialsRejectedError,
    IntegrationError,
    InvalidDataError,
    NotFoundError,
    ThrottledError,
    TransientError,
)
from shared.on24 import Attendee, On24Client, On24Credentials, RegistrantFields
from shared.on24._models import attendees_of
from shared.ratelimit import RateLimiter
from shared.retry import RetryPolicy

CLIENT_ID = "22334"
KEY = "tokenkey-" + secrets.token_hex(8)
SECRET = "tokensecret-" + secrets.token_hex(12)
FAST = RetryPolicy(budget=1.0, base_delay=0.01, max_delay=0.05, max_attempts=4)
_event_ids = itertools.count(4_100_001)


@pytest.fixture(scope="module")
def on24() -> Iterator[On24StandIn]:
    server = On24StandIn()
    server.start()
    server.add_client(CLIENT_ID, KEY, SECRET)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _reset(on24: On24StandIn) -> Iterator[None]:
    yield
    on24.clear_faults()
    on24.clear_limits()
    on24.paging = "zero"
    on24.latency = 0.0
    on24.reactivate(CLIENT_ID)


@pytest.fixture
def credentials() -> On24Credentials:
    return On24Credentials(client_id=CLIENT_ID, access_token_key=KEY, access_token_secret=SECRET)


@pytest.fixture
def client(on24: On24StandIn, credentials: On24Credentials) -> Iterator[On24Client]:
    with On24Client(credentials, base_url=on24.url, retry=FAST, timeout=2.0) as on24_client:
        yield on24_client


@pytest.fixture
def event_id(on24: On24StandIn) -> int:
    eid = next(_event_ids)
    on24.add_event(CLIENT_ID, eid, title="Quarterly product update")
    return eid


def _person(email: str = "ada@example.com", **fields: str) -> RegistrantFields:
    defaults = {"firstname": "Ada", "lastname": "Lovelace", "company": "Analytical Engines", "exteventusercd": "crm-1"}
    return RegistrantFields(email=email, **{**defaults, **fields})


def _last_form(on24: On24StandIn) -> list[tuple[str, str]]:
    request = on24.requests[-1]
    return parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)


# ---- registration ------------------------------------------------------------------------------------------------
def test_create_update_soft_delete_round_trip(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    created = client.create_registrant(event_id, _person(exteventusercd="crm-reg-42"))

    stored = on24.registrant(event_id, "ada@example.com")
    assert stored is not None
    assert created.eventuserid == str(stored["eventuserid"])  # ON24 answers a number; the model keeps a string
    assert created.eventid == event_id
    assert (stored["firstname"], stored["lastname"], stored["exteventusercd"]) == ("Ada", "Lovelace", "crm-reg-42")
    assert stored["isdeleted"] is False

    updated = client.update_registrant(event_id, RegistrantFields(email="ada@example.com", company="Babbage & Co"))
    assert updated.eventuserid == created.eventuserid
    stored = on24.registrant(event_id, "ada@example.com")
    assert stored is not None
    assert stored["company"] == "Babbage & Co"
    assert stored["firstname"] == "Ada"  # fields not sent stay as they were

    client.delete_registrant(event_id, "ada@example.com")
    assert on24.registrants(event_id)[0]["isdeleted"] is True

    # Registering again after a cancellation undeletes the same ON24 registrant (isDeleted=N on create).
    again = client.create_registrant(event_id, _person(exteventusercd="crm-reg-42"))
    assert again.eventuserid == created.eventuserid
    assert len(on24.registrants(event_id)) == 1
    assert on24.registrants(event_id)[0]["isdeleted"] is False


def test_repeat_create_is_an_update_with_the_same_id(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    first = client.create_registrant(event_id, _person())
    second = client.create_registrant(event_id, _person(lastname="Byron"))
    assert second.eventuserid == first.eventuserid
    assert [r["lastname"] for r in on24.registrants(event_id)] == ["Byron"]


def test_delete_is_idempotent(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    client.delete_registrant(event_id, "never-registered@example.com")  # ON24's 412 means "already gone"
    assert on24.count("POST", f"/event/{event_id}/registrant") == 1
    assert on24.registrants(event_id) == []

    client.create_registrant(event_id, _person())
    client.delete_registrant(event_id, "ada@example.com")
    client.delete_registrant(event_id, "ada@example.com")
    assert [r["isdeleted"] for r in on24.registrants(event_id)] == [True]


def test_update_of_unknown_email_is_not_found(client: On24Client, event_id: int) -> None:
    with pytest.raises(NotFoundError, match="email provided was not found"):
        client.update_registrant(event_id, _person("nobody@example.com"))


def test_unknown_event_is_not_found(client: On24Client) -> None:
    with pytest.raises(NotFoundError, match=r"create_registrant \(event 999999\): ON24 answered 404"):
        client.create_registrant(999999, _person())
    with pytest.raises(NotFoundError):
        client.get_event(999999)


def test_form_body_is_lowercase_cleaned_and_truncated(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    client.create_registrant(
        event_id,
        _person(
            "Grace.Hopper@Example.com",
            firstname="G" * 60,
            company="Navy\x00 Research\x07 Lab",
            notes="line one\r\nline two",
            city="C" * 150,
            workphone="123",  # too short for ON24: left out instead of failing the registration
        ),
    )
    request = on24.requests[-1]
    assert (
        request.header(
            "Content-Type",
        )
        == "application/x-www-form-urlencoded"
    )
    names = [name for name, _ in _last_form(on24)]
    assert all(name == name.lower() for name in names if name != "isDeleted")  # isDeleted: DOC-reg's spelling
    assert "workphone" not in names
    stored = on24.registrant(event_id, "grace.hopper@example.com")
    assert stored is not None
    assert stored["email"] == "Grace.Hopper@Example.com"
    assert stored["firstname"] == "G" * 50
    assert stored["city"] == "C" * 100
    assert stored["company"] == "Navy Research Lab"
    assert stored["notes"] == "line one line two"


def test_overlong_email_is_refused_before_io(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    before = len(on24.requests)
    with pytest.raises(InvalidDataError, match="100-character"):
        client.create_registrant(event_id, _person("a" * 95 + "@example.com"))
    assert len(on24.requests) == before


def test_on24_validation_refusal_is_a_validation_error(client: On24Client, event_id: int) -> None:
    with pytest.raises(InvalidDataError, match="400: Email is not valid"):
        client.create_registrant(event_id, _person("not-an-email"))


def test_an_address_in_on24s_error_text_never_reaches_the_error(
    client: On24Client, on24: On24StandIn, event_id: int
) -> None:
    on24.fail_next(1, status=400, payload={"message": "Registrant bob.smith@fabrikam.example is blocked."})
    with pytest.raises(InvalidDataError) as caught:
        client.create_registrant(event_id, _person("bob.smith@fabrikam.example"))
    assert "bob.smith@fabrikam.example" not in str(caught.value) and "Registrant <email> is blocked" in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("create_registrant", ("12a", None)),
        ("create_registrant", ("", None)),
        ("create_registrant", (0, None)),
        ("update_registrant", ("-5", None)),
        ("delete_registrant", ("1 2", "ada@example.com")),
        ("delete_registrant", ("NEXT", "ada@example.com")),
        ("delete_registrant", ("123", "   ")),
        ("get_event", ("12.5",)),
        ("iter_attendee_pages", ("abc",)),
    ],
)
def test_bad_arguments_raise_value_error_before_io(
    client: On24Client, on24: On24StandIn, call: str, args: tuple[object, ...]
) -> None:
    if len(args) == 2 and args[1] is None:
        args = (args[0], _person())
    before = len(on24.requests)
    with pytest.raises(ValueError):
        getattr(client, call)(*args)
    assert len(on24.requests) == before


def test_empty_email_and_naive_dates_raise_before_io(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    before = len(on24.requests)
    with pytest.raises(ValueError, match="email"):
        client.create_registrant(event_id, RegistrantFields(email=" \t"))
    with pytest.raises(ValueError, match="timezone-aware"):
        client.iter_attendee_pages(event_id, start=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="before start"):
        client.iter_attendee_pages(
            event_id, start=datetime(2024, 2, 1, tzinfo=UTC), end=datetime(2024, 1, 1, tzinfo=UTC)
        )
    with pytest.raises(ValueError, match="page_size"):
        client.iter_attendee_pages(event_id, page_size=101)
    assert len(on24.requests) == before


# ---- authentication --------------------------------------------------------------------------------------------
def test_check_credentials_accepts_good_tokens(client: On24Client, on24: On24StandIn) -> None:
    client.check_credentials()
    request = on24.requests[-1]
    assert request.path == f"/v2/client/{CLIENT_ID}/event"
    assert request.header("accessTokenKey") == KEY
    assert request.header("accessTokenSecret") == SECRET


def test_wrong_tokens_are_rejected_without_retry(on24: On24StandIn) -> None:
    wrong = On24Credentials(client_id=CLIENT_ID, access_token_key=KEY, access_token_secret="wrong-" + SECRET)
    before = on24.count("GET")
    with On24Client(wrong, base_url=on24.url, retry=FAST) as bad, pytest.raises(CredentialsRejectedError) as caught:
        bad.check_credentials()
    assert "401" in str(caught.value)
    assert "wrong or invalid" in str(caught.value)
    assert on24.count("GET") == before + 1  # a 401 is never retried


def test_deactivated_tokens_are_rejected(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    on24.deactivate(CLIENT_ID)
    with pytest.raises(CredentialsRejectedError, match="deactivated"):
        client.create_registrant(event_id, _person())


def test_unknown_client_id_fails_the_credentials_check(on24: On24StandIn) -> None:
    other = On24Credentials(client_id="99999", access_token_key=KEY, access_token_secret=SECRET)
    with On24Client(other, base_url=on24.url, retry=FAST) as bad, pytest.raises(CredentialsRejectedError):
        bad.check_credentials()


def test_non_throttle_403_is_credentials_rejected(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    on24.fail_next(1, status=403, payload={"message": f"Client contract with id {CLIENT_ID} is expired."})
    with pytest.raises(CredentialsRejectedError, match="expired"):
        client.get_event(event_id)
    assert on24.count("GET", f"/event/{event_id}") == 1


# ---- throttling and transient faults ----------------------------------------------------------------------------
def test_403_throttle_is_retried_then_succeeds(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    on24.fail_next(1, status=403, payload={"message": MSG_THROTTLED}, path_contains="/registrant")
    registrant = client.create_registrant(event_id, _person())
    assert registrant.eventuserid
    assert on24.count("POST", f"/event/{event_id}/registrant") == 2
    assert len(on24.registrants(event_id)) == 1


def test_sliding_window_403_limit_is_waited_out(on24: On24StandIn, credentials: On24Credentials, event_id: int) -> None:
    on24.set_limit("event", 2, style="403", window_seconds=0.3)
    patient = RetryPolicy(budget=3.0, base_delay=0.1, max_delay=0.2, max_attempts=10)
    with On24Client(credentials, base_url=on24.url, retry=patient) as on24_client:
        titles = [on24_client.get_event(event_id).title for _ in range(4)]
    assert titles == ["Quarterly product update"] * 4
    assert on24.count("GET", f"/event/{event_id}") > 4  # some calls were throttled and repeated


def test_persistent_429_raises_throttled_after_the_budget(
    on24: On24StandIn, credentials: On24Credentials, event_id: int
) -> None:
    on24.set_limit("registrant", 0, style="429", retry_after=0.1)
    small = RetryPolicy(budget=0.35, base_delay=0.01, max_delay=0.02, max_attempts=20)
    started = time.monotonic()
    with (
        On24Client(credentials, base_url=on24.url, retry=small) as on24_client,
        pytest.raises(ThrottledError) as caught,
    ):
        on24_client.create_registrant(event_id, _person())
    elapsed = time.monotonic() - started
    assert caught.value.retry_after == pytest.approx(0.1)
    assert "429" in str(caught.value)
    assert 0.25 <= elapsed < 1.5  # Retry-After (0.1 s) was honoured until the 0.35 s budget ran out
    assert on24.count("POST", f"/event/{event_id}/registrant") == 4
    assert on24.registrants(event_id) == []


def test_retry_after_header_is_honoured(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    on24.fail_next(1, status=429, headers={"Retry-After": "0.4"}, payload={"message": MSG_THROTTLED})
    started = time.monotonic()
    client.get_event(event_id)
    assert time.monotonic() - started >= 0.4


def test_5xx_then_success(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    on24.fail_next(2, status=503)
    event = client.get_event(event_id)
    assert event.eventid == event_id
    assert on24.count("GET", f"/event/{event_id}") == 3


def test_persistent_5xx_is_transient(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    on24.fail_next(10, status=500, payload={"message": "Internal error"})
    with pytest.raises(TransientError, match=rf"get_event \(event {event_id}\): ON24 answered 500"):
        client.get_event(event_id)
    assert on24.count("GET", f"/event/{event_id}") == FAST.max_attempts


def test_dropped_connection_is_transient(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    on24.fail_next(10, drop=True, status=0)
    with pytest.raises(TransientError, match="request failed") as caught:
        client.create_registrant(event_id, _person())
    assert not isinstance(caught.value, ThrottledError)
    assert isinstance(caught.value.__cause__, httpx.TransportError)


def test_dropped_connection_then_success(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    on24.fail_next(1, drop=True, status=0)
    assert client.create_registrant(event_id, _person()).eventuserid
    assert len(on24.registrants(event_id)) == 1


def test_timeout_is_transient(on24: On24StandIn, credentials: On24Credentials, event_id: int) -> None:
    on24.fail_next(3, status=0, delay=0.6)
    once = RetryPolicy(budget=0.5, base_delay=0.01, max_delay=0.01, max_attempts=2)
    started = time.monotonic()
    with (
        On24Client(credentials, base_url=on24.url, timeout=0.2, retry=once) as slow_client,
        pytest.raises(TransientError, match="timed out"),
    ):
        slow_client.get_event(event_id)
    assert time.monotonic() - started < 1.5


# ---- events ----------------------------------------------------------------------------------------------------
def test_get_event_metadata(client: On24Client, on24: On24StandIn) -> None:
    eid = next(_event_ids)
    live = datetime(2030, 3, 10, 10, 0, tzinfo=PACIFIC)
    on24.add_event(CLIENT_ID, eid, title="Spring launch", livestart=live)
    event = client.get_event(eid)
    assert event.eventid == eid
    assert event.title == "Spring launch"
    assert event.livestart == live
    assert event.livestart is not None and event.livestart.utcoffset() == timedelta(hours=-7)
    assert event.liveend == live + timedelta(hours=1)
    assert event.goodafter == live
    assert event.isactive is True
    assert event.audienceurl is not None and event.audienceurl.startswith(f"https://event.on24.com/wcc/r/{eid}/")


def test_event_title_prefers_eventname(client: On24Client, on24: On24StandIn) -> None:
    eid = next(_event_ids)
    on24.add_event(CLIENT_ID, eid, title="Long description", eventname="Short name")
    assert client.get_event(eid).title == "Short name"


# ---- attendees ---------------------------------------------------------------------------------------------------
def _attendees(client: On24Client, event_id: int, **options: Any) -> list[Attendee]:
    """Every attendee of every page, in order."""
    pages = client.iter_attendee_pages(event_id, **options)
    return [attendee for _, rows, _ in pages for attendee in attendees_of(rows)]


def _fill(on24: On24StandIn, event_id: int, count: int) -> None:
    base = datetime(2024, 5, 1, 10, tzinfo=PACIFIC)
    for n in range(count):
        on24.set_attendee(event_id, f"viewer{n:04d}@example.com", liveminutes=n % 60, lastliveactivity=base)


@pytest.mark.parametrize("paging", ["zero", "one"])
def test_attendee_paging_across_pages(client: On24Client, on24: On24StandIn, event_id: int, paging: str) -> None:
    on24.paging = paging  # type: ignore[assignment]
    _fill(on24, event_id, 250)
    rows = _attendees(client, event_id, page_size=100)
    assert len(rows) == 250
    assert len({row.email for row in rows}) == 250
    assert on24.count("GET", f"/event/{event_id}/attendee") == 3
    offsets = [r.query["pageOffset"] for r in on24.requests if r.path.endswith(f"{event_id}/attendee")]
    assert offsets == ["0", "1", "2"]


def test_attendee_paging_exact_multiple_and_empty(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    assert _attendees(client, event_id) == []
    assert on24.count("GET", f"/event/{event_id}/attendee") == 1
    on24.paging = "one"
    _fill(on24, event_id, 20)
    assert len(_attendees(client, event_id, page_size=10)) == 20
    assert on24.count("GET", f"/event/{event_id}/attendee") == 3  # 1 + two pages, no extra call


def test_server_that_ignores_paging_gives_one_page(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    on24.paging = "ignore"
    _fill(on24, event_id, 130)
    assert len(_attendees(client, event_id, page_size=50)) == 130
    assert on24.count("GET", f"/event/{event_id}/attendee") == 1


def test_attendees_stream_lazily(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    _fill(on24, event_id, 30)
    iterator = client.iter_attendee_pages(event_id, page_size=10)
    assert on24.count("GET", f"/event/{event_id}/attendee") == 0
    first = next(iterator)[1][0]
    assert first["email"] == "viewer0000@example.com"
    assert on24.count("GET", f"/event/{event_id}/attendee") == 1


def test_attendee_date_filter_and_tolerant_parsing(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    early = datetime(2024, 5, 1, 9, 30, tzinfo=PACIFIC)
    late = datetime(2024, 5, 3, 9, 30, tzinfo=PACIFIC)
    on24.set_attendee(
        event_id,
        "early@example.com",
        liveminutes="42",
        archiveminutes=None,
        engagementscore="7.5",
        askedquestions="2",
        answeredpolls="n/a",
        firstliveactivity=early - timedelta(minutes=42),
        lastliveactivity=early,
    )
    on24.set_attendee(event_id, "late@example.com", liveminutes=5, lastliveactivity=late)
    rows = _attendees(
        client, event_id, start=datetime(2024, 5, 1, tzinfo=UTC), end=datetime(2024, 5, 2, 12, 0, 0, 500, tzinfo=UTC)
    )
    assert [row.email for row in rows] == ["early@example.com"]
    row = rows[0]
    assert (row.liveminutes, row.archiveminutes, row.askedquestions, row.answeredpolls) == (42, None, 2, None)
    assert row.engagementscore == 7.5
    assert row.lastliveactivity == early
    assert row.lastliveactivity is not None and row.lastliveactivity.tzinfo is not None
    assert row.exteventusercd is None
    query = on24.requests[-1].query
    assert query["startDate"] == "2024-05-01T00:00:00+00:00"
    assert query["endDate"] == "2024-05-02T12:00:01+00:00"  # rounded up to keep the last fraction of a second


def test_attendee_model_is_tolerant() -> None:
    row = Attendee.model_validate(
        {
            "EMAIL": "x@example.com",
            "eventuserid": 123,
            "liveminutes": 3.6,
            "engagementscore": "bad",
            "firstliveactivity": "2024-05-01T10:00:00.000-0700",
            "lastliveactivity": "2024-05-01T10:05:00",
            "questions": [{"q": "?"}],
        }
    )
    assert (row.email, row.eventuserid, row.liveminutes, row.engagementscore) == ("x@example.com", "123", 4, None)
    assert row.firstliveactivity == datetime(2024, 5, 1, 17, 0, tzinfo=UTC)
    assert row.lastliveactivity == datetime(2024, 5, 1, 10, 5, tzinfo=PACIFIC)  # no offset: Pacific, like ON24


def test_repeated_page_stops_paging(credentials: On24Credentials) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:  # ignores pageOffset but claims 5 pages
        calls.append(request.url.params["pageOffset"])
        rows = [{"eventuserid": n, "email": f"u{n}@example.com"} for n in range(3)]
        return httpx.Response(200, json={"pagecount": 5, "currentpage": 0, "attendees": rows})

    with On24Client(credentials, transport=httpx.MockTransport(handler), retry=FAST) as mocked:
        rows = _attendees(mocked, 1234)
    assert len(rows) == 3
    assert calls == ["0", "1"]


def test_deleted_registrants_are_not_listed_as_attendees(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    _fill(on24, event_id, 3)
    client.delete_registrant(event_id, "viewer0001@example.com")
    assert [row.email for row in _attendees(client, event_id)] == [
        "viewer0000@example.com",
        "viewer0002@example.com",
    ]


def test_run_webinar_is_deterministic_with_no_shows(client: On24Client, on24: On24StandIn, event_id: int) -> None:
    for n in range(40):
        client.create_registrant(event_id, _person(f"p{n}@example.com", exteventusercd=f"reg-{n}"))
    runs = []
    for _ in range(2):
        response = httpx.post(f"{on24.url}/sandbox/events/{event_id}/run", json={"seed": 7})
        assert response.status_code == 200
        summary = response.json()
        rows = _attendees(client, event_id, end=datetime.now(UTC))  # all activity lies in the past
        runs.append([(r.exteventusercd, r.liveminutes, r.archiveminutes, r.askedquestions) for r in rows])
        assert summary["attendees"] == len(rows)
        assert 0 < summary["noshows"] < 40
        assert all(r.engagementscore is not None and 0 <= r.engagementscore <= 10 for r in rows)
        assert all((r.liveminutes or 0) + (r.archiveminutes or 0) > 0 for r in rows)
        live = [r.lastliveactivity for r in rows if r.lastliveactivity is not None]
        assert live and all(t.utcoffset() in (timedelta(hours=-7), timedelta(hours=-8)) for t in live)
    assert runs[0] == runs[1]  # the same seed and registrants give the same webinar
    other = on24.run_webinar(event_id, seed=8)
    assert [(r["exteventusercd"], r.get("liveminutes")) for r in on24.attendees(event_id)] != [
        (ext, minutes) for ext, minutes, _, _ in runs[0]
    ] or other["noshows"] != summary["noshows"]


# ---- rate limiter -------------------------------------------------------------------------------------------------
class _FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_limiter_with_fake_clock() -> None:
    fake = _FakeTime()
    limiter = RateLimiter(3, 60.0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        assert limiter.acquire() == 0.0
        fake.now += 1.0
    assert fake.sleeps == []
    assert limiter.acquire() == pytest.approx(57.0)  # the first call was 60 s before this one may start
    assert fake.sleeps == [pytest.approx(57.0)]
    fake.now += 100.0
    assert limiter.acquire() == 0.0
    with pytest.raises(ValueError):
        RateLimiter(0, 60.0)


def test_rate_limiter_is_thread_safe() -> None:
    fake = _FakeTime()
    lock = threading.Lock()
    waits: list[float] = []
    limiter = RateLimiter(5, 10.0, clock=fake.clock, sleep=lambda s: None)  # time stands still: waits stack up

    def worker() -> None:
        wait = limiter.acquire()
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == [0.0] * 5 + [10.0] * 5 + [20.0] * 5 + [30.0] * 5


def test_attendee_calls_go_through_the_rate_limiter(
    on24: On24StandIn, credentials: On24Credentials, event_id: int
) -> None:
    fake = _FakeTime()
    limiter = RateLimiter(2, 60.0, clock=fake.clock, sleep=fake.sleep)
    _fill(on24, event_id, 5)
    with On24Client(credentials, base_url=on24.url, retry=FAST, attendee_rate_limiter=limiter) as limited:
        assert len(_attendees(limited, event_id, page_size=1)) == 5
        limited.get_event(event_id)  # other calls are not paced by the attendee limiter
    assert fake.sleeps == [pytest.approx(60.0)] * 2  # 5 pages at 2/min: t0, t0, t0+60, t0+60, t0+120


# ---- secrets -------------------------------------------------------------------------------------------------------
def test_secrets_never_appear_in_errors_or_logs(
    on24: On24StandIn, credentials: On24Credentials, event_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts = [repr(credentials), str(credentials), str(credentials.model_dump())]
    with On24Client(credentials, base_url=on24.url, retry=FAST, timeout=0.2) as on24_client:
        texts.append(repr(on24_client))
        scenarios: list[Callable[[], None]] = [
            lambda: on24.fail_next(
                1, status=401, payload={"message": "AccessTokenKey and AccessTokenSecret are wrong."}
            ),
            lambda: on24.fail_next(10, status=429),
            lambda: on24.fail_next(10, status=502),
            lambda: on24.fail_next(10, drop=True, status=0),
            lambda: on24.fail_next(10, status=0, delay=0.4),
            lambda: on24.fail_next(1, status=400, payload={"message": "Bad data."}),
        ]
        for arrange in scenarios:
            arrange()
            with pytest.raises(IntegrationError) as caught:  # any of ours: its text is what matters
                on24_client.create_registrant(event_id, _person())
            texts += [str(caught.value), repr(caught.value)]
            on24.clear_faults()
        on24_client.create_registrant(event_id, _person())
        _attendees(on24_client, event_id)
    with pytest.raises(pydantic.ValidationError) as bad_token:
        On24Credentials(client_id=CLIENT_ID, access_token_key=KEY + " x", access_token_secret=SECRET + "\n")
    texts.append(str(bad_token.value))
    texts.append(caplog.text)
    assert "ON24 create_registrant" in caplog.text  # the log lines exist...
    for text in texts:
        assert KEY not in text  # ...but never with a token
        assert SECRET not in text


def test_credentials_validation() -> None:
    with pytest.raises(pydantic.ValidationError, match="numeric"):
        On24Credentials(client_id="abc", access_token_key=KEY, access_token_secret=SECRET)
    eu = On24Credentials(client_id=12345, access_token_key=KEY, access_token_secret=SECRET, region="EU")
    assert (eu.client_id, eu.region) == ("12345", "eu")


def test_regional_default_url(credentials: On24Credentials) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url.copy_with(query=None)))
        return httpx.Response(200, json={"eventid": 77})

    eu = credentials.model_copy(update={"region": "eu"})
    for creds in (credentials, eu):
        with On24Client(creds, transport=httpx.MockTransport(handler)) as regional:
            regional.get_event(77)
    assert seen == [
        f"https://api.on24.com/v2/client/{CLIENT_ID}/event/77",
        f"https://api.eu.on24.com/v2/client/{CLIENT_ID}/event/77",
    ]


def test_shared_http_client_is_not_closed(on24: On24StandIn, credentials: On24Credentials, event_id: int) -> None:
    with httpx.Client() as shared:
        for _ in range(2):
            with On24Client(credentials, base_url=on24.url, http_client=shared, retry=FAST) as pooled:
                assert pooled.get_event(event_id).eventid == event_id
        assert not shared.is_closed


# ---- stand-in strictness ----------------------------------------------------------------------------------------
def test_stand_in_is_strict(on24: On24StandIn, event_id: int) -> None:
    base = f"{on24.url}/v2/client/{CLIENT_ID}/event/{event_id}/registrant"
    auth = {"accessTokenKey": KEY, "accessTokenSecret": SECRET}
    missing = httpx.post(base, data={"email": "a@example.com"}, headers={"accessTokenKey": KEY})
    assert (missing.status_code, missing.json()["message"]) == (
        401,
        "Header must contain both accessTokenKey and accessTokenSecret.",
    )
    assert httpx.post(base, json={"email": "a@example.com"}, headers=auth).status_code == 415
    unknown = httpx.post(base, data={"email": "a@example.com", "first_name": "A"}, headers=auth)
    assert unknown.status_code == 400 and "first_name" in unknown.json()["message"]
    assert httpx.post(base, data={"firstname": "A"}, headers=auth).status_code == 400
    mixed = httpx.post(base, data={"EMAIL": "a@example.com", "FirstName": "A"}, headers=auth)
    assert mixed.status_code == 200 and mixed.json()["firstname"] == "A"
    attendees = f"{on24.url}/v2/client/{CLIENT_ID}/event/{event_id}/attendee"
    bad = httpx.get(attendees, params={"startDate": "05/01/2024"}, headers=auth)
    assert (bad.status_code, bad.json()["message"]) == (400, "Error, incorrect date formats.")
    backwards = httpx.get(attendees, params={"startDate": "2024-05-02", "endDate": "2024-05-01"}, headers=auth)
    assert (backwards.status_code, backwards.json()["message"]) == (400, "Error, end date is before start date.")


def test_the_provider_asks_for_the_last_activity_filter_unless_configured_to_leave_on24_s_default(
    on24: On24StandIn, client: On24Client, event_id: int
) -> None:
    from shared.on24.provider import On24Provider

    on24.set_attendee(event_id, "seen@example.com", liveminutes=5, lastliveactivity=datetime.now(UTC))
    start, end = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(minutes=1)
    pages = list(On24Provider(client).attendance_pages(str(event_id), start=start, end=end))
    assert [row.email for page in pages for row in page.rows] == ["seen@example.com"]
    assert on24.requests[-1].query["dateFilterMode"] == "lastActivity"
    list(On24Provider(client, date_filter_mode=None).attendance_pages(str(event_id), start=start, end=end))
    assert "dateFilterMode" not in on24.requests[-1].query
    list(On24Provider(client).attendance_pages(str(event_id), start=None, end=None))
    assert "dateFilterMode" not in on24.requests[-1].query, "the mode goes with dates only"
