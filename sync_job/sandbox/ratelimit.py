"""Per-token rolling-window burst limits (general and search) and the daily token budget, with their headers."""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field

# v2 x-token-cost per operation (reference §3, §10.2).
# "catalog" is the pipelines and stages lists (spec: getPipelines, getStages cost 5); the options kinds are
# POST, PATCH and DELETE /…Fields/{field_code}/options (spec and reference §3: 5, 5, 3).
COSTS = {
    "list": 10, "get": 1, "create": 5, "update": 5, "delete": 3, "search": 20, "fields": 10, "field_create": 5,
    "catalog": 5, "options_create": 5, "options_update": 5, "options_delete": 3,
}  # fmt: skip


@dataclass
class Decision:
    """The outcome of admitting one request, and the headers every response carries."""

    allowed: bool
    reason: str  # "ok" | "burst" | "budget"
    headers: dict[str, str]
    retry_after: int = 0
    consecutive_429s: int = 0


@dataclass
class RateLimiter:
    """Sliding logs of admitted request times per (token, bucket); a daily counter of tokens spent."""

    burst: int = 40
    search_burst: int = 10
    window: float = 2.0
    daily_budget: int | None = None
    used: int = 0
    _logs: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    _consecutive: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, token: str, kind: str, now: float) -> Decision:
        """Admit (and log) a request of `kind` (a COSTS key, or "" for cost-free routes) at monotonic `now`."""
        bucket = "search" if kind == "search" else "general"
        limit = self.search_burst if bucket == "search" else self.burst
        cost = COSTS.get(kind, 0)
        with self._lock:
            log = self._logs.setdefault((token, bucket), deque())
            horizon = now - self.window
            while log and log[0] <= horizon:
                log.popleft()
            reason = "ok"
            if self.daily_budget is not None and self.used + cost > self.daily_budget:
                reason = "budget"
            elif len(log) >= limit:
                reason = "burst"
            else:
                log.append(now)
                self.used += cost
            reset = math.ceil(log[0] + self.window - now) if log else 0
            headers = {
                "x-ratelimit-limit": str(limit),
                "x-ratelimit-remaining": str(max(limit - len(log), 0)),
                "x-ratelimit-reset": str(max(reset, 0)),
            }
            headers.update(self._daily_headers())
            if reason == "ok":
                self._consecutive[token] = 0
                return Decision(True, reason, headers)
            streak = self._consecutive.get(token, 0) + 1
            self._consecutive[token] = streak
            retry = max(reset, 1) if reason == "burst" else 3600
            return Decision(False, reason, headers, retry_after=retry, consecutive_429s=streak)

    def peek(self, token: str, now: float) -> dict[str, str]:
        """Headers for a response that is not charged (401, 410, 404 of unknown routes)."""
        with self._lock:
            log = self._logs.get((token, "general"), deque())
            live = [t for t in log if t > now - self.window]
            reset = math.ceil(live[0] + self.window - now) if live else 0
            headers = {
                "x-ratelimit-limit": str(self.burst),
                "x-ratelimit-remaining": str(max(self.burst - len(live), 0)),
                "x-ratelimit-reset": str(max(reset, 0)),
            }
            headers.update(self._daily_headers())
            return headers

    def _daily_headers(self) -> dict[str, str]:
        if self.daily_budget is None:
            return {}
        return {
            "x-daily-ratelimit-token-limit": str(self.daily_budget),
            "x-daily-ratelimit-token-remaining": str(max(self.daily_budget - self.used, 0)),
        }

    def reset_budget(self) -> None:
        """A new day: the token counter starts again."""
        with self._lock:
            self.used = 0
