"""Counters of what the Pipedrive client did, for the run report."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal[
    "list", "get", "create", "update", "delete", "search", "fields", "field_create", "option_create", "field_get"
]


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
    rate_limit: int | None = None  # last x-ratelimit-limit seen: requests allowed per rolling 2 s window
    # Second since the first request -> [answers, 429s, other retriable failures (5xx, no response)]:
    # the HTML report's requests-per-second chart.
    timeline: dict[int, list[int]] = field(default_factory=dict)
    _t0: float | None = None

    def tick(self, status: int, rate_limit: int | None = None) -> None:
        """Count one answered (or failed) request in the second it finished."""
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        bucket = self.timeline.setdefault(int(now - self._t0), [0, 0, 0])
        bucket[0] += 1
        bucket[1] += status == 429
        bucket[2] += status == 0 or status >= 500
        if rate_limit:
            self.rate_limit = rate_limit

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
            "rate_limit_per_2s": self.rate_limit,
            "timeline": [[second, *counts] for second, counts in sorted(self.timeline.items())],
        }
