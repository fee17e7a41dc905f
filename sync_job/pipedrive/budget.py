"""API token accounting: the documented v2 costs, the --max-tokens cap and the daily budget from headers."""

from __future__ import annotations

from dataclasses import dataclass

from sync_job.errors import BudgetExhausted
from sync_job.pipedrive.stats import Kind

# x-token-cost of each v2 operation (openapi-v2.yaml); field list/create cost like entity list/create.
COSTS: dict[Kind, int] = {
    "list": 10,
    "get": 1,
    "create": 5,
    "update": 5,
    "delete": 3,
    "search": 20,
    "fields": 10,
    "field_create": 5,
    "option_create": 5,  # POST /api/v2/{deal,person}Fields/{code}/options
    "field_get": 1,  # GET /api/v2/{deal,person}Fields/{code}
}

# Held back for the re-reads a safe create may need after an unknown outcome (two list pages).
DEFAULT_RESERVE = 2 * COSTS["list"]


@dataclass(slots=True)
class TokenBudget:
    """Decides, before each request, whether it may still be sent; never lets a run hit the daily wall.

    `daily_remaining` is the last `x-daily-ratelimit-token-remaining` seen; requests in flight have not been
    deducted from it yet, so their cost is subtracted too. Ordinary requests must leave `reserve` tokens
    untouched; recovery re-reads (`use_reserve=True`) may spend them.
    """

    max_tokens: int | None = None
    reserve: int = DEFAULT_RESERVE
    spent: int = 0
    in_flight: int = 0
    daily_remaining: int | None = None
    daily_limit: int | None = None
    # pipedrive.max_budget_share: this job spends at most that share of the company's daily budget in one day,
    # counting what its earlier runs spent the same day (`spent_earlier_today`).
    share: float | None = None
    spent_earlier_today: int = 0

    @property
    def share_per_day(self) -> int | None:
        """Tokens this job may spend in one day, once a response has told the daily budget."""
        if self.share is None or self.daily_limit is None:
            return None
        return int(self.daily_limit * self.share)

    def _limits(self) -> dict[str, int]:
        """What each known bound leaves for this run, by the name a person would look for."""
        left = {}
        if self.max_tokens is not None:
            left["the --max-tokens cap"] = self.max_tokens - self.spent
        if self.daily_remaining is not None:
            left["the company's daily budget"] = self.daily_remaining
        if (per_day := self.share_per_day) is not None:
            left["this job's share of the daily budget"] = per_day - self.spent_earlier_today - self.spent
        return left

    def available(self) -> int | None:
        """Tokens ordinary requests may still spend in this run (None: no limit known)."""
        left = self._limits()
        return None if not left else max(0, min(left.values()) - self.in_flight - self.reserve)

    def binding(self) -> str:
        """The bound that leaves the least (for messages)."""
        left = self._limits()
        return min(left, key=lambda name: left[name]) if left else "no known bound"

    def forget_earlier_if_reset(self) -> bool:
        """Pipedrive's counter was reset since the earlier runs (its midnight is in an unnamed timezone) when it
        shows more left than the limit minus what those runs spent: then they no longer count."""
        if self.daily_limit is None or self.daily_remaining is None or not self.spent_earlier_today:
            return False
        if self.daily_remaining + self.spent_earlier_today <= self.daily_limit:
            return False
        self.spent_earlier_today = 0
        return True

    def check(self, cost: int, *, use_reserve: bool = False) -> None:
        """Raise BudgetExhausted when sending a request of `cost` tokens could exhaust a budget."""
        keep = 0 if use_reserve else self.reserve
        if self.max_tokens is not None and self.spent + self.in_flight + cost + keep > self.max_tokens:
            raise BudgetExhausted(
                f"the --max-tokens cap of {self.max_tokens} API tokens is reached "
                f"({self.spent} spent, next request costs {cost})"
            )
        per_day = self.share_per_day
        if per_day is not None and self.spent_earlier_today + self.spent + self.in_flight + cost + keep > per_day:
            raise BudgetExhausted(
                f"this job's share of today's Pipedrive API budget is used up ({per_day} of {self.daily_limit} tokens "
                f"a day, pipedrive.max_budget_share; {self.spent_earlier_today + self.spent} spent today)"
            )
        if self.daily_remaining is not None and self.daily_remaining - self.in_flight < cost + keep:
            raise BudgetExhausted(
                f"the daily Pipedrive API token budget is nearly used up ({self.daily_remaining} tokens left, "
                f"next request costs {cost}); stopping before it runs out"
            )

    def start(self, cost: int) -> None:
        self.in_flight += cost

    def finish(self, cost: int, *, charged: bool, daily_remaining: int | None, daily_limit: int | None = None) -> None:
        """A request ended; `charged` is False when it surely never reached the server."""
        self.in_flight -= cost
        if charged:
            self.spent += cost
        if daily_remaining is not None:
            self.daily_remaining = daily_remaining
        if daily_limit is not None:
            self.daily_limit = daily_limit
