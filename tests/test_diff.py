"""Tests for sync_job.diff: desired frames, the diff itself, person links, estimates and the plan summary."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest

from sync_job.destinations.base import EntityPlan, Plan
from sync_job.diff import (
    DEAL_COMPARE,
    desired_deals,
    desired_persons,
    diff,
    diff_deals,
    diff_persons,
    estimate,
    person_id_map,
    plan_summary,
    remote_deals_with_person_keys,
    resolve_person_ids,
)
from sync_job.errors import DataError


def persons(ids: list[str], names: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame({"external_id": ids, "name": names}, schema={"external_id": pl.Utf8, "name": pl.Utf8})


def remote_persons(ids: list[int], ext: list[str | None], names: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {"id": ids, "name": names, "external_id": ext, "update_time": ["2026-01-01 00:00:00"] * len(ids)},
        schema={"id": pl.Int64, "name": pl.Utf8, "external_id": pl.Utf8, "update_time": pl.Utf8},
    )


def deals(ext: list[str], titles: list[str], values: list[float], people: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "external_id": ext,
            "title": titles,
            "value": values,
            "currency": ["USD"] * len(ext),
            "person_external_id": people,
        }
    )


def remote_deals(
    ids: list[int], ext: list[str | None], titles: list[str], values: list[float | None], people: list[int]
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ids,
            "title": titles,
            "value": values,
            "currency": ["USD"] * len(ids),
            "person_id": people,
            "status": ["open"] * len(ids),
            "update_time": ["2026-01-01 00:00:00"] * len(ids),
            "external_id": ext,
        },
        schema_overrides={"id": pl.Int64, "value": pl.Float64, "person_id": pl.Int64, "external_id": pl.Utf8},
    )


def test_desired_persons_name_is_first_then_last_and_key_is_customer_id_text() -> None:
    customers = pl.DataFrame(
        {"id": [1, 2, 3], "first_name": ["Zoë", "Bob", "Ann"], "last_name": ["Ünal", None, " Lee "]}
    )
    out = desired_persons(customers.lazy())
    assert out.to_dicts() == [
        {"external_id": "1", "name": "Zoë Ünal"},
        {"external_id": "2", "name": "Bob"},
        {"external_id": "3", "name": "Ann Lee"},
    ]


def test_desired_persons_accepts_customer_id_column() -> None:
    customers = pl.DataFrame({"customer_id": [7], "first_name": ["Li"], "last_name": ["Wang"]})
    assert desired_persons(customers).to_dicts() == [{"external_id": "7", "name": "Li Wang"}]


def test_desired_deals_maps_combined_columns_and_configured_currency() -> None:
    combined = pl.DataFrame(
        {
            "order_id": [10, 11, 12],
            "customer_id": [1, 1, 2],
            "first_name": ["Ann", "Ann", "Bob"],
            "last_name": ["Lee", "Lee", "Ray"],
            "title": ["Lee Ann", "Lee Ann", "Ray Bob"],
            "order_date": [date(2024, 1, 1)] * 3,
            "status": ["completed"] * 3,
            "payment_count": [1, 2, 0],
            "amount_cents": [1234, 500, 0],
            "value": [12.34, 5.0, 0.0],
        }
    )
    out = desired_deals(combined.lazy(), "EUR")
    assert out.columns == ["external_id", "title", "value", "currency", "person_external_id"]
    assert out.row(0) == ("10", "Lee Ann", 12.34, "EUR", "1")
    assert out["person_external_id"].to_list() == ["1", "1", "2"]


def test_diff_splits_creates_updates_and_unchanged() -> None:
    want = persons(["1", "2", "3"], ["Ann Lee", "Bob Ray", "Zoë Ünal"])
    have = remote_persons([10, 11], ["1", "2"], ["Ann Lee", "Bob Rae"])
    plan = diff_persons(want, have)
    assert plan.creates.to_dicts() == [{"external_id": "3", "name": "Zoë Ünal"}]
    assert plan.updates.columns == ["external_id", "id", "name", "old_name", "changed"]
    assert plan.updates.to_dicts() == [
        {"external_id": "2", "id": 11, "name": "Bob Ray", "old_name": "Bob Rae", "changed": ["name"]}
    ]
    assert (plan.unchanged, plan.orphans, plan.duplicates.height, plan.writes) == (1, 0, 0, 2)


@pytest.mark.parametrize(
    ("desired", "remote", "differs"),
    [
        (12.345, 12.35, False),  # half a cent rounds up, as the payload sends it
        (10.0, 10.0, False),
        (12.344, 12.35, True),
        (0.1 + 0.2, 0.3, False),  # float noise below a cent
        (0.0, None, False),  # Pipedrive's missing value is 0
        (100.0, 100.01, True),
    ],
)
def test_money_is_compared_to_the_cent(desired: float, remote: float | None, differs: bool) -> None:
    want = deals(["1", "2", "3"], ["a", "b", "c"], [desired, 1.0, 2.0], ["5", "5", "5"])
    have = remote_deals([1, 2, 3], ["1", "2", "3"], ["a", "b", "c"], [remote, 1.0, 2.0], [50, 50, 50])
    plan = diff_deals(want, have, remote_persons([50], ["5"], ["P"]))
    assert plan.updates["changed"].to_list() == ([["value"]] if differs else [])
    assert plan.unchanged == (2 if differs else 3)


def test_integer_and_float_money_columns_compare_equal() -> None:
    """10 (an Int64 column) and 10.0 are the same amount."""
    want = pl.DataFrame({"external_id": ["1", "2", "3"], "value": [10, 20, 30]})
    have = pl.DataFrame({"id": [1, 2, 3], "external_id": ["1", "2", "3"], "value": [10.0, 20.0, 30.004]})
    plan = diff(want, have, compare=["value"], entity="deal")
    assert (plan.updates.height, plan.unchanged) == (0, 3)


def test_missing_equals_empty_and_whitespace_is_trimmed_and_collapsed() -> None:
    want = persons(["1", "2", "3"], ["", "Ann  Lee", "Mary Jo\u00a0Smith"])
    have = remote_persons([10, 11, 12], ["1", "2", "3"], [None, "  Ann Lee ", "Mary  Jo Smith"])
    plan = diff_persons(want, have)
    assert plan.updates.height == 0
    assert plan.unchanged == 3


def test_case_and_inner_text_differences_are_updates() -> None:
    want = persons(["1", "2", "3"], ["ann lee", "Bob", "Zoë"])
    have = remote_persons([10, 11, 12], ["1", "2", "3"], ["Ann Lee", "Bob", "Zoe"])
    plan = diff_persons(want, have)
    assert plan.updates["external_id"].to_list() == ["1", "3"]


def test_remote_duplicates_are_reported_with_all_ids_and_left_alone() -> None:
    """A key on 2+ remote records is neither created nor updated, so a run never adds a third."""
    want = persons(["1", "2", "3"], ["Ann Lee", "Bob Ray", "Zoë Ünal"])
    have = remote_persons([12, 10, 11, 20], ["1", "1", "1", "2"], ["x", "Ann Lee", "y", "Bob Ray"])
    plan = diff_persons(want, have)
    assert plan.duplicates.to_dicts() == [{"key": "1", "ids": [10, 11, 12]}]
    assert plan.creates["external_id"].to_list() == ["3"]
    assert plan.updates.height == 0
    assert (plan.unchanged, plan.orphans) == (1, 0)


def test_orphans_are_counted_and_never_touched() -> None:
    """Remote records without a source row, or without an external id, are left alone."""
    want = persons(["1", "2", "3"], ["A", "B", "C"])
    have = remote_persons([10, 11, 12, 13], ["1", "99", None, "98"], ["A", "gone", "manual", "gone too"])
    plan = diff_persons(want, have)
    assert plan.orphans == 3
    assert plan.updates.height == 0
    assert sorted(plan.creates["external_id"].to_list()) == ["2", "3"]
    assert plan.unchanged == 1


def test_remote_keys_are_trimmed_and_non_canonical_numbers_do_not_match() -> None:
    """' 2 ' matches '2'; '007' is not the order '7' (keys are text, matched exactly)."""
    want = persons(["2", "7", "8"], ["B", "G", "H"])
    have = remote_persons([10, 11, 12], [" 2 ", "007", "8.0"], ["B", "G", "H"])
    plan = diff_persons(want, have)
    assert plan.unchanged == 1
    assert sorted(plan.creates["external_id"].to_list()) == ["7", "8"]
    assert plan.orphans == 2


def test_text_keys_that_are_not_integers_work() -> None:
    want = persons(["a", "b", "c"], ["A", "B", "C"])
    have = remote_persons([1, 2, 3], ["a", "b", "b"], ["A", "x", "y"])
    plan = diff_persons(want, have)
    assert plan.creates["external_id"].to_list() == ["c"]
    assert plan.duplicates.to_dicts() == [{"key": "b", "ids": [2, 3]}]
    assert plan.unchanged == 1


def test_duplicate_source_keys_are_a_data_error() -> None:
    with pytest.raises(DataError, match="person: key 'external_id' '1' occurs more than once"):
        diff_persons(persons(["1", "1", "2"], ["A", "B", "C"]), remote_persons([], [], []))


def test_missing_compared_column_is_a_data_error() -> None:
    with pytest.raises(DataError, match="deal: desired frame lacks"):
        diff(persons(["1"], ["A"]), remote_persons([], [], []), compare=["title"], entity="deal")


def test_diff_without_compared_fields_only_creates() -> None:
    plan = diff(persons(["1", "2"], ["A", "B"]), remote_persons([5], ["1"], ["other"]), compare=[])
    assert (plan.creates.height, plan.updates.height, plan.unchanged) == (1, 0, 1)
    assert plan.updates.schema["changed"] == pl.List(pl.Utf8)


def test_empty_remote_makes_everything_a_create() -> None:
    plan = diff_persons(persons(["1", "2", "3"], ["A", "B", "C"]), remote_persons([], [], []))
    assert (plan.creates.height, plan.updates.height, plan.unchanged, plan.orphans) == (3, 0, 0, 0)


def test_untyped_empty_remote_frames_are_accepted() -> None:
    """An empty read may come back without dtypes (all Null columns)."""
    empty = pl.DataFrame({"id": [], "name": [], "external_id": []})
    plan = diff_persons(persons(["1", "2", "3"], ["A", "B", "C"]), empty)
    assert plan.creates.height == 3
    no_deals = pl.DataFrame({c: [] for c in ("id", "title", "value", "currency", "person_id", "external_id")})
    deal_plan = diff_deals(deals(["1"], ["t"], [1.0], ["1"]), no_deals, empty)
    assert deal_plan.creates.height == 1
    assert person_id_map(empty).height == 0


def test_deal_linked_to_the_wrong_person_is_an_update_of_only_that_field() -> None:
    want = deals(["100", "101", "102"], ["Lee Ann", "Ray Bob", "Ünal Zoë"], [1.0, 2.0, 3.0], ["1", "2", "3"])
    people = remote_persons([10, 11, 12], ["1", "2", None], ["Ann Lee", "Bob Ray", "Zoë Ünal"])
    have = remote_deals(
        [1, 2, 3], ["100", "101", "102"], ["Lee Ann", "Ray Bob", "Ünal Zoë"], [1.0, 2.0, 3.0], [10, 10, 12]
    )
    plan = diff_deals(want, have, people)
    rows = plan.updates.select("external_id", "person_external_id", "old_person_external_id", "changed").to_dicts()
    assert rows == [
        {
            "external_id": "101",
            "person_external_id": "2",
            "old_person_external_id": "1",
            "changed": ["person_external_id"],
        },
        {
            "external_id": "102",
            "person_external_id": "3",
            "old_person_external_id": None,
            "changed": ["person_external_id"],
        },
    ]
    assert plan.unchanged == 1


def test_deal_updates_carry_old_values_for_every_compared_column() -> None:
    want = deals(["1", "2", "3"], ["New", "b", "c"], [5.0, 1.0, 2.0], ["5", "5", "5"])
    have = remote_deals([7, 8, 9], ["1", "2", "3"], ["Old", "b", "c"], [4.0, 1.0, 2.0], [50, 50, 50])
    plan = diff_deals(want, have, remote_persons([50], ["5"], ["P"]))
    row = plan.updates.row(0, named=True)
    assert [f"old_{c}" in row for c in DEAL_COMPARE] == [True] * len(DEAL_COMPARE)
    assert (row["id"], row["changed"], row["old_title"], row["old_value"]) == (7, ["title", "value"], "Old", 4.0)


def test_remote_deals_with_person_keys_maps_person_ids_to_external_ids() -> None:
    have = remote_deals([1, 2, 3], ["a", "b", "c"], ["x", "y", "z"], [1.0, 1.0, 1.0], [10, 11, 99])
    out = remote_deals_with_person_keys(have, remote_persons([10, 11], [" 1", "2"], ["A", "B"]))
    assert out["person_external_id"].to_list() == ["1", "2", None]


def test_resolve_person_ids_fills_existing_and_just_created_persons() -> None:
    ids = person_id_map(
        remote_persons([10, 11, 12], ["1", "2", "2"], ["A", "B", "B again"]),
        created=pl.DataFrame({"external_id": ["3"], "id": [30]}),
    )
    rows = deals(["100", "101", "102"], ["t", "t", "t"], [1.0, 1.0, 1.0], ["1", "2", "3"])
    rows = pl.concat([rows, deals(["103"], ["t"], [1.0], ["4"])])
    out = resolve_person_ids(rows.with_columns(person_id=pl.lit(None, pl.Int64)), ids)
    # a duplicated person resolves to its lowest id; a person with no id yet (failed create) stays null
    assert out["person_id"].to_list() == [10, 11, 30, None]
    assert out["external_id"].to_list() == ["100", "101", "102", "103"]


def test_estimate_counts_list_pages_and_writes() -> None:
    entity = diff_persons(persons(["1", "2", "3"], ["A", "B", "C"]), remote_persons([10], ["1"], ["x"]))
    plan = Plan(entities=(entity,))
    tokens, seconds = estimate(plan, {"person": 1001, "deal": 0}, burst=40)
    # pages: ceil(1001/500)=3 + 1 empty deal page = 4 -> 40 tokens; 2 creates + 1 update -> 15 tokens
    assert tokens == 55
    assert seconds == pytest.approx((4 + 3) * 2.0 / 40)


def test_plan_summary_shows_counts_and_old_to_new_samples() -> None:
    want = deals(["1", "2", "3"], ["Lee Ann", "Ray Bob", "Ünal Zoë"], [12.5, 1.0, 2.0], ["5", "5", "5"])
    have = remote_deals([7, 8], ["1", "2"], ["Lee  Ann", "Ray Bob"], [10.0, 1.0], [50, 50])
    entity = diff_deals(want, have, remote_persons([50], ["5"], ["P"]))
    summary = plan_summary(Plan(entities=(entity,), estimated_tokens=30, estimated_seconds=1.5), sample=1)
    json.dumps(summary)  # JSON-ready
    (deal,) = summary["entities"]
    assert summary["writes"] == 2
    assert (summary["estimated_tokens"], summary["estimated_seconds"]) == (30, 1.5)
    assert {k: deal[k] for k in ("entity", "creates", "updates", "unchanged", "duplicates", "orphans")} == {
        "entity": "deal",
        "creates": 1,
        "updates": 1,
        "unchanged": 1,
        "duplicates": 0,
        "orphans": 0,
    }
    assert deal["sample_creates"] == [
        {"external_id": "3", "title": "Ünal Zoë", "value": 2.0, "currency": "USD", "person_external_id": "5"}
    ]
    assert deal["sample_updates"] == [{"key": "1", "id": 7, "changes": {"value": {"old": 10.0, "new": 12.5}}}]


def test_plan_summary_lists_duplicates_and_limits_samples() -> None:
    entity = diff_persons(
        persons(["1", "2", "3"], ["A", "B", "C"]), remote_persons([10, 11, 12], ["9", "9", "8"], ["x", "y", "z"])
    )
    summary = plan_summary(Plan(entities=(entity,)), sample=2)
    (person,) = summary["entities"]
    assert len(person["sample_creates"]) == 2
    assert person["sample_duplicates"] == [{"key": "9", "ids": [10, 11]}]
    assert person["creates"] == 3


def test_entity_plan_from_diff_is_the_base_value() -> None:
    plan = diff_persons(persons(["1"], ["A"]), remote_persons([], [], []))
    assert isinstance(plan, EntityPlan)
    assert (plan.entity, plan.key) == ("person", "external_id")
