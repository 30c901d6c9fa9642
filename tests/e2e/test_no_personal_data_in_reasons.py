# The fixtures env and crm come from the adversity tests (same org, webinars and short timing): their import
# is how pytest finds them (F401) and the parameters that share their names are injections (F811).
# ruff: noqa: F401, F811
"""A reason names the field and the rule, never a value that could hold personal data: messages whose every field
holds an email or a name are refused, and neither the kept reason, the status route, an admin answer nor any log
record quotes them (the suite-wide log scan, ``tests/logscan.py``, sees Unicode addresses too).

Real parts: Azurite, the Key Vault, ON24 and Dataverse stand-ins, the function folders.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from ForgetAttendee import main as forget_main
from RegisterAttendee import main as register_main
from shared.app import get_app
from StoreCredentials import main as store_main
from tests.builders import CrmOrg, canonical_body, dataverse_body
from tests.conftest import credentials_body
from tests.e2e.test_pull_metrics import run_timer
from tests.e2e.test_registration_adversity import ORG, T0, WEBINAR, crm, deliver_until_done, env, row
from tests.e2e.test_webinar_status import status
from tests.functions import admin_request, dataverse_properties, http_request, json_body, service_bus_message

EMAIL = "ann.smith@x.example"
NAME = "Jörg Müller"
CYRILLIC = "Иван Петров"
NORDIC = "åsa.ødegård@företag.se"
PERSONAL = (EMAIL, NAME, CYRILLIC, NORDIC, "ann.smith", "Jörg", "Иван", "ødegård", "företag")


def canonical(**fields: Any) -> dict[str, Any]:
    body = canonical_body(
        org_id=ORG, registration_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()), webinar_id=str(WEBINAR),
        attendee={"email": "anna.schmidt@firma.de", "firstName": "Anna", "lastName": "Schmidt"}, occurred_at=T0,
    )  # fmt: skip
    body.update(fields)
    return body


def attendee(**fields: Any) -> dict[str, Any]:
    return canonical(attendee={"email": "anna.schmidt@firma.de", "firstName": "Anna", "lastName": "Schmidt", **fields})


def dataverse(change: Callable[[dict[str, Any]], None]) -> bytes:
    context = json.loads(dataverse_body(org_id=ORG, registration_id=str(uuid.uuid4()), event_id=str(uuid.uuid4())))
    change(context)
    return json.dumps(context, ensure_ascii=False).encode("utf-8")


def target(context: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = context["InputParameters"][0]["value"]
    return value


def attribute(context: dict[str, Any], key: str, value: Any) -> None:
    attributes = target(context)["Attributes"]
    attributes[:] = [pair for pair in attributes if pair["key"] != key] + [{"key": key, "value": value}]


MESSAGES: list[Any] = [
    pytest.param(canonical(registrationId=EMAIL), None, id="registrationId"),
    pytest.param(canonical(eventId=NAME), None, id="eventId"),
    pytest.param(canonical(on24EventId=CYRILLIC), None, id="on24EventId"),
    pytest.param(canonical(occurredAt=NORDIC), None, id="occurredAt"),
    pytest.param(canonical(action=EMAIL), None, id="action"),
    pytest.param(canonical(schema="webinar-registration/" + EMAIL), None, id="schema-version"),
    pytest.param(canonical(schema=NAME), None, id="schema"),
    pytest.param(attendee(email=NAME), None, id="attendee.email-a-name"),
    pytest.param(attendee(email="åsa..ødegård@företag.se"), None, id="attendee.email-malformed"),
    pytest.param(attendee(email="=ødegård@företag.se"), None, id="attendee.email-formula"),
    pytest.param(attendee(email="åsa.ødegård@företag.se\u202e"), None, id="attendee.email-bidi"),
    pytest.param(attendee(firstName="<Иван Петров>"), None, id="attendee.firstName"),
    pytest.param(attendee(lastName=["Jörg", "Müller"]), None, id="attendee.lastName"),
    pytest.param(canonical(), f"application/{EMAIL}", id="content-type"),
    pytest.param(canonical(), f"application/json; charset={NAME}", id="charset"),
    pytest.param(dataverse(lambda c: c.update(MessageName=EMAIL, PrimaryEntityName=NAME)), None, id="dv-message"),
    pytest.param(dataverse(lambda c: c.update(PrimaryEntityName=CYRILLIC)), None, id="dv-entity"),
    pytest.param(dataverse(lambda c: target(c).update(Id=EMAIL)), None, id="dv-target-id"),
    pytest.param(dataverse(lambda c: target(c).update(LogicalName=NAME)), None, id="dv-logical-name"),
    pytest.param(dataverse(lambda c: c.update(PrimaryEntityId=NORDIC)), None, id="dv-primary-id"),
    pytest.param(dataverse(lambda c: c.update(OperationCreatedOn=NAME)), None, id="dv-date"),
    pytest.param(dataverse(lambda c: c.update(OperationCreatedOn="/Date(99999999999999999)/")), None, id="dv-range"),
    pytest.param(dataverse(lambda c: attribute(c, "msevtmgt_eventid", {"Id": EMAIL})), None, id="dv-reference"),
]


@pytest.mark.parametrize(("body", "content_type"), MESSAGES)
def test_a_refused_message_keeps_a_reason_naming_the_field_never_the_value(
    env: dict[str, str], caplog: pytest.LogCaptureFixture, body: Any, content_type: str | None
) -> None:
    properties = dataverse_properties("Create") if isinstance(body, bytes) else None
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode("utf-8")
    with caplog.at_level(logging.DEBUG):
        register_main(
            service_bus_message(raw, content_type=content_type or "application/json", application_properties=properties)
        )
        run_timer()  # counts the org's rejected messages for the status route
        code, answer = status(ORG)

    [kept] = list(get_app().rejected.list())
    assert kept.body == raw, "the body itself is kept whole, for the replay tool"
    assert kept.reason and ":" in kept.reason, "the reason names the field (or the body) and the rule"
    assert code == 200 and answer["rejectedMessages"]["latest"]["reason"] == kept.reason
    for where, text in (("reason", kept.reason), ("status", json.dumps(answer, ensure_ascii=False)),
                        ("logs", caplog.text)):  # fmt: skip
        leaked = [value for value in PERSONAL if value.casefold() in text.casefold()]
        assert not leaked, f"{where} quotes {leaked}: {text[:300]}"


def test_a_crm_contact_with_a_bad_address_fails_naming_the_column_never_the_value(
    crm: CrmOrg, caplog: pytest.LogCaptureFixture
) -> None:
    contact = crm.contact("Jörg", "Müller", "Jörg Müller <jörg.müller@firma.de>")  # a display name, not an address
    reg = crm.registration(contact)
    with caplog.at_level(logging.DEBUG):
        body = dataverse_body(org_id=ORG, registration_id=reg)
        deliver_until_done(body, application_properties=dataverse_properties("Create"))
    entry = row(reg)
    assert entry.state == "failed" and entry.reason and "emailaddress1" in entry.reason
    for text in (entry.reason, caplog.text):
        assert "jörg" not in text.casefold() and "firma.de" not in text and "müller" not in text.casefold()


@pytest.mark.parametrize(
    "body", [{"email": NAME}, {"email": "åsa..ødegård@företag.se"}, {"email": EMAIL, EMAIL: NAME}], ids=str
)
def test_admin_answers_to_bad_input_never_quote_it(env: dict[str, str], body: dict[str, Any]) -> None:
    forget = forget_main(admin_request("POST", "orgs/{orgId}/webinar/forget", {"orgId": ORG}, body))
    store = store_main(http_request("PUT", ORG, {**credentials_body(), **body}))
    assert store.status_code == 400
    for response in (forget, store):  # a forget may search for text it cannot parse: an address kept long ago
        text = json.dumps(json_body(response), ensure_ascii=False)
        assert not [value for value in PERSONAL if value.casefold() in text.casefold()], text
