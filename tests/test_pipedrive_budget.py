"""Token budget: stop before the daily budget or the --max-tokens cap runs out, keeping a reserve."""

from __future__ import annotations

import pytest

from sync_job.errors import BudgetExhausted
from sync_job.pipedrive.budget import COSTS, TokenBudget


def test_v2_costs_are_the_documented_ones() -> None:
    assert COSTS == {
        "list": 10,
        "get": 1,
        "create": 5,
        "update": 5,
        "delete": 3,
        "search": 20,
        "fields": 10,
        "field_create": 5,
        "option_create": 5,
        "field_get": 1,
    }


def test_max_tokens_cap_stops_before_it_is_passed() -> None:
    budget = TokenBudget(max_tokens=30, reserve=20)
    for _ in range(2):
        budget.check(5)
        budget.start(5)
        budget.finish(5, charged=True, daily_remaining=None)
    with pytest.raises(BudgetExhausted, match="--max-tokens cap of 30"):
        budget.check(5)
    budget.check(5, use_reserve=True)  # a recovery re-read may still use the reserve


def test_daily_remaining_counts_requests_in_flight() -> None:
    budget = TokenBudget(reserve=0, daily_remaining=12)
    budget.check(5)
    budget.start(5)
    budget.check(5)
    budget.start(5)
    with pytest.raises(BudgetExhausted, match="12 tokens left"):
        budget.check(5)


def test_a_request_that_never_left_is_not_charged() -> None:
    budget = TokenBudget(max_tokens=100)
    budget.start(10)
    budget.finish(10, charged=False, daily_remaining=None)
    assert (budget.spent, budget.in_flight) == (0, 0)


def test_the_daily_remaining_follows_the_headers() -> None:
    budget = TokenBudget(reserve=20)
    budget.start(5)
    budget.finish(5, charged=True, daily_remaining=24)
    with pytest.raises(BudgetExhausted):
        budget.check(5)
