"""Issue 21, the pure parts: the attendance detail the ON24 adapter fills, the mapping's values both ways, and its
registration form within ON24's limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.fieldmap import FieldMapping, as_text
from shared.metrics.checkins import checkin_fields, index_version, metrics_hash
from shared.on24 import Attendee
from shared.on24._forms import registrant_form
from shared.on24.provider import MAPPABLE_FIELDS, attendance_of, registrant_fields
from shared.store.ledger import LedgerEntry
from shared.webinars import AttendanceRow, Person

FIRST = datetime(2026, 11, 20, 10, 2, tzinfo=UTC)
REG = "3f2a9c1e-5b7d-4e8a-9c0b-1d2e3f4a5b6c"


def row(**on24_fields: Any) -> AttendanceRow:
    return attendance_of(Attendee(**on24_fields))


def mapping(**body: Any) -> FieldMapping:
    return FieldMapping.model_validate(body, context={"targets": MAPPABLE_FIELDS})


def test_the_adapter_fills_every_attendance_field_on24_returns_keeping_live_and_on_demand_apart() -> None:
    attended = row(
        liveminutes=40, cumulativeliveminutes=45, archiveminutes="12", askedquestions=2, answeredpolls=3,
        answeredsurveys="1", resourcesdownloaded=4, engagementscore="7.5", firstliveactivity=FIRST,
        lastliveactivity=FIRST + timedelta(minutes=45), firstarchiveactivity=FIRST + timedelta(days=1),
        lastarchiveactivity=FIRST + timedelta(days=1, minutes=12),
    )  # fmt: skip
    assert (attended.live_minutes, attended.on_demand_minutes) == (45, 12)
    assert (attended.questions, attended.polls, attended.surveys, attended.resources) == (2, 3, 1, 4)
    assert attended.engagement_score == 7.5 and attended.attendance == "both"
    assert attended.first_activity == FIRST and attended.last_activity == FIRST + timedelta(days=1, minutes=12)


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"liveminutes": 3}, "live"),
        ({"archiveminutes": 9}, "on_demand"),
        ({"liveminutes": 0, "firstliveactivity": FIRST}, "live"),  # under a minute, but there
        ({"liveminutes": 1, "archiveminutes": 1}, "both"),
        ({"askedquestions": 1}, "none"),
        ({}, "none"),
    ],
)
def test_attendance_status_is_live_on_demand_both_or_none(fields: dict[str, Any], status: str) -> None:
    assert row(**fields).attendance == status
    assert row(**fields).engagement_score is None


def test_the_standard_check_in_columns_do_not_change_with_a_mapping_and_the_mapping_adds_its_own() -> None:
    entry = LedgerEntry(org_id="org", registration_id=REG, crm_event_id=None, contact_id=None)
    attended = row(liveminutes=40, archiveminutes=10, askedquestions=2, answeredpolls=3, engagementscore=8.25)
    plain = checkin_fields(entry, attended)
    to_crm = [
        {"value": "liveMinutes", "table": "msevtmgt_checkin", "column": "new_live"},
        {"value": "engagementScore", "table": "msevtmgt_checkin", "column": "new_score"},
        {"value": "attendanceStatus", "table": "msevtmgt_eventregistration", "column": "new_status"},
    ]
    mapped = mapping(toCrm=to_crm)
    fields = checkin_fields(entry, attended, mapped)
    assert {k: v for k, v in fields.items() if k in plain} == plain
    assert (fields["new_live"], fields["new_score"]) == (40, 8.25) and "new_status" not in fields
    assert mapped.crm_values(attended)[1] == {"new_status": "both"}
    assert metrics_hash(plain) != metrics_hash(fields, {"new_status": "both"}, mapped.fingerprint)
    other = mapping(toCrm=to_crm[:2])
    assert mapped.fingerprint != other.fingerprint and index_version(mapped) != index_version(other)
    assert index_version(FieldMapping()) == 2


def test_provider_fields_come_from_the_rows_read_or_constants_as_one_line_text() -> None:
    mapped = mapping(toProvider=[
        {"field": "std1", "source": "contact", "column": "new_segment"},
        {"field": "std2", "source": "registration", "column": "new_seats"},
        {"field": "std3", "source": "registration", "column": "new_vip"},
        {"field": "std4", "source": "contact", "column": "new_empty"},
        {"field": "partnerref", "source": "constant", "value": "crm"},
    ])  # fmt: skip
    assert mapped.columns_of("contact") == ["new_segment", "new_empty"]
    contact = {"new_segment": "Nord-West\r\nПетров", "new_empty": " "}  # noqa: RUF001 - a Russian name
    extra = mapped.provider_fields({"new_seats": 2.50, "new_vip": True}, contact)
    assert extra == (("std1", "Nord-West Петров"), ("std2", "2.5"), ("std3", "Yes"), ("partnerref", "crm"))
    assert mapped.provider_fields(None, None) == (("partnerref", "crm"),), "a canonical message reads no CRM row"
    assert as_text(None) is None and as_text(0) == "0"


def test_the_registration_form_takes_the_mapped_fields_within_on24_limits_but_never_the_key_fields() -> None:
    extra = (("jobtitle", "Geschäftsführer"), ("std10", "ä" * 150), ("email", "x@evil.example"), ("std5", "=1+2"))
    person = Person(email="jorg.muller@example.de", first_name="Jörg", last_name="Müller", job_title="CTO", extra=extra)
    form = registrant_form(registrant_fields(person, REG))
    assert form["jobtitle"] == "Geschäftsführer" and form["std10"] == "ä" * 100
    assert form["std5"] == "'=1+2", "a CRM value is never a formula in ON24's exports"
    assert form["email"] == "jorg.muller@example.de" and form["exteventusercd"] == REG
    assert "email" not in MAPPABLE_FIELDS and "exteventusercd" not in MAPPABLE_FIELDS


def test_a_stored_mapping_reads_back_the_same_and_the_empty_one_is_nothing() -> None:
    mapped = mapping(noShow={"column": "new_noshow", "value": 100000001},
                     toProvider=[{"field": "std1", "source": "constant", "value": "Åsa"}])  # fmt: skip
    assert FieldMapping.from_json(mapped.to_json()) == mapped
    assert FieldMapping.from_json("") == FieldMapping() and not FieldMapping() and FieldMapping().fingerprint == ""
    assert mapped.no_show is not None and mapped.no_show.kind == "option"
