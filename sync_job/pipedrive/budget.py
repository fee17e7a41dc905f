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
    "search": 20,
    "fields": 10,
    "field_create": 5,
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

    def check(self, cost: int, *, use_reserve: bool = False) -> None:
        """Raise BudgetExhausted when sending a request of `cost` tokens could exhaust a budget."""
        keep = 0 if use_reserve else self.reserve
        if self.max_tokens is not None and self.spent + self.in_flight + cost + keep > self.max_tokens:
            raise BudgetExhausted(
                f"the --max-tokens cap of {self.max_tokens} API tokens is reached "
                f"({self.spent} spent, next request costs {cost})"
            )
        if self.daily_remaining is not None and self.daily_remaining - self.in_flight < cost + keep:
            raise BudgetExhausted(
                f"the daily Pipedrive API token budget is nearly used up ({self.daily_remaining} tokens left, "
                f"next request costs {cost}); stopping before it runs out"
            )

    def start(self, cost: int) -> None:
        self.in_flight += cost

    def finish(self, cost: int, *, charged: bool, daily_remaining: int | None) -> None:
        """A request ended; `charged` is False when it surely never reached the server."""
        self.in_flight -= cost
        if charged:
            self.spent += cost
        if daily_remaining is not None:
            self.daily_remaining = daily_remaining
