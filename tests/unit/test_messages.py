"""Unit tests for shared.messages: both queue formats, and every way a body can be wrong or hostile."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.functions.servicebus import ServiceBusMessage
from pydantic import ValidationError as PydanticValidationError

from shared.errors import PermanentError
from shared.messages import (
    MAX_BODY_BYTES,
    ContactErasure,
    MessageError,
    RegistrationCommand,
    parse_message,
)
from shared.webinars import Person

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "messages"

ORG = "8c5b2f3e-6a41-4d2b-9f0e-1d7a3c5e9b21"
REG = "3f2a9c1e-7b4d-4e8a-a1c2-5d6e7f809a1b"
EVT = "b7e1c2d3-4f5a-4b6c-8d9e-0a1b2c3d4e5f"
CON = "c4d5e6f7-0819-4a2b-9c3d-4e5f60718293"
OTHER_EVT = "0e0e0e0e-1111-4222-8333-444444444444"
PRE_EVT = "9f9f9f9f-aaaa-4bbb-8ccc-dddddddddddd"
CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
CLAIMS = "http://schemas.microsoft.com/xrm/2011/Claims/"
SIZE_FLAG = CLAIMS + "MessageMaxSizeExceeded"
_DELETE = object()  # as a value in the builders below: remove the key


def fixture(name: str) -> bytes:
    """The raw bytes of a fixture body, exactly as Service Bus would deliver them."""
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture(name))
    return data


def dumps(data: object) -> bytes:
    """Compact JSON with Dataverse's ``\\/`` escapes."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("/", "\\/").encode()


def canonical(**changes: Any) -> dict[str, Any]:
    """A valid canonical register message; keyword ``attendee__x`` changes attendee key x; None deletes."""
    data: dict[str, Any] = {
        "schema": "webinar-registration/1",
        "orgId": "contoso-prod",
        "action": "register",
        "registrationId": REG,
        "eventId": EVT,
        "on24EventId": "4471234",
        "attendee": {"email": "zoe@example.com", "firstName": "Zoë", "lastName": "Müller"},
    }
    for key, value in changes.items():
        if key.startswith("attendee__"):
            target, name = data["attendee"], key.removeprefix("attendee__")
        else:
            target, name = data, key
        if value is _DELETE:
            target.pop(name, None)
        else:
            target[name] = value
    return data


