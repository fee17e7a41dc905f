"""Plan rows to Pipedrive v2 request bodies (RecordSchema.create_body / patch_body), for the default mapping."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest

from sync_job.diff import diff, diff_deals
from sync_job.errors import RowError
from sync_job.pipedrive.frames import default_schema
from sync_job.pipedrive.kinds import money

CODE = "d4de1c1518b4531717c676029a45911c340390a6"
PERSON = default_schema("person", CODE, "varchar", "CustomerID")
DEAL = default_schema("deal", CODE, "varchar", "OrderID")


def person_body(row: dict[str, Any]) -> dict[str, Any]:
    return PERSON.create_body(row)


def deal_body(row: dict[str, Any], person_id: int | None) -> dict[str, Any]:
    return DEAL.create_body(row, person_id)


def patch_body(entity: str, row: dict[str, Any], changed: list[str]) -> dict[str, Any]:
    return (PERSON if entity == "person" else DEAL).patch_body(row, changed, row.get("person_id"))


def test_person_body_has_name_and_external_id_custom_field() -> None:
    body = person_body({"external_id": "42", "name": "Zoë Ünal"})
    assert body == {"name": "Zoë Ünal", "custom_fields": {CODE: "42"}}
    assert json.loads(json.dumps(body, ensure_ascii=False)) == body


def test_deal_body_is_json_native_with_value_rounded_to_the_cent() -> None:
    row = {"external_id": "100", "title": "Ünal Zoë", "value": 12.345, "currency": "EUR", "person_external_id": "7"}
    body = deal_body(row, 70)
    assert body == {
        "title": "Ünal Zoë",
        "value": 12.35,
        "currency": "EUR",
        "person_id": 70,
        "custom_fields": {CODE: "100"},
    }
    assert type(body["value"]) is float
    assert type(body["person_id"]) is int


def test_deal_body_without_a_person_id_is_a_row_error_naming_deal_and_customer() -> None:
    row = {"external_id": "100", "title": "t", "value": 1.0, "currency": "USD", "person_external_id": "7"}
    with pytest.raises(RowError, match="deal 100: person for customer 7 has no Pipedrive id"):
        deal_body(row, None)


def test_patch_body_sends_only_changed_fields() -> None:
    row = {"external_id": "1", "id": 9, "title": "New", "value": 5.0, "currency": "USD", "person_external_id": "3"}
    assert patch_body("deal", row, ["title"]) == {"title": "New"}
    assert patch_body("deal", row, ["value", "currency"]) == {"value": 5.0, "currency": "USD"}
    assert patch_body("deal", row, []) == {}


def test_patch_body_sends_the_resolved_person_id_for_a_changed_link() -> None:
    row = {"external_id": "1", "title": "t", "person_external_id": "3", "person_id": 30}
    assert patch_body("deal", row, ["person_external_id"]) == {"person_id": 30}


def test_patch_body_changed_link_without_resolved_person_is_a_row_error() -> None:
    row = {"external_id": "1", "title": "t", "person_external_id": "3", "person_id": None}
    with pytest.raises(RowError, match="deal 1: person for customer 3"):
        patch_body("deal", row, ["person_external_id"])


def test_patch_body_person_name_keeps_unicode() -> None:
    assert patch_body("person", {"external_id": "5", "name": "Jürgen Müller"}, ["name"]) == {"name": "Jürgen Müller"}


def test_patch_body_rejects_a_column_with_no_api_field() -> None:
    with pytest.raises(ValueError, match="no API field for planned column 'title'"):
        patch_body("person", {"external_id": "5", "title": "x"}, ["title"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [(12.345, 12.35), (12.344, 12.34), (10, 10.0), (-2.005, -2.01), (0.1 + 0.2, 0.3), (None, 0.0), (float("nan"), 0.0)],
)
def test_money_rounds_half_away_from_zero_to_the_cent(value: float | None, expected: float) -> None:
    assert money(value) == expected


def test_a_sent_value_reads_back_as_unchanged() -> None:
    """What the payload sends is what the diff considers equal: a synced deal is not updated again."""
    values = [12.345, 2.675, 0.125, 1e9 + 0.005, 19.99, 0.1 + 0.2, 7.0]
    ids = [str(i) for i in range(len(values))]
    want = pl.DataFrame({"external_id": ids, "value": values})
    have = pl.DataFrame({"id": range(len(values)), "external_id": ids, "value": [money(v) for v in values]})
    plan = diff(want, have, compare=["value"], entity="deal")
    assert plan.updates.height == 0
    assert plan.unchanged == len(values)


def test_update_rows_from_the_diff_become_patch_bodies_of_their_changed_fields() -> None:
    want = pl.DataFrame(
        {
            "external_id": ["1", "2", "3"],
            "title": ["Lee Ann", "Ray Bob", "Ünal Zoë"],
            "value": [10.0, 20.0, 30.0],
            "currency": ["USD"] * 3,
            "person_external_id": ["5", "5", "6"],
        }
    )
    have = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "title": ["Lee Ann", "Ray  Bob", "Unal Zoe"],
            "value": [10.0, 20.0, 29.99],
            "currency": ["USD"] * 3,
            "person_id": [50, 50, 50],
            "external_id": ["1", "2", "3"],
        }
    )
    persons = pl.DataFrame({"id": [50, 60], "name": ["P", "Q"], "external_id": ["5", "6"]})
    plan = diff_deals(want, have, persons)
    rows = plan.updates.with_columns(person_id=pl.lit(60)).to_dicts()
    bodies = [patch_body("deal", row, row["changed"]) for row in rows]
    assert bodies == [{"title": "Ünal Zoë", "value": 30.0, "person_id": 60}]
