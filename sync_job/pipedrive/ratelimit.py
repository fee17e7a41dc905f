"""Header-driven pacing: stay under Pipedrive's rolling burst window instead of bouncing off 429s.

The pure part is `BurstWindow` (send timestamps in a sliding window of the server's limit, plus pauses
learned from headers); `RateLimiter` wraps one window for ordinary requests and one for search behind an
asyncio lock, with an injected clock and sleep so tests can drive time.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

WINDOW_SECONDS = 2.0  # Pipedrive's rolling burst window
DEFAULT_LIMIT = 20  # the lowest plan's burst, used until a response tells the real one
SEARCH_LIMIT = 10  # search endpoints: 10 per 2 s on every plan


def _number(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


@dataclass(frozen=True, slots=True)
class RateHeaders:
    """The rate-limit headers of one response (each None when absent or malformed)."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None  # seconds until the window frees up
    retry_after: float | None = None  # seconds (only the delta-seconds form is used)
    daily_remaining: int | None = None
    daily_limit: int | None = None  # the company's daily token budget (undocumented header, read when present)

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateHeaders:
        limit = _number(headers, "x-ratelimit-limit")
        remaining = _number(headers, "x-ratelimit-remaining")
        daily = _number(headers, "x-daily-ratelimit-token-remaining")
        daily_limit = _number(headers, "x-daily-ratelimit-token-limit")
        return cls(
            limit=int(limit) if limit else None,
            remaining=None if remaining is None else int(remaining),
            reset=_number(headers, "x-ratelimit-reset"),
            retry_after=_number(headers, "retry-after"),
            daily_remaining=None if daily is None else int(daily),
            daily_limit=int(daily_limit) if daily_limit else None,
        )

    def wait_after_429(self, window: float = WINDOW_SECONDS) -> float:
        """How long a 429 asks us to stay quiet: Retry-After, else the reset, else one full window."""
        if self.retry_after is not None:
            return self.retry_after
        if self.reset is not None:
            return max(self.reset, 0.1)
        return window


@dataclass(slots=True)
class BurstWindow:
    """Allows at most `limit - headroom` sends in any `window + slack` seconds, and honours pauses.

    `headroom` keeps our own traffic from ever reading `remaining: 0`, so a zero means someone else spends
    the same token and we wait for the reset. `slack` absorbs the jitter between our send time and the
    server's arrival time, which is what the server's window counts. Sends are also spread evenly
    (`smooth`): a window filled in one burst repeats that burst every window, and a server busy with a
    burst admits its tail late, enough to count one request too many in its own window.
    """

    limit: int = DEFAULT_LIMIT
    window: float = WINDOW_SECONDS
    slack: float = 0.05
    headroom: int = 1
    smooth: bool = True
    catch_up: int = 2  # sends that may go early to make up for a late wake-up (the window still caps them)
    scheduled: float = 0.0  # when the next evenly spaced send is due
    paused_until: float = 0.0
    sent: deque[float] = field(default_factory=deque)

    @property
    def capacity(self) -> int:
        return max(1, self.limit - self.headroom)

    def delay(self, now: float) -> float:
        """Seconds to wait before the next send is allowed (0 when it may go now)."""
        span = self.window + self.slack
        while self.sent and self.sent[0] <= now - span:
            self.sent.popleft()
        wait = self.paused_until - now
        if self.smooth:
            # virtual schedule (GCRA): a late wake-up is made up by the next sends instead of lost for good
            wait = max(wait, self.scheduled - self.catch_up * span / self.capacity - now)
        if len(self.sent) >= self.capacity:
            # the oldest sends that must leave the window before one more fits
            wait = max(wait, self.sent[len(self.sent) - self.capacity] + span - now)
        return max(wait, 0.0)

    def record(self, now: float) -> None:
        self.sent.append(now)
        self.scheduled = max(self.scheduled, now) + (self.window + self.slack) / self.capacity

    def pause(self, now: float, seconds: float) -> None:
        self.paused_until = max(self.paused_until, now + seconds)

    def observe(self, headers: RateHeaders, now: float) -> None:
        """Learn the server's limit; when it reports nothing left and our own sends don't explain it (someone
        else spends the token), wait for its reset.

        When our own window is full, the window already holds the next send back until the oldest one leaves,
        which is more precise than the reset (whole seconds on Pipedrive) and costs no idle second.
        """
        if headers.limit is not None and headers.limit != self.limit:
            self.limit = headers.limit
        if headers.remaining is not None and headers.remaining <= 0:
            recent = sum(1 for t in self.sent if t > now - self.window - self.slack)
            if recent < self.capacity - 1:
                self.pause(now, headers.reset if headers.reset is not None else self.window)


Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """Paces every request of one client (shared by all its concurrent tasks)."""

    def __init__(
        self,
        *,
        limit: int = DEFAULT_LIMIT,
        search_limit: int = SEARCH_LIMIT,
        window: float = WINDOW_SECONDS,
        slack: float = 0.05,
        headroom: int = 1,
        smooth: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.general = BurstWindow(limit=limit, window=window, slack=slack, headroom=headroom, smooth=smooth)
        self.search = BurstWindow(limit=search_limit, window=window, slack=slack, headroom=headroom, smooth=smooth)
        self.clock = clock
        self.sleep = sleep
        self._lock = asyncio.Lock()

    async def acquire(self, *, search: bool = False) -> float:
        """Wait until a request may be sent and record it; returns the seconds waited."""
        windows = (self.general, self.search) if search else (self.general,)
        waited = 0.0
        async with self._lock:  # one waiter at a time keeps the order fair and the window exact
            while True:
                now = self.clock()
                wait = max(w.delay(now) for w in windows)
                if wait <= 0:
                    for w in windows:
                        w.record(now)
                    return waited
                await self.sleep(wait)
                waited += wait

    def observe(self, headers: RateHeaders, *, search: bool = False) -> None:
        (self.search if search else self.general).observe(headers, self.clock())

    def pause(self, seconds: float, *, search: bool = False) -> None:
        (self.search if search else self.general).pause(self.clock(), seconds)
