"""Seeded fault injection: 5xx before any change, and writes committed whose response is never sent."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

FAIL_STATUSES = (500, 502, 503)


@dataclass
class Faults:
    """Draws from one random.Random(seed): the same request sequence meets the same faults."""

    seed: int = 0
    fail_rate: float = 0.0
    drop_after_commit_rate: float = 0.0
    _rng: random.Random = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def reseed(self, seed: int) -> None:
        with self._lock:
            self.seed = seed
            self._rng = random.Random(seed)

    def failure(self) -> int | None:
        """A 5xx status to answer instead of handling the request, or None. Draws only when enabled."""
        if self.fail_rate <= 0:
            return None
        with self._lock:
            if self._rng.random() < self.fail_rate:
                return self._rng.choice(FAIL_STATUSES)
        return None

    def drop(self) -> bool:
        """Should this (committed) write lose its response?"""
        if self.drop_after_commit_rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < self.drop_after_commit_rate
