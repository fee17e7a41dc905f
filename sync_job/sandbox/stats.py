"""Counters of what the sandbox saw and did: requests per route, 429s, injected faults, writes."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    writes: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    budget_429s: int = 0
    forbidden_html: int = 0
    injected_5xx: int = 0
    dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, method: str, route: str) -> None:
        with self._lock:
            self.requests[(method, route)] += 1

    def status(self, code: int) -> None:
        with self._lock:
            self.statuses[code] += 1

    def write(self, kind: str) -> None:
        with self._lock:
            self.writes[kind] += 1

    def bump(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def snapshot(self, tokens_used: int) -> dict[str, Any]:
        """A plain dict: writes is {"persons.create": n, "deals.update": n, ...}; requests keyed by (method, route)."""
        with self._lock:
            return {
                "requests": dict(self.requests),
                "requests_total": sum(self.requests.values()),
                "statuses": dict(self.statuses),
                "writes": dict(self.writes),
                "rate_limited": self.rate_limited,
                "budget_429s": self.budget_429s,
                "forbidden_html": self.forbidden_html,
                "injected_5xx": self.injected_5xx,
                "dropped": self.dropped,
                "tokens_used": tokens_used,
            }
