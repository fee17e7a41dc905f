"""Pure: which field types hold an external id, the id's JSON value in each, and a stored value read back as id text."""

from __future__ import annotations

import pytest

from sync_job.errors import ConfigError, RowError
from sync_job.pipedrive.field_types import (
    ID_TYPES,
    IdField,
    NotConvertible,
    canonical,
    check_id_type,
    to_api,
    unconvertible,
)
from sync_job.pipedrive.fields import match_id_field
from sync_job.pipedrive.frames import default_schema
from sync_job.pipedrive.lookup import find_external_id

CODE = "c" * 40

# (field type, source id, JSON value sent)
TO_API = [
    ("varchar", "42", "42"),
    ("text", "42", "42"),
    ("varchar_auto", "42", "42"),
    ("double", "42", 42),
    ("double", "-3", -3),
    ("double", "0", 0),
    ("double", str(2**53), 2**53),
]


@pytest.mark.parametrize(("field_type", "external_id", "sent"), TO_API)
def test_an_id_is_sent_as_the_json_value_its_field_type_takes(field_type: str, external_id: str, sent: object) -> None:
    value = to_api(field_type, external_id)
    assert value == sent
    assert type(value) is type(sent)


@pytest.mark.parametrize(("field_type", "external_id", "sent"), TO_API)
def test_what_is_sent_reads_back_as_the_source_id(field_type: str, external_id: str, sent: object) -> None:
    assert canonical(field_type, sent) == external_id


@pytest.mark.parametrize(
    ("field_type", "external_id", "reason"),
    [
        ("double", str(2**53 + 1), "exactly only up to"),
        ("double", "A-17", "numbers only"),
        ("double", "007", "read back as the number 7"),
        ("double", "+7", "read back as the number 7"),
        ("varchar", "9" * 256, "at most 255 characters"),
    ],
)
def test_an_id_a_type_cannot_hold_exactly_is_not_convertible(field_type: str, external_id: str, reason: str) -> None:
    with pytest.raises(NotConvertible, match=reason):
        to_api(field_type, external_id)


def test_text_holds_long_ids_that_varchar_cannot() -> None:
    assert to_api("text", "9" * 256) == "9" * 256


@pytest.mark.parametrize(
    ("field_type", "stored", "read"),
    [
        ("double", 7, "7"),
        ("double", 7.0, "7"),
        ("double", "7", "7"),
        ("double", "7.0", "7"),
        ("double", 7.5, "7.5"),
        ("double", "n/a", "n/a"),
        ("double", None, None),
        ("varchar", "7", "7"),
        ("varchar", "7.0", "7.0"),  # text is text: "7.0" is another id than "7"
        ("text", 7, "7"),
        ("varchar", None, None),
    ],
)
def test_a_stored_value_reads_back_as_id_text_after_the_types_normalisation(
    field_type: str, stored: object, read: str | None
) -> None:
    assert canonical(field_type, stored) == read


@pytest.mark.parametrize("field_type", sorted(ID_TYPES))
def test_id_capable_types_pass_the_check(field_type: str) -> None:
    check_id_type("persons", "CustomerID", field_type)


@pytest.mark.parametrize(
    "field_type", ["enum", "set", "date", "daterange", "monetary", "address", "user", "org", "people", "phone", "time"]
)
def test_a_type_that_cannot_hold_an_id_is_a_one_line_config_error_naming_field_and_type(field_type: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_id_type("deals", "OrderID", field_type)
    message = str(info.value)
    assert message.startswith(f"the deals custom field 'OrderID' has type '{field_type}', which cannot hold an id")
    assert "\n" not in message


def test_the_id_field_is_matched_with_its_type_and_a_wrong_type_is_refused() -> None:
    items = [
        {"field_name": "CustomerID", "field_code": CODE, "field_type": "double", "is_custom_field": True},
        {"field_name": "Stage", "field_code": "d" * 40, "field_type": "enum", "is_custom_field": True},
    ]
    assert match_id_field(items, "CustomerID", "person") == IdField(CODE, "CustomerID", "double")
    assert match_id_field(items, "Missing", "person") is None
    with pytest.raises(ConfigError, match="'Stage' has type 'enum'"):
        match_id_field(items, "Stage", "person")


def test_a_numeric_id_field_reads_into_the_frame_as_id_text() -> None:
    records = [
        {"id": 1, "name": "A", "update_time": "u", "custom_fields": {CODE: 17}},
        {"id": 2, "name": "B", "update_time": "u", "custom_fields": {CODE: 18.0}},
        {"id": 3, "name": "C", "update_time": "u", "custom_fields": {CODE: None}},
    ]
    assert default_schema("person", CODE, "double").frame(records)["external_id"].to_list() == ["17", "18", None]


def test_the_lost_create_re_read_finds_an_id_stored_as_a_number() -> None:
    records = [{"id": 5, "custom_fields": {CODE: 41.0}}, {"id": 6, "custom_fields": {CODE: 42.0}}]
    assert find_external_id(records, CODE, "42", "double") == 6
    assert find_external_id(records, CODE, "42", "varchar") is None  # "42.0" is not "42" in a text field


def test_bodies_carry_the_id_in_the_fields_type() -> None:
    schema = default_schema("person", CODE, "double", "CustomerID")
    assert schema.create_body({"external_id": "42", "name": "Ann"}) == {"name": "Ann", "custom_fields": {CODE: 42}}
    assert schema.patch_body({"external_id": "42"}, ["external_id"]) == {"custom_fields": {CODE: 42}}


def test_an_id_the_field_cannot_hold_is_a_row_error_naming_the_row_the_field_and_the_value() -> None:
    schema = default_schema("person", CODE, "double", "CustomerID")
    big = str(2**53 + 1)
    with pytest.raises(RowError) as info:
        schema.create_body({"external_id": big, "name": "Ann"})
    message = str(info.value)
    assert message.startswith(f"person {big}: the custom field 'CustomerID' (double) cannot hold the id '{big}'")


def test_the_plan_note_counts_the_ids_a_field_cannot_hold_and_names_the_first() -> None:
    field = IdField(CODE, "OrderID", "double")
    assert unconvertible(field, ["1", "2"]) is None
    assert unconvertible(field, ["1", str(2**60), "007"]) == (
        f"2 id(s) cannot be held by the custom field 'OrderID' (double), e.g. '{2**60}': those records will fail"
    )
