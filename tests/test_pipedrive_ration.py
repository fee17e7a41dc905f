"""Which writes fit in today's tokens: newest orders first, each deal after its person; how many days the rest takes."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import polars as pl
import pytest

from sync_job.destinations.base import NO_DELETES, EntityPlan, Plan
from sync_job.pipedrive import ration
from sync_job.pipedrive.budget import BudgetExhausted, TokenBudget

NO_DUPS = pl.DataFrame(schema={"key": pl.Utf8, "ids": pl.List(pl.Int64)})


def entity(name: str, creates: pl.DataFrame, updates: pl.DataFrame) -> EntityPlan:
    return EntityPlan(name, "external_id", creates, updates, unchanged=3, duplicates=NO_DUPS, orphans=1)


def shop_plan() -> tuple[Plan, pl.DataFrame]:
    """Persons 1 (new) and 2 (renamed); deals 10 (old order of 1), 11 (new order of 2), 12 (newest, of 1), 13 (3)."""
    persons = entity(
        "person",
        pl.DataFrame({"external_id": ["1"], "name": ["Ann"]}),
        pl.DataFrame({"external_id": ["2"], "id": [7], "name": ["Bo"], "changed": [["name"]]}),
    )
    deals = entity(
        "deal",
        pl.DataFrame({"external_id": ["10", "11", "12"], "person_external_id": ["1", "2", "1"]}),
        pl.DataFrame({"external_id": ["13"], "id": [9], "person_external_id": ["3"], "changed": [["value"]]}),
    )
    dates = pl.DataFrame(
        {
            "external_id": ["10", "11", "12", "13"],
            "order_date": [date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1), date(2023, 1, 1)],
        }
    )
    return Plan(entities=(persons, deals)), dates


def keys(plan: Plan) -> list[list[str]]:
    return [sorted(e.creates["external_id"].to_list() + e.updates["external_id"].to_list()) for e in plan.entities]


@pytest.mark.parametrize(
    ("tokens", "today", "later"),
    [
        (0, [[], []], [["1", "2"], ["10", "11", "12", "13"]]),
        (5, [[], []], [["1", "2"], ["10", "11", "12", "13"]]),  # the newest deal needs its person first: 10 tokens
        (10, [["1"], ["12"]], [["2"], ["10", "11", "13"]]),
        (20, [["1", "2"], ["11", "12"]], [[], ["10", "13"]]),
        (25, [["1", "2"], ["10", "11", "12"]], [[], ["13"]]),
        (35, [["1", "2"], ["10", "11", "12", "13"]], [[], []]),
    ],
)
def test_the_newest_orders_come_first_each_with_its_person(
    tokens: int, today: list[list[str]], later: list[list[str]]
) -> None:
    plan, dates = shop_plan()
    cut = ration.ration(plan, dates, tokens)
    assert keys(cut.fits) == today
    assert keys(cut.rest) == later
    assert ration.write_tokens(cut.fits) <= tokens
    assert cut.fits.writes + cut.rest.writes == plan.writes


def test_person_writes_no_deal_needs_take_the_tokens_left_after_every_deal() -> None:
    plan, dates = shop_plan()
    persons, deals = plan.entities
    lonely = entity("person", pl.DataFrame({"external_id": ["1", "5"], "name": ["Ann", "Eve"]}), persons.updates)
    cut = ration.ration(Plan(entities=(lonely, deals)), dates, 30)
    assert keys(cut.fits) == [["1", "2"], ["10", "11", "12", "13"]]
    assert keys(cut.rest) == [["5"], []]
    assert keys(ration.ration(Plan(entities=(lonely, deals)), dates, 35).fits) == [
        ["1", "2", "5"],
        ["10", "11", "12", "13"],
    ]


def test_counts_of_unchanged_and_remote_only_records_stay_with_todays_part() -> None:
    plan, dates = shop_plan()
    cut = ration.ration(plan, dates, 10)
    assert [(e.unchanged, e.orphans) for e in cut.fits.entities] == [(3, 1), (3, 1)]
    assert [(e.unchanged, e.orphans) for e in cut.rest.entities] == [(0, 0), (0, 0)]


@pytest.mark.parametrize(
    ("tokens", "per_day", "today", "days"),
    [
        (0, 100, None, 0),
        (100, 100, None, 1),
        (101, 100, None, 2),
        (150, 100, 60, 2),
        (161, 100, 60, 3),
        (10, 100, 0, 2),
    ],
)
def test_days_needed_counts_what_is_left_today_then_whole_days(
    tokens: int, per_day: int, today: int | None, days: int
) -> None:
    assert ration.days_needed(tokens, per_day, today) == days


def test_the_budget_share_counts_earlier_runs_of_the_same_day() -> None:
    budget = TokenBudget(reserve=0, share=0.5, spent_earlier_today=400)
    budget.finish(0, charged=True, daily_remaining=9_000, daily_limit=1_000)
    assert budget.share_per_day == 500
    assert budget.available() == 100
    budget.check(100)
    with pytest.raises(BudgetExhausted, match=r"share of today's Pipedrive API budget is used up \(500 of 1000"):
        budget.check(105)


def test_earlier_runs_stop_counting_once_pipedrive_shows_its_budget_was_reset() -> None:
    budget = TokenBudget(reserve=0, share=0.5, spent_earlier_today=400)
    budget.finish(0, charged=True, daily_remaining=600, daily_limit=1_000)  # 400 of ours still counted there
    assert not budget.forget_earlier_if_reset()
    budget.finish(0, charged=True, daily_remaining=990, daily_limit=1_000)  # more left than ours allows: a reset
    assert budget.forget_earlier_if_reset()
    assert budget.available() == 500


def test_the_message_names_the_bound_that_leaves_the_least() -> None:
    budget = TokenBudget(reserve=0, max_tokens=300, share=0.5)
    budget.finish(0, charged=True, daily_remaining=9_000, daily_limit=1_000)
    assert budget.binding() == "the --max-tokens cap"
    budget.max_tokens = None
    assert budget.binding() == "this job's share of the daily budget"


def with_deletes(plan: Plan) -> Plan:
    """shop_plan plus mirror deletes: person 4 (id 40), deals 20 and 21 (ids 200, 210)."""
    persons, deals = plan.entities
    gone = {"person": [("4", 40)], "deal": [("20", 200), ("21", 210)]}
    return Plan(
        entities=tuple(
            replace(e, deletes=pl.DataFrame(gone[e.entity], schema=NO_DELETES.schema, orient="row"))
            for e in (persons, deals)
        )
    )


def deleted(plan: Plan) -> list[list[str]]:
    return [e.deletes["external_id"].to_list() for e in plan.entities]


@pytest.mark.parametrize(
    ("tokens", "today", "later"),
    [
        (29, [[], []], [["4"], ["20", "21"]]),  # not every create and update fits: no delete yet
        (30, [[], []], [["4"], ["20", "21"]]),  # the six writes take all 30
        (33, [[], ["20"]], [["4"], ["21"]]),  # deals' deletes first, 3 tokens each
        (38, [[], ["20", "21"]], [["4"], []]),
        (39, [["4"], ["20", "21"]], [[], []]),
    ],
)
def test_deletes_come_after_every_write_and_deals_before_persons(
    tokens: int, today: list[list[str]], later: list[list[str]]
) -> None:
    plan, dates = shop_plan()
    cut = ration.ration(with_deletes(plan), dates, tokens)
    assert (deleted(cut.fits), deleted(cut.rest)) == (today, later)
    assert ration.write_tokens(with_deletes(plan)) == 30 + 9
    assert cut.rest_tokens == ration.write_tokens(cut.rest)