def kv(mapping: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": value} for key, value in mapping.items()]


def ref(logical_name: str, id_: str) -> dict[str, Any]:
    return {"__type": f"EntityReference:{CONTRACTS}", "Id": id_, "KeyAttributes": [], "LogicalName": logical_name}


def osv(value: int) -> dict[str, Any]:
    return {"__type": f"OptionSetValue:{CONTRACTS}", "Value": value}


def entity(attributes: dict[str, Any], *, id_: str = REG) -> dict[str, Any]:
    return {
        "__type": f"Entity:{CONTRACTS}",
        "Attributes": kv(attributes),
        "EntityState": None,
        "FormattedValues": [],
        "Id": id_,
        "KeyAttributes": [],
        "LogicalName": "msevtmgt_eventregistration",
        "RelatedEntities": [],
        "RowVersion": None,
    }


def dataverse(
    message: str = "Update",
    target: dict[str, Any] | None = None,
    *,
    pre: dict[str, Any] | None = None,
    post: dict[str, Any] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A minimal Dataverse context; ``target``/``pre``/``post`` are attribute dicts."""
    data: dict[str, Any] = {
        "InputParameters": kv({"Target": entity(target or {})}),
        "MessageName": message,
        "OperationCreatedOn": "/Date(1742486651000+0000)/",
        "OrganizationId": ORG,
        "PostEntityImages": kv({"PostImage": {"Attributes": kv(post)}}) if post is not None else [],
        "PreEntityImages": kv({"PreImage": {"Attributes": kv(pre)}}) if pre is not None else [],
        "PrimaryEntityId": REG,
        "PrimaryEntityName": "msevtmgt_eventregistration",
    }
    for key, value in top.items():
        if value is _DELETE:
            data.pop(key, None)
        else:
            data[key] = value
    return data


# --- Dataverse format -------------------------------------------------------------------------------


def test_dataverse_create_fixture_is_a_register_command() -> None:
    body = fixture("dataverse_create.json")
    assert b"\\/Date(" in body and "Zoë".encode() in body  # kept as Dataverse writes it

    command = parse_message(body, content_type="application/json", application_properties={})

    assert command == RegistrationCommand(
        org_id=ORG,
        action="register",
        registration_id=REG,
        crm_event_id=EVT,
        contact_id=CON,
        webinar_id=None,
        person=None,
        occurred_at=datetime(2025, 3, 20, 16, 4, 11, tzinfo=UTC),  # +0000 suffix does not shift the instant
        source="dataverse",
        size_exceeded=False,
    )


def test_dataverse_update_takes_unchanged_columns_from_the_post_image() -> None:
    data = fixture_json("dataverse_update.json")
    target = data["InputParameters"][0]["value"]["Attributes"]
    assert {item["key"] for item in target} == {
        "msevtmgt_registrationnotificationseen",
        "modifiedby",
        "modifiedonbehalfby",
        "modifiedon",
    }

    command = parse_message(fixture("dataverse_update.json"), content_type="application/json; charset=utf-8")

    assert command.action == "update"
    assert (command.crm_event_id, command.contact_id) == (EVT, CON)
    assert command.occurred_at == datetime(2025, 3, 21, 16, 4, 12, tzinfo=UTC)
    assert command.size_exceeded is False


def test_dataverse_update_setting_iscanceled_is_a_cancel() -> None:
    command = parse_message(fixture("dataverse_update_cancel.json"), content_type="application/json")

    assert command.action == "cancel"
    assert command.crm_event_id == EVT


def test_dataverse_update_deactivating_the_row_is_a_cancel_and_the_offset_suffix_does_not_shift_time() -> None:
    body = fixture("dataverse_update_statecode.json")
    assert b"-0500)" in body

    command = parse_message(body, content_type="application/json")

    assert command.action == "cancel"
    assert command.crm_event_id == EVT  # from the pre image: no post image is registered
    assert command.occurred_at == datetime(2025, 3, 23, 16, 4, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "properties",
    [
        {"MessageMaxSizeExceeded": True},
        {SIZE_FLAG: "True"},
        {SIZE_FLAG: "true", CLAIMS + "EntityLogicalName": "msevtmgt_eventregistration"},
        {"messagemaxsizeexceeded": 1},
        {},  # flag lost, but with no Target the row must be re-read all the same
        None,
    ],
)
def test_trimmed_update_asks_the_caller_to_reread_the_row(properties: dict[str, object] | None) -> None:
    command = parse_message(
        fixture("dataverse_trimmed.json"), content_type="application/json", application_properties=properties
    )

    assert command.size_exceeded is True
    assert command.action == "update"
    assert command.registration_id == REG
    assert command.crm_event_id is None and command.contact_id is None
    assert command.occurred_at == datetime(2025, 3, 24, 16, 4, 11, tzinfo=UTC)


def test_trimmed_create_is_a_register() -> None:
    data = fixture_json("dataverse_trimmed.json") | {"MessageName": "Create"}

    command = parse_message(dumps(data), application_properties={SIZE_FLAG: True})

    assert (command.action, command.size_exceeded) == ("register", True)


@pytest.mark.parametrize("flag", [False, "False", "0", 0, "", None])
def test_a_falsy_size_flag_is_not_set(flag: object) -> None:
    command = parse_message(fixture("dataverse_update.json"), application_properties={SIZE_FLAG: flag})

    assert command.size_exceeded is False


def test_a_size_flag_with_the_row_present_still_reads_the_row() -> None:
    command = parse_message(fixture("dataverse_update_cancel.json"), application_properties={SIZE_FLAG: True})

    assert (command.action, command.size_exceeded) == ("cancel", True)


def test_create_of_an_already_cancelled_registration_is_a_cancel() -> None:
    data = dataverse("Create", {"msevtmgt_iscanceled": True, "msevtmgt_eventid": ref("msevtmgt_event", EVT)})

    assert parse_message(dumps(data)).action == "cancel"


def test_target_wins_over_the_post_image_which_wins_over_the_pre_image() -> None:
    target, post, pre = ({"msevtmgt_eventid": ref("msevtmgt_event", id_)} for id_ in (EVT, OTHER_EVT, PRE_EVT))

    def event_of(data: dict[str, Any]) -> str | None:
        return parse_message(dumps(data)).crm_event_id

    assert event_of(dataverse(target=target, post=post, pre=pre)) == EVT
    assert event_of(dataverse(post=post, pre=pre)) == OTHER_EVT
    assert event_of(dataverse(pre=pre)) == PRE_EVT


def test_a_reactivation_in_the_target_is_not_a_cancel_even_if_the_pre_image_was_inactive() -> None:
    data = dataverse(target={"statecode": osv(0), "statuscode": osv(1)}, pre={"statecode": osv(1)})

    assert parse_message(dumps(data)).action == "update"


def test_message_name_is_case_insensitive_and_ids_are_lower_cased() -> None:
    data = dataverse("update", OrganizationId=ORG.upper(), PrimaryEntityId="{" + REG.upper() + "}")
    data["InputParameters"][0]["value"]["Id"] = REG.upper()

    command = parse_message(dumps(data))

    assert (command.org_id, command.registration_id, command.action) == (ORG, REG, "update")


def test_registration_id_falls_back_to_the_target_id() -> None:
    command = parse_message(dumps(dataverse(PrimaryEntityId=_DELETE)))

    assert command.registration_id == REG


def test_occurred_at_falls_back_to_modifiedon_then_createdon() -> None:
    modified = dataverse(target={"modifiedon": "/Date(1700000000000)/"}, OperationCreatedOn=_DELETE)
    created = dataverse("Create", {"createdon": "/Date(1600000000000)/"}, OperationCreatedOn=None)
    neither = dataverse(OperationCreatedOn=_DELETE)

    assert parse_message(dumps(modified)).occurred_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert parse_message(dumps(created)).occurred_at == datetime(2020, 9, 13, 12, 26, 40, tzinfo=UTC)
    assert parse_message(dumps(neither)).occurred_at is None


def test_unknown_context_properties_are_ignored() -> None:
    data = fixture_json("dataverse_create.json") | {
        "BrandNewProperty": {"nested": [1, 2, {"deep": None}]},
        "IsInTransaction": "surprise",
    }

    assert parse_message(dumps(data)).action == "register"


def test_a_service_bus_trigger_message_can_be_parsed_from_its_parts() -> None:
    msg = ServiceBusMessage(
        body=fixture("dataverse_trimmed.json"),
        message_id="m-1",
        content_type="application/json",
        application_properties={SIZE_FLAG: True, CLAIMS + "RequestName": "Update"},
        user_properties={},
    )

    command = parse_message(
        msg.get_body(), content_type=msg.content_type, application_properties=msg.application_properties
    )

    assert command.size_exceeded is True


# --- canonical format --------------------------------------------------------------------------------


def test_canonical_register_fixture() -> None:
    command = parse_message(fixture("canonical_register.json"), content_type="application/json")

    assert command == RegistrationCommand(
        org_id="contoso-prod",
        action="register",
        registration_id=REG,  # the fixture has it upper-case
        crm_event_id=EVT,
        contact_id=None,
        webinar_id="4471234",
        person=Person(
            email="zoe.mueller@example.com",
            first_name="Zoë",
            last_name="Müller",
            company="Ångström AB",
            job_title="Engineer",
            country="Sweden",
            work_phone="+46 8 123 456",
            city="Stockholm",
            state=None,
            zip="111 22",
            address_street1="Drottninggatan 1",
        ),
        occurred_at=datetime(2025, 3, 20, 16, 4, 11, tzinfo=UTC),  # +01:00 converted to UTC
        source="canonical",
    )


def test_canonical_update_fixture_accepts_a_numeric_on24_event_id() -> None:
    command = parse_message(fixture("canonical_update.json"))

    assert command.action == "update"
    assert command.webinar_id == "4471234"
    assert command.person is not None and command.person.last_name == "Müller-Lindqvist"
    assert command.occurred_at == datetime(2025, 3, 21, 16, 4, 11, tzinfo=UTC)


def test_canonical_cancel_fixture_needs_no_attendee() -> None:
    command = parse_message(fixture("canonical_cancel.json"), content_type="")

    assert command.action == "cancel"
    assert (command.person, command.webinar_id, command.occurred_at) == (None, None, None)


@pytest.mark.parametrize("name", ["canonical_register.json", "dataverse_create.json"])
def test_a_utf8_bom_is_tolerated(name: str) -> None:
    assert parse_message(b"\xef\xbb\xbf" + fixture(name)) == parse_message(fixture(name))


@pytest.mark.parametrize("content_type", [None, "", "application/json", "Application/JSON; charset=UTF-8"])
def test_json_content_types_are_accepted(content_type: str | None) -> None:
    assert parse_message(fixture("canonical_cancel.json"), content_type=content_type).action == "cancel"


def test_canonical_values_are_stripped_and_a_guid_org_id_is_lower_cased() -> None:
    data = canonical(
        orgId=f" {ORG.upper()} ",
        registrationId=f"\t{REG}\n",
        on24EventId=" 004471234 ",
        attendee__email=" zoe@example.com ",
        attendee__firstName="  Zoë ",
        attendee__company="  ",
    )

    command = parse_message(dumps(data))

    assert (command.org_id, command.registration_id, command.webinar_id) == (ORG, REG, "4471234")
    assert command.person is not None
    assert (command.person.email, command.person.first_name, command.person.company) == (
        "zoe@example.com",
        "Zoë",
        None,
    )


def test_long_names_and_markup_in_other_fields_are_passed_through_as_text() -> None:
    long_name = "Wolfeschlegelsteinhausenbergerdorff-Wolfeschlegelsteinhausen"  # 60 chars > ON24's 50
    data = canonical(attendee__lastName=long_name, attendee__company="Smith & Sons <UK>", attendee__email="o'neil@x.io")

    attendee = parse_message(dumps(data)).person

    assert attendee is not None
    assert (attendee.last_name, attendee.company, attendee.email) == (long_name, "Smith & Sons <UK>", "o'neil@x.io")


def test_unknown_keys_are_ignored_in_the_canonical_format() -> None:
    data = canonical(futureField={"x": 1}, attendee__middleName="Q")

    assert parse_message(dumps(data)).person is not None


def test_commands_are_frozen() -> None:
    command = parse_message(fixture("canonical_register.json"))

    with pytest.raises(PydanticValidationError):
        command.action = "cancel"  # type: ignore[misc]


def test_duplicate_keys_keep_the_last_value() -> None:
    body = dumps(canonical())[:-1] + b',"action":"cancel"}'

    assert parse_message(body).action == "cancel"


# --- malformed and hostile bodies ----------------------------------------------------------------------


def _body(data: object) -> bytes:
    return dumps(data)


def _raw_canonical_with_attendee_value(raw_json_value: str) -> bytes:
    """A canonical body whose attendee firstName is the given raw JSON text (to inject escapes)."""
    return _body(canonical(attendee__firstName="@@")).replace(b'"@@"', raw_json_value.encode())


HOSTILE_BODIES: list[Any] = [
    pytest.param(b'{"schema":', None, "not valid JSON", id="truncated-json"),
    pytest.param(b"", None, "empty", id="empty-body"),
    pytest.param(b" \r\n\t ", None, "empty", id="whitespace-body"),
    pytest.param(b"null", None, "JSON null", id="null"),
    pytest.param(b"[]", None, "JSON array", id="list"),
    pytest.param(b'[{"schema": "webinar-registration/1"}]', None, "JSON array", id="list-of-message"),
    pytest.param(b"42", None, "JSON number", id="number"),
    pytest.param(b'"webinar-registration/1"', None, "JSON string", id="string"),
    pytest.param(b"{}", None, "unrecognised message format", id="empty-object"),
    pytest.param(b'{"hello":"world"}', None, "unrecognised", id="unknown-object"),
    pytest.param(b"{}{}", None, "not valid JSON", id="trailing-garbage"),
    pytest.param(_body(canonical(orgId=5)), None, "orgId", id="org-id-int"),
    pytest.param(_body(canonical(attendee="x")), None, "attendee", id="attendee-string"),
    pytest.param(_body(canonical(attendee=[])), None, "attendee", id="attendee-list"),
    pytest.param(_body(canonical(registrationId=_DELETE)), None, "registrationId", id="missing-registration-id"),
    pytest.param(_body(canonical(eventId=_DELETE)), None, "eventId", id="missing-event-id"),
    pytest.param(_body(canonical(orgId=_DELETE)), None, "orgId", id="missing-org-id"),
    pytest.param(_body(canonical(registrationId=12345)), None, "registrationId", id="registration-id-int"),
    pytest.param(_body(canonical(registrationId="not-a-guid")), None, "registrationId", id="bad-guid"),
    pytest.param(_body(canonical(registrationId=REG + "0")), None, "registrationId", id="guid-too-long"),
    pytest.param(_body(canonical(eventId="{" + EVT)), None, "eventId", id="guid-unbalanced-brace"),
    pytest.param(
        _body(canonical(registrationId="00000000-0000-0000-0000-000000000000")), None, "registrationId", id="nil-guid"
    ),
    pytest.param(_body(canonical(registrationId="1' OR '1'='1")), None, "registrationId", id="sql-registration-id"),
    pytest.param(_body(canonical(eventId="x'; DROP TABLE registrations;--")), None, "eventId", id="sql-event-id"),
    pytest.param(_body(canonical(orgId="a' or 1=1--")), None, "orgId", id="sql-org-id"),
    pytest.param(_body(canonical(action="delete")), None, "action", id="unknown-action"),
    pytest.param(_body(canonical(action="Register")), None, "action", id="action-wrong-case"),
    pytest.param(_body(canonical(action=1)), None, "action", id="action-int"),
    pytest.param(_body(canonical(schema="webinar-registration/2")), None, "unsupported version", id="schema-v2"),
    pytest.param(_body(canonical(schema="other/1")), None, "schema", id="schema-unknown"),
    pytest.param(_body(canonical(schema=None)), None, "schema", id="schema-null"),
    pytest.param(b"{" + b" " * (10 * 1024 * 1024) + b"}", None, "maximum", id="10MB-body"),
    pytest.param(_body(canonical(attendee__firstName="A" * 5000)), None, "attendee.firstName", id="5000-char-name"),
    pytest.param(_body(canonical(attendee__company="C" * 1001)), None, "attendee.company", id="1001-char-company"),
    pytest.param(_body(canonical(attendee__lastName="Null\x00Byte")), None, "U+0000", id="nul-in-name"),
    pytest.param(_body(canonical(attendee__company="\x1b[31mred\x1b[0m")), None, "U+001B", id="ansi-escape"),
    pytest.param(_body(canonical(attendee__firstName="abc\u202egpj.exe")), None, "U+202E", id="rtl-override"),
    pytest.param(_body(canonical(attendee__jobTitle="line1\nline2")), None, "attendee.jobTitle", id="inner-newline"),
    pytest.param(_raw_canonical_with_attendee_value('"\\ud800"'), None, "U+D800", id="lone-surrogate"),
    pytest.param(
        _body(canonical(attendee__firstName="<script>alert(1)</script>")),
        None,
        "attendee.firstName",
        id="script-in-first-name",
    ),
    pytest.param(
        _body(canonical(attendee__lastName="Bobby<img src=x onerror=alert(1)>")),
        None,
        "attendee.lastName",
        id="html-in-last-name",
    ),
    pytest.param(
        _body(canonical(attendee__email="<script>alert(1)</script>@x.com")),
        None,
        "attendee.email",
        id="script-in-email",
    ),
    pytest.param(_body(canonical(attendee__email="not-an-email")), None, "attendee.email", id="bad-email"),
    pytest.param(_body(canonical(attendee__email="a@b")), None, "attendee.email", id="email-no-tld"),
    pytest.param(_body(canonical(attendee__email="a..b@x.com")), None, "attendee.email", id="email-double-dot"),
    pytest.param(
        _body(canonical(attendee__email="a" * 95 + "@x.com")), None, "attendee.email", id="email-over-100-chars"
    ),
    pytest.param(_body(canonical(attendee__email=_DELETE)), None, "attendee.email", id="attendee-without-email"),
    pytest.param(_body(canonical(attendee__firstName="   ")), None, "attendee.firstName", id="blank-name"),
    pytest.param(_body(canonical(attendee__firstName=None)), None, "attendee.firstName", id="null-name"),
    pytest.param(_body(canonical(on24EventId="12a")), None, "on24EventId", id="on24-id-letters"),
    pytest.param(_body(canonical(on24EventId=True)), None, "on24EventId", id="on24-id-bool"),
    pytest.param(_body(canonical(on24EventId=1.5)), None, "on24EventId", id="on24-id-float"),
    pytest.param(_body(canonical(on24EventId=-7)), None, "on24EventId", id="on24-id-negative"),
    pytest.param(_body(canonical(on24EventId="0")), None, "on24EventId", id="on24-id-zero"),
    pytest.param(_body(canonical(occurredAt="2025-03-20T16:04:11")), None, "occurredAt", id="naive-occurred-at"),
    pytest.param(_body(canonical(occurredAt="yesterday")), None, "occurredAt", id="bad-occurred-at"),
    pytest.param(_body(canonical(occurredAt=1742486651)), None, "occurredAt", id="epoch-occurred-at"),
    pytest.param(b"[" * 10_000 + b"]" * 10_000, None, "nested too deeply", id="nested-10000-arrays"),
    pytest.param(
        b'{"schema":"webinar-registration/1","attendee":' + b'{"a":' * 10_000 + b"1" + b"}" * 10_001,
        None,
        "nested too deeply",
        id="nested-10000-objects",
    ),
    pytest.param(_body(canonical())[:-1] + b',"x":NaN}', None, "NaN", id="nan-literal"),
    pytest.param(_body(canonical())[:-1] + b',"x":-Infinity}', None, "Infinity", id="infinity-literal"),
    pytest.param(_body(canonical())[:-1] + b',"x":' + b"9" * 5000 + b"}", None, "digits", id="5000-digit-integer"),
    pytest.param(
        _body(canonical())[:-1] + b',"action":"explode"}', None, "action", id="duplicate-key-last-wins-invalid"
    ),
    pytest.param(b'{"schema":"webinar-registration/1","orgId":"\xff\xfe"}', None, "UTF-8", id="invalid-utf8"),
    pytest.param(b'{"orgId":"caf\xc3"}', None, "UTF-8", id="truncated-utf8-sequence"),
    pytest.param(json.dumps(canonical()).encode("utf-16"), None, "UTF-16", id="utf16-with-bom"),
    pytest.param(json.dumps(canonical()).encode("utf-16-le"), None, "UTF-16", id="utf16le-without-bom"),
    pytest.param(
        b'<?xml version="1.0"?><RemoteExecutionContext><script>x</script></RemoteExecutionContext>',
        None,
        "JSON message format",
        id="xml-body",
    ),
    pytest.param(fixture("dataverse_create.json"), "application/msbin1", "JSON message format", id="msbin1"),
    pytest.param(fixture("dataverse_create.json"), "application/xml", "JSON message format", id="xml-content-type"),
    pytest.param(fixture("dataverse_create.json"), "text/html<script>", "JSON message format", id="hostile-ctype"),
    pytest.param(fixture("canonical_cancel.json"), "application/json; charset=utf-16", "charset", id="utf16-charset"),
    pytest.param(_body(canonical(orgId="contoso/prod")), None, "orgId", id="org-id-slash"),
    pytest.param(_body(canonical(orgId="contoso#prod")), None, "orgId", id="org-id-hash"),
    pytest.param(_body(canonical(orgId="..\\..\\etc")), None, "orgId", id="org-id-backslash"),
    pytest.param(_body(canonical(orgId="a?b=c")), None, "orgId", id="org-id-question"),
    pytest.param(_body(canonical(orgId="x" * 65)), None, "orgId", id="org-id-too-long"),
    pytest.param(_body(canonical(orgId="")), None, "orgId", id="org-id-empty"),
    pytest.param(_body(dataverse(PrimaryEntityName="contact")), None, "contact", id="dataverse-wrong-entity"),
    pytest.param(_body(dataverse("Assign")), None, "is not handled", id="dataverse-wrong-message"),
    pytest.param(
        _body(dataverse("Delete", PrimaryEntityName="account")), None, "is not handled", id="dataverse-delete-account"
    ),
    pytest.param(_body(dataverse(MessageName=_DELETE)), None, "MessageName", id="dataverse-no-message-name"),
    pytest.param(_body(dataverse(MessageName=5)), None, "MessageName", id="dataverse-message-name-int"),
    pytest.param(
        _body(dataverse(PrimaryEntityName="<script>alert(1)</script>")),
        None,
        "not handled",
        id="dataverse-script-entity",
    ),
    pytest.param(
        _body(dataverse(PrimaryEntityId=_DELETE, InputParameters=[])),
        None,
        "PrimaryEntityId",
        id="dataverse-no-primary-entity-id",
    ),
    pytest.param(_body(dataverse(PrimaryEntityId="nope")), None, "PrimaryEntityId", id="dataverse-bad-primary-id"),
    pytest.param(
        _body(dataverse(PrimaryEntityId=OTHER_EVT)), None, "different row", id="dataverse-primary-id-mismatch"
    ),
    pytest.param(_body(dataverse(OrganizationId=_DELETE)), None, "OrganizationId", id="dataverse-no-org-id"),
    pytest.param(_body(dataverse(OrganizationId="contoso")), None, "OrganizationId", id="dataverse-org-not-guid"),
    pytest.param(_body(dataverse(InputParameters="x")), None, "InputParameters", id="dataverse-input-not-array"),
    pytest.param(_body(dataverse(InputParameters=[1])), None, "InputParameters[0]", id="dataverse-input-not-pairs"),
    pytest.param(
        _body(dataverse(InputParameters=kv({"Target": "x"}))), None, "InputParameters.Target", id="dataverse-target-str"
    ),
    pytest.param(
        _body(dataverse(OperationCreatedOn="/Date(soon)/")), None, "OperationCreatedOn", id="dataverse-bad-date"
    ),
    pytest.param(
        _body(dataverse(OperationCreatedOn="/Date(999999999999999)/")),
        None,
        "OperationCreatedOn",
        id="dataverse-date-out-of-range",
    ),
    pytest.param(
        _body(dataverse(target={"msevtmgt_eventid": ref("msevtmgt_event", "1; DROP TABLE x")})),
        None,
        "msevtmgt_eventid.Id",
        id="dataverse-bad-event-reference",
    ),
    pytest.param(
        _body(dataverse(target={"msevtmgt_contactid": 42})), None, "msevtmgt_contactid", id="dataverse-contact-int"
    ),
    pytest.param(
        _body(dataverse(PostEntityImages=kv({"PostImage": "x"}))),
        None,
        "PostEntityImages.PostImage",
        id="dataverse-image-str",
    ),
]


@pytest.mark.parametrize(("body", "content_type", "expected"), HOSTILE_BODIES)
def test_malformed_or_hostile_bodies_raise_a_safe_message_error(
    body: bytes, content_type: str | None, expected: str
) -> None:
    with pytest.raises(MessageError) as caught:
        parse_message(body, content_type=content_type)

    error = caught.value
    text = str(error)
    assert isinstance(error, PermanentError)
    assert text and len(text) < 500
    assert text.isprintable(), f"raw control character in {text!r}"
    assert "<script" not in text.lower()
    assert expected in text


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (canonical(attendee__email="nope"), "attendee.email"),
        (canonical(attendee__firstName="<b>Eve</b>"), "attendee.firstName"),
        (canonical(attendee__lastName=7), "attendee.lastName"),
        (canonical(orgId="a/b"), "orgId"),
        (canonical(registrationId="x"), "registrationId"),
        (canonical(on24EventId="x"), "on24EventId"),
        (canonical(occurredAt="x"), "occurredAt"),
        (canonical(schema="webinar-registration/9"), "schema"),
        (dataverse(PrimaryEntityId="x"), "PrimaryEntityId"),
        (dataverse(OrganizationId=None), "OrganizationId"),
    ],
)
def test_errors_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(MessageError) as caught:
        parse_message(dumps(data))

    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_an_oversized_body_is_rejected_before_it_is_decoded_or_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> object:
        raise AssertionError("json.loads must not be called")

    monkeypatch.setattr(json, "loads", explode)

    with pytest.raises(MessageError, match="maximum"):
        parse_message(b"x" * (MAX_BODY_BYTES + 1))


def test_a_body_of_exactly_the_maximum_size_is_parsed() -> None:
    body = dumps(canonical())
    body = body[:-1] + b',"pad":"' + b"p" * (MAX_BODY_BYTES - len(body) - 9) + b'"}'
    assert len(body) == MAX_BODY_BYTES

    assert parse_message(body).action == "register"


def test_a_refused_value_is_never_echoed() -> None:
    hostile = "\u200b<script>" + "A" * 500  # a zero-width space passes the text check but is not printable

    with pytest.raises(MessageError) as caught:
        parse_message(dumps(canonical(registrationId=hostile)))

    assert str(caught.value) == "registrationId: must be a GUID"


def test_a_non_bytes_body_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        parse_message("{}")  # type: ignore[arg-type]


# --- erasure --------------------------------------------------------------------------------------------


def test_a_canonical_forget_needs_no_event_and_no_attendee() -> None:
    data = canonical(action="forget", eventId=_DELETE, attendee=_DELETE, on24EventId=_DELETE)
    command = parse_message(dumps(data))
    assert isinstance(command, RegistrationCommand)
    assert (command.action, command.registration_id, command.crm_event_id) == ("forget", REG, None)


def test_other_canonical_actions_still_need_the_event() -> None:
    with pytest.raises(MessageError) as caught:
        parse_message(dumps(canonical(action="cancel", eventId=_DELETE)))
    assert caught.value.field == "eventId"


def test_a_dataverse_delete_of_a_registration_is_a_forget() -> None:
    data = dataverse("Delete")
    data["InputParameters"] = kv({"Target": {"Id": REG, "LogicalName": "msevtmgt_eventregistration"}})
    command = parse_message(dumps(data))
    assert isinstance(command, RegistrationCommand)
    assert (command.action, command.registration_id, command.source) == ("forget", REG, "dataverse")
    assert command.occurred_at is not None


def test_a_dataverse_delete_of_a_contact_erases_the_person_with_the_pre_image_email() -> None:
    contact = "c4d5e6f7-0819-4a2b-9c3d-4e5f60718293"
    data = dataverse("Delete", PrimaryEntityName="contact", PrimaryEntityId=contact.upper())
    data["InputParameters"] = kv({"Target": {"Id": contact, "LogicalName": "contact"}})
    data["PreEntityImages"] = kv({"PreImage": {"Attributes": kv({"emailaddress1": "Ada@Example.com"})}})
    command = parse_message(dumps(data))
    assert isinstance(command, ContactErasure)
    assert (command.org_id, command.contact_id, command.email) == (ORG, contact, "Ada@example.com")  # normal form


def test_a_contact_pre_image_with_a_malformed_email_is_ignored_not_fatal() -> None:
    data = dataverse("Delete", PrimaryEntityName="contact")
    data["InputParameters"] = []
    data["PreEntityImages"] = kv({"PreImage": {"Attributes": kv({"emailaddress1": "not an email\r\n"})}})
    command = parse_message(dumps(data))
    assert isinstance(command, ContactErasure) and command.email is None


def test_a_command_parked_by_an_earlier_release_reads_and_writes_the_same_json() -> None:
    """Parked messages store the command as JSON under the first release's names; the renamed fields keep them."""
    stored = (
        '{"org_id":"org-1","action":"register","registration_id":"' + REG + '","event_id":"' + EVT + '",'
        '"contact_id":null,"on24_event_id":"4471234","attendee":{"email":"a@example.com","first_name":"A",'
        '"last_name":"B","company":null,"job_title":null,"country":null,"work_phone":null,"city":null,'
        '"state":null,"zip":null,"address_street1":null},"occurred_at":null,"source":"canonical",'
        '"size_exceeded":false,"reason":null}'
    )
    command = RegistrationCommand.model_validate_json(stored)
    assert (command.crm_event_id, command.webinar_id) == (EVT, "4471234")
    assert command.person is not None and command.person.email == "a@example.com"
    assert command.model_dump_json() == stored
