"""Counters of what the Pipedrive client did, for the run report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["list", "get", "create", "update", "search", "fields", "field_create"]


@dataclass(slots=True)
class ApiStats:
    """Mutable tallies owned by one client; `as_dict()` is what the run report embeds."""

    requests: Counter[str] = field(default_factory=Counter)  # by kind
    statuses: Counter[int] = field(default_factory=Counter)  # by HTTP status (0 = no response)
    rate_limited: int = 0  # 429 answers
    forbidden_html: int = 0  # Cloudflare-like HTML 403 answers
    retries: int = 0
    unknown_outcomes: int = 0  # writes whose result was lost (timeout, dropped connection, 5xx)
    recovered: int = 0  # of those, records found already written by the re-read
    tokens_used: int = 0  # from the documented v2 costs
    daily_remaining: int | None = None  # last x-daily-ratelimit-token-remaining seen
    waited_seconds: float = 0.0  # time spent pacing or backing off for rate limits

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "requests_total": sum(self.requests.values()),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "rate_limited_429": self.rate_limited,
            "forbidden_html_403": self.forbidden_html,
            "retries": self.retries,
            "unknown_outcomes": self.unknown_outcomes,
            "recovered": self.recovered,
            "tokens_used": self.tokens_used,
            "daily_remaining": self.daily_remaining,
            "rate_limit_wait_seconds": round(self.waited_seconds, 3),
        }
