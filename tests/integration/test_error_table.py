"""Status x edge -> error class: every edge translates what it meets into one class of ``shared.errors``.

The app's own identity refused (401/403 from Dataverse or Table Storage, a refused token request) is a
``ConfigError`` everywhere: retried and alerted, never a permanent failure of someone's registration. No SDK
exception escapes the store. Dataverse and ON24 rows run over real sockets against the stand-ins; Table
Storage rows use Azurite where it can produce the status, and azure-core's own exception types elsewhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableServiceClient

from sandbox.azurite import Azurite
from sandbox.dataverse import DataverseStandIn
from sandbox.on24 import On24StandIn
from shared.crm import Crm
from shared.dataverse import DataverseClient
from shared.errors import (
    ConfigError,
    CredentialsRejectedError,
    IntegrationError,
    InvalidDataError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from shared.on24 import On24Client, On24Credentials
from shared.retry import NO_RETRY
from shared.store.tables import read_entity, table_errors, write_entity

# ---- Dataverse: every status of a response, for a read and for a $batch --------------------------------------------

DATAVERSE_TABLE: list[tuple[int, type[IntegrationError]]] = [
    (400, InvalidDataError),
    (401, ConfigError),  # the app's token refused: the application user is missing or disabled
    (403, ConfigError),  # the application user lacks a privilege
    (404, NotFoundError),
    (405, PermanentError),
    (408, TransientError),
    (409, InvalidDataError),
    (412, InvalidDataError),
    (413, InvalidDataError),
    (422, InvalidDataError),
    (429, ThrottledError),
    (500, TransientError),
    (501, PermanentError),
    (502, TransientError),
    (503, TransientError),
    (504, TransientError),
]


@pytest.fixture(scope="module")
def dataverse_standin() -> Iterator[DataverseStandIn]:
    server = DataverseStandIn()
    server.start()
    yield server
    server.close()


@pytest.mark.parametrize(("status", "expected"), DATAVERSE_TABLE)
def test_dataverse_status_to_error_class(
    dataverse_standin: DataverseStandIn, status: int, expected: type[IntegrationError]
) -> None:
    contact = dataverse_standin.add_row("contacts", {"firstname": "Ada"})
    registration = dataverse_standin.add_row("msevtmgt_eventregistrations", {"msevtmgt_name": "R"})
    payload = {"error": {"code": "0x80040220", "message": f"scripted {status}"}}
    with DataverseClient(dataverse_standin.url, None, retry=NO_RETRY) as client:
        dataverse_standin.fail_next(1, status=status, payload=payload, path_contains="/contacts(")
        with pytest.raises(IntegrationError) as read:
            Crm(client).get_contact(contact)
        dataverse_standin.fail_next(1, status=status, payload=payload, path_contains="$batch")
        bind = f"/msevtmgt_eventregistrations({registration})"
        fields = {"msevtmgt_name": "x", "msevtmgt_RegistrationId@odata.bind": bind}
        with pytest.raises(IntegrationError) as batch:
            client.batch_upsert("msevtmgt_checkins", [(str(uuid.uuid4()), fields)])
    dataverse_standin.clear_faults()
    assert type(read.value) is expected, read.value
    assert type(batch.value) is expected, batch.value
    if expected is ConfigError:
        assert "application user" in str(read.value)


# ---- the token endpoint (Entra ID through azure-identity) ---------------------------------------------------------


class _Credential:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise self.error


TOKEN_TABLE: list[tuple[Exception, type[IntegrationError]]] = [
    (ClientAuthenticationError("AADSTS7000215: Invalid client secret provided."), ConfigError),
    (ClientAuthenticationError("ManagedIdentityCredential authentication unavailable"), ConfigError),
    (ServiceRequestError("connection refused"), TransientError),
    (AzureError("token endpoint answered garbage"), TransientError),
]


@pytest.mark.parametrize(("error", "expected"), TOKEN_TABLE, ids=lambda v: type(v).__name__)
def test_token_request_failure_to_error_class(error: Exception, expected: type[IntegrationError]) -> None:
    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be sent without a token")

    with (
        DataverseClient(
            "https://contoso.crm.dynamics.com", _Credential(error), transport=httpx.MockTransport(never), retry=NO_RETRY
        ) as client,
        pytest.raises(IntegrationError) as caught,
    ):
        Crm(client).get_contact(str(uuid.uuid4()))
    assert type(caught.value) is expected


# ---- Table Storage ------------------------------------------------------------------------------------------------


def _http_error(status: int, error_code: str | None = None) -> HttpResponseError:
    error = HttpResponseError(message=f"scripted {status}")
    error.status_code = status
    error.error_code = error_code
    return error


TABLE_TABLE: list[tuple[str, Exception, type[IntegrationError]]] = [
    ("400", _http_error(400, "InvalidInput"), PermanentError),
    ("401", _http_error(401), ConfigError),
    ("403", _http_error(403, "AuthorizationFailure"), ConfigError),
    ("404 left over", ResourceNotFoundError("gone"), NotFoundError),
    ("409 left over", ResourceExistsError("exists"), TransientError),
    ("412 left over", ResourceModifiedError("changed"), TransientError),
    ("409 other", _http_error(409, "TableBeingDeleted"), TransientError),
    ("413", _http_error(413, "RequestBodyTooLarge"), PermanentError),
    ("408", _http_error(408), TransientError),
    ("429", _http_error(429), TransientError),
    ("500", _http_error(500), TransientError),
    ("503 busy", _http_error(503, "ServerBusy"), ThrottledError),
    ("identity", ClientAuthenticationError("no managed identity"), ConfigError),
    ("unreachable", ServiceRequestError("refused"), TransientError),
    ("cut off", ServiceResponseError("reset"), TransientError),
    ("garbled", DecodeError("not json"), TransientError),
]


@pytest.mark.parametrize(("error", "expected"), [(e, x) for _, e, x in TABLE_TABLE], ids=[n for n, _, _ in TABLE_TABLE])
def test_table_storage_error_to_error_class(error: Exception, expected: type[IntegrationError]) -> None:
    with pytest.raises(IntegrationError) as caught, table_errors("doing a scripted thing"):
        raise error
    assert isinstance(caught.value, expected)
    assert not isinstance(caught.value, AzureError)
    if expected is ConfigError:
        assert "identity" in str(caught.value) or "refused" in str(caught.value)


@pytest.fixture(scope="module")
def azurite_tables(azurite: Azurite) -> TableServiceClient:
    return TableServiceClient.from_connection_string(azurite.connection_string)


def test_table_storage_answers_from_azurite(azurite: Azurite, azurite_tables: TableServiceClient) -> None:
    table = azurite_tables.create_table_if_not_exists("t" + uuid.uuid4().hex[:12])
    with pytest.raises(PermanentError):  # 400 PropertyValueTooLarge: our data, not a blip
        write_entity(table, {"PartitionKey": "p", "RowKey": "r", "Big": "x" * 40_000}, None, "writing a big row")
    wrong_key = azurite.connection_string.replace("AccountKey=", "AccountKey=AAAA")
    foreign = TableServiceClient.from_connection_string(wrong_key).get_table_client(table.table_name)
    with pytest.raises(ConfigError):  # 403 AuthorizationFailure: the app's identity refused
        read_entity(foreign, "p", "r", "reading with the wrong key")


# ---- ON24 (the org's credentials, not the app's identity) ---------------------------------------------------------

ON24_TABLE: list[tuple[int, str, type[IntegrationError]]] = [
    (400, "Error, incorrect date formats.", InvalidDataError),
    (401, "AccessTokenKey and AccessTokenSecret are wrong or invalid.", CredentialsRejectedError),
    (403, "You have reached the maximum number of calls for this api.", ThrottledError),
    (403, "Forbidden.", CredentialsRejectedError),
    (404, "Event with id 1 does not exist.", NotFoundError),
    (429, "Too many requests.", ThrottledError),
    (500, "Internal error.", TransientError),
    (503, "Unavailable.", TransientError),
]


@pytest.fixture(scope="module")
def on24_standin() -> Iterator[On24StandIn]:
    server = On24StandIn()
    server.start()
    server.add_client("5005", "k", "s")
    server.add_event("5005", 42)
    yield server
    server.close()


@pytest.mark.parametrize(("status", "message", "expected"), ON24_TABLE)
def test_on24_status_to_error_class(
    on24_standin: On24StandIn, status: int, message: str, expected: type[IntegrationError]
) -> None:
    credentials = On24Credentials(client_id="5005", access_token_key="k", access_token_secret="s")
    on24_standin.fail_next(1, status=status, payload={"message": message})
    with (
        On24Client(credentials, base_url=on24_standin.url, retry=NO_RETRY) as client,
        pytest.raises(IntegrationError) as caught,
    ):
        client.get_event(42)
    on24_standin.clear_faults()
    assert type(caught.value) is expected
