"""DataverseClient against the strict Dataverse stand-in, over real loopback sockets."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken

from sandbox.dataverse import DataverseStandIn
from shared.crm import (
    CHECKIN_TYPE_EVENT,
    PUBLISHING_STATE_PUBLISHED,
    PUBLISHING_STATE_WEBINAR_PROVIDER_ERROR,
    SYNCED_WITH_PROVIDER_NO,
    SYNCED_WITH_PROVIDER_YES,
    Crm,
)
from shared.dataverse import DataverseClient
from shared.errors import ConfigError, InvalidDataError, NotFoundError, ThrottledError, TransientError
from shared.retry import NO_RETRY, RetryPolicy

FAST = RetryPolicy(budget=3.0, base_delay=0.01, max_delay=0.05, max_attempts=6)


class FakeCredential:
    """A TokenCredential that hands out the given tokens in turn and records every call."""

    def __init__(self, *tokens: str, lifetime: int = 3600) -> None:
        self.tokens = tokens
        self.lifetime = lifetime
        self.calls: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls.append(scopes)
        token = self.tokens[min(len(self.calls), len(self.tokens)) - 1]
        return AccessToken(token, int(time.time()) + self.lifetime)


ORG_URL = "https://contoso.crm.dynamics.com"


class ToStandIn(httpx.BaseTransport):
    """Real sockets to the stand-in for requests addressed to an allowlisted org URL (tokens go only there)."""

    def __init__(self, standin_url: str) -> None:
        self._target = httpx.URL(standin_url)
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme=self._target.scheme, host=self._target.host, port=self._target.port)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def token_client(standin: DataverseStandIn, credential: Any) -> DataverseClient:
    return DataverseClient(ORG_URL, credential, transport=ToStandIn(standin.url), retry=FAST)


@pytest.fixture(scope="module")
def standin() -> Iterator[DataverseStandIn]:
    server = DataverseStandIn()
    server.start()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _reset(standin: DataverseStandIn) -> Iterator[None]:
    yield
    standin.clear_faults()
    standin.set_limit(None)
    standin.expected_token = None
    standin.latency = 0.0


@pytest.fixture
def client(standin: DataverseStandIn) -> Iterator[DataverseClient]:
    with DataverseClient(standin.url, None, retry=FAST) as dataverse:
        yield dataverse


def _seed_registration(standin: DataverseStandIn, *, webinar_id: str | None = "4711") -> tuple[str, str, str]:
    account = standin.add_row("accounts", {"name": "Contoso Ltd"})
    contact = standin.add_row(
        "contacts",
        {
            "firstname": "Ada",
            "lastname": "Lovelace",
            "emailaddress1": "ada@example.com",
            "jobtitle": "Analyst",
            "address1_country": "UK",
            "company": "+44 20 7946 0000",
            "parentcustomerid": account,
        },
    )
    event = standin.add_row(
        "msevtmgt_events",
        {
            "msevtmgt_name": "Quarterly webinar",
            "msevtmgt_webinarid": webinar_id,
            "msevtmgt_eventstartdate": "2025-03-01T17:00:00+02:00",
            "msevtmgt_eventenddate": "2025-03-01T16:00:00Z",
            "msevtmgt_eventformat": 100000002,
            "msevtmgt_streamingprovider": 100000003,
        },
    )
    registration = standin.add_row(
        "msevtmgt_eventregistrations",
        {"msevtmgt_name": "REG-1", "msevtmgt_eventid": event, "msevtmgt_contactid": contact},
    )
    return contact, event, registration


# ---- reads ----------------------------------------------------------------------------------------------------------


def test_get_contact_takes_company_name_from_parent_account_not_the_phone(
    standin: DataverseStandIn, client: DataverseClient
) -> None:
    contact_id, _, _ = _seed_registration(standin)

    contact = Crm(client).get_contact(contact_id.upper())

    assert contact.company == "Contoso Ltd"
    assert (contact.email, contact.first_name, contact.last_name) == ("ada@example.com", "Ada", "Lovelace")
    assert (contact.job_title, contact.country, contact.id) == ("Analyst", "UK", contact_id)


def test_get_contact_whose_parent_is_a_contact_has_no_company(
    standin: DataverseStandIn, client: DataverseClient
) -> None:
    parent = standin.add_row("contacts", {"firstname": "Parent"})
    child = standin.add_row(
        "contacts", {"firstname": "Child", "parentcustomerid_contact@odata.bind": f"/contacts({parent})"}
    )

    assert Crm(client).get_contact(child).company is None


def test_get_event_reads_the_webinar_id_and_treats_a_blank_one_as_none(
    standin: DataverseStandIn, client: DataverseClient
) -> None:
    _, event_id, _ = _seed_registration(standin)
    _, blank_event_id, _ = _seed_registration(standin, webinar_id="   ")

    event = Crm(client).get_event(event_id)
    blank = Crm(client).get_event(blank_event_id)

    assert event.webinar_id == "4711"
    assert blank.webinar_id is None


def test_get_registration_reads_lookups_and_state(standin: DataverseStandIn, client: DataverseClient) -> None:
    contact_id, event_id, registration_id = _seed_registration(standin)

    registration = Crm(client).get_registration(registration_id)

    assert (registration.event_id, registration.contact_id) == (event_id, contact_id)
    assert registration.is_canceled is False and registration.statecode == 0 and registration.is_active
    assert registration.registrant_id is None


def test_missing_row_raises_not_found_naming_set_and_id(client: DataverseClient) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError) as caught:
        Crm(client).get_event(missing)
    assert "msevtmgt_events" in str(caught.value) and missing in str(caught.value)


def test_unknown_select_column_is_a_validation_error(standin: DataverseStandIn, client: DataverseClient) -> None:
    contact_id, _, _ = _seed_registration(standin)
    with pytest.raises(InvalidDataError, match="Could not find a property named 'nosuchcolumn'"):
        client.get_row("contacts", contact_id, select=["firstname", "nosuchcolumn"])


def test_malformed_ids_fail_before_any_request(standin: DataverseStandIn, client: DataverseClient) -> None:
    before = len(standin.requests)
    with pytest.raises(ValueError):
        Crm(client).get_contact("not-a-guid")
    with pytest.raises(ValueError):
        client.update_row("contacts?x=1", str(uuid.uuid4()), {"firstname": "x"})
    with pytest.raises(ValueError):
        client.batch_upsert("contacts", [(str(uuid.uuid4()), {}), ("1234", {})])
    assert len(standin.requests) == before


# ---- writes ---------------------------------------------------------------------------------------------------------


def test_update_registration_sync_changes_the_row(standin: DataverseStandIn, client: DataverseClient) -> None:
    _, _, registration_id = _seed_registration(standin)
    writes = standin.writes

    Crm(client).update_registration_sync(
        registration_id, registrant_id="998877", synced=True, publishing_state=PUBLISHING_STATE_PUBLISHED
    )

    row = standin.row("msevtmgt_eventregistrations", registration_id)
    assert row is not None
    assert row["msevtmgt_webinarregistrationid"] == "998877"
    assert row["msevtmgt_syncedwithprovider"] == SYNCED_WITH_PROVIDER_YES
    assert row["msevtmgt_publishingstate"] == PUBLISHING_STATE_PUBLISHED
    assert standin.writes == writes + 1

    Crm(client).update_registration_sync(
        registration_id,
        registrant_id=None,
        synced=False,
        publishing_state=PUBLISHING_STATE_WEBINAR_PROVIDER_ERROR,
    )
    row = standin.row("msevtmgt_eventregistrations", registration_id)
    assert row is not None and row["msevtmgt_webinarregistrationid"] is None
    assert row["msevtmgt_syncedwithprovider"] == SYNCED_WITH_PROVIDER_NO


def test_update_row_on_a_missing_row_raises_not_found_and_creates_nothing(
    standin: DataverseStandIn, client: DataverseClient
) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError, match=missing):
        Crm(client).update_registration_sync(missing, registrant_id="1", synced=True, publishing_state=None)
    assert standin.row("msevtmgt_eventregistrations", missing) is None
    assert standin.requests[-1].header("if-match") == "*"


def test_a_batch_upsert_creates_then_updates_a_check_in_with_lookups(
    standin: DataverseStandIn, client: DataverseClient
) -> None:
    contact_id, event_id, registration_id = _seed_registration(standin)
    checkin_id = str(uuid.uuid4())
    body = {
        "msevtmgt_name": "ON24 attendance",
        "msevtmgt_checkintype": CHECKIN_TYPE_EVENT,
        "msevtmgt_viewingdurationinmins": 42,
        "msevtmgt_numberofquestionsasked": 3,
        "msevtmgt_checkintime": "2025-03-01T15:02:00Z",
        "msevtmgt_RegistrationId@odata.bind": f"/msevtmgt_eventregistrations({registration_id})",
        "msevtmgt_Event@odata.bind": f"/msevtmgt_events({event_id})",
        "msevtmgt_Contact@odata.bind": f"/contacts({contact_id})",
    }

    assert client.batch_upsert("msevtmgt_checkins", [(checkin_id, body)]).ok
    assert client.batch_upsert("msevtmgt_checkins", [(checkin_id, {**body, "msevtmgt_viewingdurationinmins": 50})]).ok

    row = standin.row("msevtmgt_checkins", checkin_id)
    assert row is not None
    assert row["msevtmgt_viewingdurationinmins"] == 50
    assert row["_msevtmgt_registrationid_value"] == registration_id
    assert row["_msevtmgt_contact_value"] == contact_id

    refused = client.batch_upsert("msevtmgt_checkins", [(checkin_id, {"msevtmgt_checkintype": 5})])
    assert "outside the valid range" in refused.failed[checkin_id]


# ---- faults and throttling ------------------------------------------------------------------------------------------


def test_429_with_retry_after_is_retried_then_succeeds(standin: DataverseStandIn, client: DataverseClient) -> None:
    contact_id, _, _ = _seed_registration(standin)
    standin.fail_next(1, status=429, headers={"Retry-After": "0"}, path_contains="/contacts(")
    before = standin.count("GET", "/contacts(")

    assert Crm(client).get_contact(contact_id).first_name == "Ada"
    assert standin.count("GET", "/contacts(") - before == 2


def test_429_reports_the_services_retry_after(standin: DataverseStandIn) -> None:
    contact_id, _, _ = _seed_registration(standin)
    standin.fail_next(1, status=429, headers={"Retry-After": "7"}, path_contains="/contacts(")
    with DataverseClient(standin.url, None, retry=NO_RETRY) as client, pytest.raises(ThrottledError) as caught:
        Crm(client).get_contact(contact_id)
    assert caught.value.retry_after == 7.0


def test_service_protection_limit_is_waited_out(standin: DataverseStandIn, client: DataverseClient) -> None:
    contact_id, _, _ = _seed_registration(standin)
    standin.set_limit(2, 1.0)
    started = time.monotonic()

    names = [Crm(client).get_contact(contact_id).first_name for _ in range(3)]

    assert names == ["Ada"] * 3
    assert time.monotonic() - started >= 0.5  # the third call waited for the stand-in's Retry-After


def test_5xx_and_dropped_connections_are_retried(standin: DataverseStandIn, client: DataverseClient) -> None:
    _, event_id, _ = _seed_registration(standin)
    standin.fail_next(2, status=503, path_contains="/msevtmgt_events(")
    standin.fail_next(1, status=0, drop=True, path_contains="/msevtmgt_events(")
    before = standin.count("GET", "/msevtmgt_events(")

    assert Crm(client).get_event(event_id).webinar_id == "4711"
    assert standin.count("GET", "/msevtmgt_events(") - before == 4


def test_persistent_503_raises_transient_error_after_the_budget(standin: DataverseStandIn) -> None:
    _, event_id, _ = _seed_registration(standin)
    standin.fail_next(100, status=503, path_contains="/msevtmgt_events(")
    policy = RetryPolicy(budget=0.3, base_delay=0.05, max_delay=0.1, max_attempts=50)
    started = time.monotonic()
    with DataverseClient(standin.url, None, retry=policy) as client, pytest.raises(TransientError) as caught:
        Crm(client).get_event(event_id)
    assert not isinstance(caught.value, ThrottledError)
    assert "503" in str(caught.value)
    assert time.monotonic() - started < 2.0


# ---- tokens ---------------------------------------------------------------------------------------------------------


def test_token_is_cached_and_refreshed_once_after_a_401(
    standin: DataverseStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    contact_id, _, _ = _seed_registration(standin)
    credential = FakeCredential("token-one-secret", "token-two-secret")
    standin.expected_token = "token-one-secret"
    with token_client(standin, credential) as client:
        Crm(client).get_contact(contact_id)
        Crm(client).get_contact(contact_id)
        assert len(credential.calls) == 1  # cached

        standin.expected_token = "token-two-secret"  # rotated on the service side
        assert Crm(client).get_contact(contact_id).first_name == "Ada"

    assert credential.calls == [(f"{ORG_URL}/.default",)] * 2
    assert "secret" not in caplog.text


def test_a_token_close_to_expiry_is_not_reused(standin: DataverseStandIn) -> None:
    contact_id, _, _ = _seed_registration(standin)
    credential = FakeCredential("short-lived", lifetime=60)  # inside the 2-minute margin
    standin.expected_token = "short-lived"
    with token_client(standin, credential) as client:
        Crm(client).get_contact(contact_id)
        Crm(client).get_contact(contact_id)
    assert len(credential.calls) == 2


def test_a_rejected_token_is_a_config_error_without_the_token(
    standin: DataverseStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    contact_id, _, _ = _seed_registration(standin)
    credential = FakeCredential("stale-secret-a", "stale-secret-b", "stale-secret-c")
    standin.expected_token = "the-right-one"
    with token_client(standin, credential) as client, pytest.raises(ConfigError) as caught:
        Crm(client).get_contact(contact_id)

    assert "Dataverse rejected the app's token" in str(caught.value)
    assert len(credential.calls) == 2  # one refresh, no more
    assert "secret" not in str(caught.value) and "secret" not in caplog.text


# ---- $batch ---------------------------------------------------------------------------------------------------------


def _checkins(registration_id: str, count: int, minutes: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            str(uuid.uuid5(uuid.NAMESPACE_URL, f"{registration_id}/{i}")),
            {
                "msevtmgt_name": f"attendance {i}",
                "msevtmgt_checkintype": CHECKIN_TYPE_EVENT,
                "msevtmgt_viewingdurationinmins": minutes,
                "msevtmgt_RegistrationId@odata.bind": f"/msevtmgt_eventregistrations({registration_id})",
            },
        )
        for i in range(count)
    ]


def _checkins_of(standin: DataverseStandIn, registration_id: str) -> list[dict[str, Any]]:
    return [r for r in standin.rows("msevtmgt_checkins") if r["_msevtmgt_registrationid_value"] == registration_id]


def test_batch_upsert_sends_1000_per_request_and_a_second_run_updates(
    standin: DataverseStandIn, client: DataverseClient
) -> None:
    _, _, registration_id = _seed_registration(standin)
    before_batches, before_writes = standin.count("POST", "$batch"), standin.writes

    first = client.batch_upsert("msevtmgt_checkins", _checkins(registration_id, 2500, minutes=10))

    assert first.ok and len(first.succeeded) == 2500 and first.requests == 3
    assert standin.count("POST", "$batch") - before_batches == 3
    assert standin.writes - before_writes == 2500
    assert len(_checkins_of(standin, registration_id)) == 2500

    second = client.batch_upsert("msevtmgt_checkins", _checkins(registration_id, 2500, minutes=20))

    rows = _checkins_of(standin, registration_id)
    assert second.ok and len(rows) == 2500  # updated, not duplicated
    assert {r["msevtmgt_viewingdurationinmins"] for r in rows} == {20}


def test_batch_reports_a_bad_row_and_writes_the_others(standin: DataverseStandIn, client: DataverseClient) -> None:
    _, _, registration_id = _seed_registration(standin)
    rows = _checkins(registration_id, 5, minutes=1)
    bad_id = rows[2][0]
    rows[2] = (bad_id, {**rows[2][1], "nosuchcolumn": 1})

    result = client.batch_upsert("msevtmgt_checkins", rows)

    assert set(result.failed) == {bad_id}
    assert "Could not find a property named 'nosuchcolumn'" in result.failed[bad_id]
    assert set(result.succeeded) == {row_id for row_id, _ in rows} - {bad_id}
    assert standin.row("msevtmgt_checkins", bad_id) is None
    assert len(_checkins_of(standin, registration_id)) == 4


def test_a_throttled_batch_is_resent_after_retry_after(standin: DataverseStandIn, client: DataverseClient) -> None:
    _, _, registration_id = _seed_registration(standin)
    standin.fail_next(1, status=429, headers={"Retry-After": "0"}, path_contains="$batch")

    result = client.batch_upsert("msevtmgt_checkins", _checkins(registration_id, 30, minutes=5))

    assert result.ok and len(result.succeeded) == 30 and result.requests == 2
    assert len(_checkins_of(standin, registration_id)) == 30


def test_batches_run_in_parallel_but_bounded(standin: DataverseStandIn, client: DataverseClient) -> None:
    _, _, registration_id = _seed_registration(standin)
    standin.latency = 0.1
    standin.max_in_flight = 0

    result = client.batch_upsert(
        "msevtmgt_checkins", _checkins(registration_id, 40, minutes=5), batch_size=5, max_parallel=3
    )

    assert result.ok and result.requests == 8
    assert 2 <= standin.max_in_flight <= 3


# ---- the stand-in's own strictness (what the client relies on) -----------------------------------------------------


def test_stand_in_rejects_requests_without_odata_headers(standin: DataverseStandIn) -> None:
    response = httpx.get(
        f"{standin.url}/api/data/v9.2/contacts?$select=firstname", headers={"Accept": "application/json"}
    )
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message"}


def test_rows_throttled_or_unanswered_inside_a_batch_are_resent_alone() -> None:
    # The stand-in always answers every part; per-part 429s and truncated responses need a scripted transport.
    ids = [str(uuid.uuid4()) for _ in range(3)]
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        ok = "HTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\n\r\n"
        throttled = (
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Type: application/json\r\n\r\n"
            '{"error":{"code":"0x80072322","message":"Number of requests exceeded the limit"}}'
        )
        answers = [ok, throttled] if len(bodies) == 1 else [ok, ok]
        parts = "".join(
            f"--batchresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n{a}\r\n"
            for a in answers
        )
        return httpx.Response(
            200,
            headers={"Content-Type": "multipart/mixed; boundary=batchresponse_1"},
            content=(parts + "--batchresponse_1--\r\n").encode(),
        )

    with DataverseClient(
        "https://contoso.crm.dynamics.com", None, transport=httpx.MockTransport(handler), retry=FAST
    ) as client:
        result = client.batch_upsert("contacts", [(row_id, {"firstname": "x"}) for row_id in ids])

    assert result.ok and set(result.succeeded) == set(ids) and result.requests == 2
    assert ids[0].encode() not in bodies[1] and ids[1].encode() in bodies[1] and ids[2].encode() in bodies[1]
