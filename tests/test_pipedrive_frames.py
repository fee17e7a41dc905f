"""Pure: page JSON to remote frames, and custom fields found by name."""

from __future__ import annotations

import polars as pl
import pytest

from sync_job.errors import ConfigError
from sync_job.pipedrive.fields import create_field_body, match_custom_field
from sync_job.pipedrive.frames import default_schema
from sync_job.pipedrive.lookup import SKEW_WITH_DATE, SKEW_WITHOUT_DATE, find_external_id, reread_params, server_since

CODE = "a" * 40


def test_person_page_has_the_contract_columns_and_the_external_id() -> None:
    records = [
        {"id": 1, "name": "Ann Lee", "update_time": "2026-01-01T00:00:00Z", "custom_fields": {CODE: "17", "x": 1}},
        {"id": 2, "name": "Bo", "update_time": "2026-01-02T00:00:00Z", "custom_fields": {}, "emails": []},
        {"id": 3, "name": "Cy", "update_time": "2026-01-03T00:00:00Z"},
    ]
    schema = default_schema("person", CODE)
    frame = schema.frame(records)
    assert frame.schema == pl.Schema(schema.remote_columns())
    assert frame["name"].to_list() == ["Ann Lee", "Bo", "Cy"]
    assert frame["external_id"].to_list() == ["17", None, None]


def test_deal_page_accepts_integral_values_and_numeric_custom_values() -> None:
    records = [
        {"id": 9, "title": "T", "value": 200, "currency": "EUR", "person_id": 4, "status": "won",
         "update_time": "u", "custom_fields": {CODE: 1001}},
        {"id": 10, "title": "U", "value": 2.5, "currency": "EUR", "person_id": None, "status": "open",
         "update_time": "u", "custom_fields": None},
    ]  # fmt: skip
    schema = default_schema("deal", CODE)
    frame = schema.frame(records)
    assert frame.schema == pl.Schema(schema.remote_columns())
    assert frame["person_id"].to_list() == [4, None]
    assert frame["value"].to_list() == [200.0, 2.5]
    assert frame["external_id"].to_list() == ["1001", None]


def test_an_empty_page_is_an_empty_frame_with_the_schema() -> None:
    schema = default_schema("deal", CODE)
    assert schema.frame([]).schema == pl.Schema(schema.remote_columns())


def _field(name: str, code: str, custom: bool = True) -> dict[str, object]:
    return {"field_name": name, "field_code": code, "field_type": "varchar", "is_custom_field": custom}


def test_field_is_matched_by_name_among_custom_fields_only() -> None:
    items = [_field("CustomerID", "name", custom=False), _field("CustomerID", CODE), _field("Other", "b" * 40)]
    assert match_custom_field(items, "CustomerID", "person") == CODE
    assert match_custom_field(items, "Missing", "person") is None


def test_an_ambiguous_name_names_every_code() -> None:
    items = [_field("OrderID", "a" * 40), _field("OrderID", "b" * 40)]
    with pytest.raises(ConfigError, match=r"deals custom field name 'OrderID' is ambiguous.*aaaa.*, b{40}"):
        match_custom_field(items, "OrderID", "deal")


def test_a_missing_field_is_created_as_varchar() -> None:
    assert create_field_body("OrderID") == {"field_name": "OrderID", "field_type": "varchar"}


def test_the_reread_starts_before_the_post_in_the_servers_clock() -> None:
    """The server's Date says it runs 100 s ahead of us: the re-read starts 5 s before the POST in its clock."""
    since = server_since(1_000_000.0, "Mon, 12 Jan 1970 13:48:20 GMT", received_at=1_000_000.0)
    assert since == pytest.approx(1_000_000.0 + 100.0 - SKEW_WITH_DATE)
    assert server_since(1_000_000.0, None, None) == 1_000_000.0 - SKEW_WITHOUT_DATE
    assert server_since(1_000_000.0, "not a date", 5.0) == 1_000_000.0 - SKEW_WITHOUT_DATE


def test_reread_params_list_oldest_updates_first() -> None:
    assert reread_params(0.0, CODE) == {
        "updated_since": "1970-01-01T00:00:00Z",
        "sort_by": "update_time",
        "sort_direction": "asc",
        "custom_fields": CODE,
    }


def test_the_external_id_is_matched_as_text() -> None:
    records = [{"id": 1, "custom_fields": {CODE: 41}}, {"id": 2, "custom_fields": {CODE: "42"}}, {"id": 3}]
    assert find_external_id(records, CODE, "42") == 2
    assert find_external_id(records, CODE, "41") == 1
    assert find_external_id(records, CODE, "None") is None
